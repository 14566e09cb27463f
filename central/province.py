"""Reporting 好差评 records to the provincial platform, and the file export of the same fields.

::

    reporter = ProvincialReporter(sessions, config)
    run = reporter.run_once(now)          # claim what is due, POST it in batches, settle each
    rows = province_rows(session, records) # the field set, for the CSV/JSON export too

**The field set** (:data:`FIELDS`, documented in ``docs/STATISTICS.md``) follows the
national 好差评 interface as commonly published (``projectNo`` 办件编号, ``taskCode``
事项编码, ``areaCode`` 行政区划代码, ``pf`` 评价渠道, ``alternate`` 评价等级,
``assessTime``); a province's own names or codes change :data:`FIELDS` and
:data:`CHANNEL_CODES` only.

**The request**, as modelled: ``POST province_url`` with the JSON body
``{"records": [...]}`` and the headers ``X-App-Key``, ``X-Timestamp`` (unix ms),
``X-Nonce`` (32 random hex digits) and ``X-Signature``: lower-case hex
HMAC-SHA256, keyed with the app secret, of ``app_key \\n timestamp \\n nonce \\n
sha256_hex(body)`` (:func:`signature`). The answer ``{"code": 0, "results":
[{"evaluationId", "code", "msg"}]}`` has one result per record: code 0 taken (also a
repeat of an ``evaluationId`` it holds: resending is safe), 1001 重复评价 (another
evaluation of that 办件 exists: ``duplicate``, final), any other code a refusal of the
record itself (``rejected``, final). A top-level code other than 0, an HTTP error, a
timeout or a result missing for a record is a failed attempt: the record is retried
after ``province_interval_s × 2^(attempts-1)`` until ``province_max_attempts``, then
``failed`` (an operator retries it, :meth:`ProvincialReporter.retry_failed`).

Records are claimed under a lease (``report_next_at`` moved past the request's
timeout, ``SKIP LOCKED`` on PostgreSQL), so central replicas never send a record
twice at once; if one dies mid-request the lease runs out and another resends the
same ``evaluationId``, which the platform takes as the same record.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from central.alarms import redact_url, scrub
from central.config import CentralConfig
from central.models import (
    RatingOrigin,
    RatingProfile,
    RatingRecord,
    ReportStatus,
    Site,
    StaffMember,
)
from central.ratings import evaluation_id, reason_label
from central.stats import BUSINESS_TZ

log = structlog.get_logger(__name__)

FIELDS: Final = (
    ("evaluationId", "评价编号"),
    ("projectNo", "办件编号"),
    ("taskCode", "事项编码"),
    ("taskName", "事项名称"),
    ("deptCode", "实施机构编码"),
    ("deptName", "实施机构名称"),
    ("areaCode", "行政区划代码"),
    ("siteName", "服务场所"),
    ("windowNo", "窗口号"),
    ("staffId", "工作人员工号"),
    ("staffName", "工作人员姓名"),
    ("ticketNo", "取号号码"),
    ("pf", "评价渠道"),
    ("alternate", "评价等级"),
    ("evaluateType", "评价方式"),
    ("appraiseCodes", "差评原因编码"),
    ("appraiseLabels", "差评原因"),
    ("assessTime", "评价时间"),
)
"""(field, 中文) of one record upward and in the export, in order."""

CHANNEL_CODES: Final = {"pc": "1", "mobile": "2", "qr": "3", "tablet": "4", "pad": "5",
                        "kiosk": "5", "phone": "6", "sms": "7"}  # fmt: skip
"""评价渠道 ``pf``: 1 PC端, 2 移动端, 3 二维码, 4 政务大厅平板电脑, 5 政务大厅其他终端 (the
window's rating pad, a self-service kiosk), 6 电话, 7 短信."""
EVALUATE_TYPES: Final = {RatingOrigin.CITIZEN: "1", RatingOrigin.UNRATED: "2"}
"""评价方式: 1 群众主动评价, 2 默认评价 (an offer left unrated, under 默认好评)."""
DUPLICATE_CODE: Final = 1001
LEASE_MARGIN_S: Final = 30


def signature(secret: str, app_key: str, timestamp: str, nonce: str, body: bytes) -> str:
    """X-Signature: hex HMAC-SHA256(secret, app_key \\n timestamp \\n nonce \\n sha256(body))."""
    message = "\n".join((app_key, timestamp, nonce, hashlib.sha256(body).hexdigest()))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def assess_time(ts_ms: int) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in China Standard Time."""
    return datetime.fromtimestamp(ts_ms / 1000, BUSINESS_TZ).strftime("%Y-%m-%d %H:%M:%S")


def province_rows(session: Session, records: Sequence[RatingRecord], *,
                  default_value: int) -> list[dict[str, str]]:  # fmt: skip
    """The records in the platform's field set (:data:`FIELDS`), names and codes looked up.

    An unrated record carries ``default_value`` as its level under a 默认好评 rule
    (``evaluateType`` 2), and an empty level without one. Every value is a string.
    """
    site_ids = sorted({r.site_id for r in records})
    sites = {s.id: s for s in session.scalars(select(Site).where(Site.id.in_(site_ids)))}
    profiles = {p.site_id: p for p in session.scalars(
        select(RatingProfile).where(RatingProfile.site_id.in_(site_ids)))}  # fmt: skip
    names = {(m.site_id, m.staff_id): m.name for m in session.scalars(
        select(StaffMember).where(StaffMember.site_id.in_(site_ids)))}  # fmt: skip
    rows = []
    for record in records:
        profile = profiles.get(record.site_id)
        site = sites.get(record.site_id)
        level = record.value
        if level is None and default_value:
            level = default_value
        rows.append({
            "evaluationId": evaluation_id(record),
            "projectNo": record.case_no or "",
            "taskCode": record.item_code or "",
            "taskName": record.item_name or "",
            "deptCode": record.department or (profile.department if profile else None) or "",
            "deptName": (record.department_name or (profile.department_name if profile else None)
                         or ""),
            "areaCode": profile.region_code if profile else "",
            "siteName": site.name if site else record.site_id,
            "windowNo": str(record.window),
            "staffId": record.staff_id,
            "staffName": names.get((record.site_id, record.staff_id), ""),
            "ticketNo": record.ticket,
            "pf": CHANNEL_CODES.get(record.channel, ""),
            "alternate": "" if level is None else str(level),
            "evaluateType": EVALUATE_TYPES[record.origin],
            "appraiseCodes": ",".join(record.reasons),
            "appraiseLabels": "；".join(reason_label(code) for code in record.reasons),
            "assessTime": assess_time(record.ts_ms),
        })  # fmt: skip
    return rows


@dataclass
class ReportRun:
    """What one run did: counts per outcome, and the requests it made."""

    requests: int = 0
    sent: int = 0
    duplicate: int = 0
    rejected: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A batch taken under a lease: the record ids and the request body."""

    ids: tuple[int, ...]
    evaluation_ids: tuple[str, ...]
    body: bytes


class ProvincialReporter:
    """Sends the records that are due (module docstring). Blocking: run it off the loop."""

    def __init__(self, sessions: sessionmaker[Session], config: CentralConfig) -> None:
        self._sessions = sessions
        self._config = config
        self.target = redact_url(config.province_url)

    def run_once(self, now: datetime, *, max_batches: int = 20) -> ReportRun:
        """Claim, send and settle batches until nothing is due (at most ``max_batches``)."""
        run = ReportRun()
        for _ in range(max_batches):
            batch = self.claim(now)
            if batch is None:
                break
            self.settle(batch, self.send(batch), now, run)
        return run

    def claim(self, now: datetime) -> Claimed | None:
        """Take up to ``province_batch_size`` due records under a lease."""
        config = self._config
        with self._sessions.begin() as session:
            statement = (
                select(RatingRecord)
                .where(RatingRecord.report_status == ReportStatus.PENDING,
                       RatingRecord.report_next_at <= now)
                .order_by(RatingRecord.report_next_at, RatingRecord.id)
                .limit(config.province_batch_size)
                .with_for_update(skip_locked=True)
            )  # fmt: skip
            records = list(session.scalars(statement))
            if not records:
                return None
            lease = now + timedelta(seconds=config.province_timeout_s + LEASE_MARGIN_S)
            for record in records:
                record.report_next_at = lease
            rows = province_rows(session, records, default_value=config.rating_default_value)
        body = json.dumps({"records": rows}, ensure_ascii=False, separators=(",", ":")).encode()
        return Claimed(tuple(r.id for r in records), tuple(r["evaluationId"] for r in rows),
                       body)  # fmt: skip

    def send(self, batch: Claimed) -> dict[str, Any] | str:
        """POST one batch, signed; the decoded answer, or why the attempt failed."""
        config = self._config
        timestamp = str(int(datetime.now(BUSINESS_TZ).timestamp() * 1000))
        nonce = secrets.token_hex(16)
        request = urllib.request.Request(
            config.province_url, data=batch.body, method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": "onedoor-central",
                "X-App-Key": config.province_app_key,
                "X-Timestamp": timestamp,
                "X-Nonce": nonce,
                "X-Signature": signature(config.province_app_secret, config.province_app_key,
                                         timestamp, nonce, batch.body),
            },
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=config.province_timeout_s) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        # URLError and sockets are OSError; a body that is not JSON is ValueError.
        except (OSError, ValueError, http.client.HTTPException) as exc:
            return scrub(f"{type(exc).__name__}: {exc}", config.province_url)[:300]
        if not isinstance(answer, dict):
            return "answer is not a JSON object"
        if answer.get("code") != 0:
            return f"platform code {answer.get('code')!r}: {str(answer.get('msg'))[:200]}"
        return answer

    def settle(self, batch: Claimed, answer: dict[str, Any] | str, now: datetime,
               run: ReportRun) -> None:  # fmt: skip
        """Record each record's outcome (module docstring)."""
        run.requests += 1
        results: dict[str, dict[str, Any]] = {}
        if isinstance(answer, dict):
            for result in answer.get("results") or []:
                if isinstance(result, dict) and isinstance(result.get("evaluationId"), str):
                    results[result["evaluationId"]] = result
        else:
            run.errors.append(answer)
            log.warning("province.attempt_failed", target=self.target, error=answer,
                        records=len(batch.ids))  # fmt: skip
        with self._sessions.begin() as session:
            for record_id, key in zip(batch.ids, batch.evaluation_ids, strict=True):
                record = session.get_one(RatingRecord, record_id)
                if record.report_status is not ReportStatus.PENDING:
                    continue  # settled meanwhile (an operator, another replica's late answer)
                self._settle_one(record, results.get(key), answer, now, run)

    def _settle_one(self, record: RatingRecord, result: dict[str, Any] | None,
                    answer: dict[str, Any] | str, now: datetime,
                    run: ReportRun) -> None:  # fmt: skip
        record.report_attempts += 1
        if result is not None and result.get("code") == 0:
            record.report_status, record.report_error = ReportStatus.SENT, None
            record.reported_at, record.report_next_at = now, None
            run.sent += 1
            return
        if result is not None:
            message = f"{result.get('code')}: {str(result.get('msg'))[:300]}"
            duplicate = result.get("code") == DUPLICATE_CODE
            record.report_status = ReportStatus.DUPLICATE if duplicate else ReportStatus.REJECTED
            record.report_error, record.report_next_at = message, None
            record.reported_at = now
            if duplicate:
                run.duplicate += 1
            else:
                run.rejected += 1
            return
        record.report_error = answer if isinstance(answer, str) else "no result for the record"
        if record.report_attempts >= self._config.province_max_attempts:
            record.report_status, record.report_next_at = ReportStatus.FAILED, None
            run.failed += 1
            log.error("province.record_failed", record=record.id, attempts=record.report_attempts)
            return
        backoff = self._config.province_interval_s * 2 ** (record.report_attempts - 1)
        record.report_next_at = now + timedelta(seconds=backoff)
        run.retried += 1

    def retry_failed(self, now: datetime) -> int:
        """Put every ``failed`` record back in line (an operator, after fixing the cause)."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(RatingRecord)
                .where(RatingRecord.report_status == ReportStatus.FAILED)
                .values(report_status=ReportStatus.PENDING, report_attempts=0,
                        report_next_at=now)
            )  # fmt: skip
        count: int = result.rowcount  # type: ignore[attr-defined]
        return count


__all__ = [
    "CHANNEL_CODES",
    "DUPLICATE_CODE",
    "EVALUATE_TYPES",
    "FIELDS",
    "Claimed",
    "ProvincialReporter",
    "ReportRun",
    "assess_time",
    "province_rows",
    "signature",
]
