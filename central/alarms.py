"""Alarms: raise, repeat, acknowledge, clear, keep history, notify a webhook.

One active alarm per (site, device, type) — a partial unique index enforces it
even across central replicas. A repeat of an active alarm updates it
(``occurrences``, ``updated_at``, message and detail; severity changes go to
history). A person acknowledges it; it is cleared when its condition ends and
stays in the table with ``cleared_at`` set, its history in ``alarm_history``.

:class:`AlarmBook` works inside the caller's transaction (ingest raises and
clears alarms in the same commit as the events that caused them) and collects
:class:`Notification` records, which are sent only after the commit
(:class:`WebhookNotifier`). :func:`run_timed_rules` holds the rules that depend
on time passing rather than on a message: silence, unanswered help, old gaps,
config drift.

Alarm types and default severity::

    site_offline      major     LWT / offline state, or silence > offline_after_s
    device_fault      major     printer paper out, screen silent, terminal dead, ...
                      warning   degraded (paper low)
    help_unanswered   major     呼叫帮办 not acknowledged after help_unanswered_s
    waiting_over_sla  warning   oldest ticket of a service waits over its SLA
    serving_overtime  warning   a window serves one ticket too long (办理超时)
    clock_not_synced  warning   the edge clock is not NTP-synchronised
    config_drift      warning   reported config version differs from the expected one
    outbox_backlog    major     the edge outbox holds more than outbox_backlog events
    sequence_gap      major     seqs missing for longer than gap_alarm_after_s
    takeover_pending  major     a new device of the site waits for an operator's takeover
    device_conflict   critical  two devices may have numbered the site at once
    staffing_advice   info      not a fault: the edge sees an SLA breach coming and names
                                the move that prevents it (central/advice.py), cleared
                                when it ends; info leaves the site's tile colour alone
    bad_rating        warning   a 差评 case is open (central.ratings); major once its
                                contact is late, critical once its rectification is
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from central.config import CentralConfig
from central.errors import UnknownAlarm
from central.models import (
    Alarm,
    AlarmAction,
    AlarmHistory,
    AlarmType,
    Command,
    CommandStatus,
    HelpCall,
    SequenceGap,
    Severity,
    Site,
)

log = structlog.get_logger(__name__)

DEFAULT_SEVERITY: Final = {
    AlarmType.SITE_OFFLINE: Severity.MAJOR,
    AlarmType.DEVICE_FAULT: Severity.MAJOR,
    AlarmType.HELP_UNANSWERED: Severity.MAJOR,
    AlarmType.WAITING_OVER_SLA: Severity.WARNING,
    AlarmType.SERVING_OVERTIME: Severity.WARNING,
    AlarmType.CLOCK_NOT_SYNCED: Severity.WARNING,
    AlarmType.CONFIG_DRIFT: Severity.WARNING,
    AlarmType.OUTBOX_BACKLOG: Severity.MAJOR,
    AlarmType.SEQUENCE_GAP: Severity.MAJOR,
    AlarmType.TAKEOVER_PENDING: Severity.MAJOR,
    AlarmType.DEVICE_CONFLICT: Severity.CRITICAL,
    AlarmType.STAFFING_ADVICE: Severity.INFO,
    AlarmType.BAD_RATING: Severity.WARNING,
}

TITLES: Final = {
    AlarmType.SITE_OFFLINE: "站点离线 / site offline",
    AlarmType.DEVICE_FAULT: "设备故障 / device fault",
    AlarmType.HELP_UNANSWERED: "呼叫帮办无人响应 / help call unanswered",
    AlarmType.WAITING_OVER_SLA: "等候超时 / waiting over SLA",
    AlarmType.SERVING_OVERTIME: "办理超时 / serving overtime",
    AlarmType.CLOCK_NOT_SYNCED: "时钟未同步 / clock not synchronised",
    AlarmType.CONFIG_DRIFT: "配置版本不一致 / config drift",
    AlarmType.OUTBOX_BACKLOG: "上报积压 / outbox backlog",
    AlarmType.SEQUENCE_GAP: "事件序号缺失 / sequence gap",
    AlarmType.TAKEOVER_PENDING: "新设备等待接管确认 / a new device waits for takeover",
    AlarmType.DEVICE_CONFLICT: "两台设备同时编号 / two devices numbered the site",
    AlarmType.STAFFING_ADVICE: "人员调配建议 / staffing advice",
    AlarmType.BAD_RATING: "差评待处理 / bad rating to handle",
}


@dataclass(frozen=True, slots=True)
class Notification:
    """What the webhook receives (as JSON) when an alarm is raised, acknowledged or cleared."""

    action: str
    alarm_id: int
    site_id: str
    device: str
    type: str
    severity: str
    message: str
    detail: dict[str, Any]
    at: str
    actor: str | None = None
    raised_at: str | None = None
    """When the alarm was raised (its "since"); ``at`` is when this action happened."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False).encode()


AlarmKey = tuple[str, str, AlarmType]


class AlarmBook:
    """Alarm operations inside one transaction; active alarms of a site are loaded once."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now
        self.notifications: list[Notification] = []
        self._active: dict[AlarmKey, Alarm] = {}
        self._loaded: set[str] = set()

    def _load(self, site_id: str) -> None:
        if site_id in self._loaded:
            return
        self._loaded.add(site_id)
        for alarm in self.session.scalars(
            select(Alarm).where(Alarm.site_id == site_id, Alarm.cleared_at.is_(None))
        ):
            self._active[(alarm.site_id, alarm.device, alarm.type)] = alarm

    def preload(self, site_ids: set[str]) -> None:
        """Load the active alarms of many sites in one query."""
        missing = sorted(site_ids - self._loaded)
        for chunk in (missing[i : i + 500] for i in range(0, len(missing), 500)):
            self._loaded.update(chunk)
            for alarm in self.session.scalars(
                select(Alarm).where(Alarm.site_id.in_(chunk), Alarm.cleared_at.is_(None))
            ):
                self._active[(alarm.site_id, alarm.device, alarm.type)] = alarm

    def active(self, site_id: str, type_: AlarmType, device: str = "") -> Alarm | None:
        self._load(site_id)
        return self._active.get((site_id, device, type_))

    def _history(self, alarm: Alarm, action: AlarmAction, actor: str | None = None,
                 note: str | None = None) -> None:  # fmt: skip
        self.session.add(
            AlarmHistory(
                alarm_id=alarm.id,
                at=self.now,
                action=action,
                severity=alarm.severity,
                actor=actor,
                note=note,
            )
        )
        self.notifications.append(
            Notification(
                action=action.value,
                alarm_id=alarm.id,
                site_id=alarm.site_id,
                device=alarm.device,
                type=alarm.type.value,
                severity=alarm.severity.value,
                message=alarm.message,
                detail=dict(alarm.detail),
                at=self.now.isoformat(),
                actor=actor,
                raised_at=alarm.raised_at.isoformat(),
            )
        )

    def raise_alarm(
        self,
        site_id: str,
        type_: AlarmType,
        *,
        device: str = "",
        severity: Severity | None = None,
        message: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> Alarm:
        """Raise, or update the active alarm of (site, device, type) if there is one."""
        severity = severity or DEFAULT_SEVERITY[type_]
        text = message or TITLES[type_]
        alarm = self.active(site_id, type_, device)
        if alarm is None:
            alarm = self._insert(site_id, type_, device, severity, text, detail or {})
            if alarm is not None:
                return alarm
            alarm = self._reload(site_id, type_, device)  # another replica raised it first
        alarm.occurrences += 1
        alarm.updated_at = self.now
        alarm.message = text
        if detail is not None:
            alarm.detail = detail
        if alarm.severity != severity:
            alarm.severity = severity
            self._history(alarm, AlarmAction.SEVERITY_CHANGED)
        return alarm

    def _insert(
        self, site_id: str, type_: AlarmType, device: str, severity: Severity, text: str,
        detail: dict[str, Any],
    ) -> Alarm | None:  # fmt: skip
        alarm = Alarm(
            site_id=site_id,
            device=device,
            type=type_,
            severity=severity,
            message=text,
            detail=detail,
            raised_at=self.now,
            updated_at=self.now,
            occurrences=1,
        )
        self.session.flush()  # so that the savepoint below holds only this insert
        try:
            with self.session.begin_nested():
                self.session.add(alarm)
                self.session.flush()
        except IntegrityError:
            return None
        self._active[(site_id, device, type_)] = alarm
        self._history(alarm, AlarmAction.RAISED)
        log.warning("alarm.raised", site=site_id, type=type_.value, device=device, message=text)
        return alarm

    def _reload(self, site_id: str, type_: AlarmType, device: str) -> Alarm:
        alarm = self.session.scalars(
            select(Alarm).where(
                Alarm.site_id == site_id,
                Alarm.device == device,
                Alarm.type == type_,
                Alarm.cleared_at.is_(None),
            )
        ).one()
        self._active[(site_id, device, type_)] = alarm
        return alarm

    def clear(self, site_id: str, type_: AlarmType, device: str = "",
              note: str | None = None) -> Alarm | None:  # fmt: skip
        """Clear the active alarm of (site, device, type), if any."""
        alarm = self.active(site_id, type_, device)
        if alarm is None:
            return None
        alarm.cleared_at = self.now
        alarm.updated_at = self.now
        del self._active[(site_id, device, type_)]
        self._history(alarm, AlarmAction.CLEARED, note=note)
        log.info("alarm.cleared", site=site_id, type=type_.value, device=device)
        return alarm

    def set(self, condition: bool, site_id: str, type_: AlarmType, *, device: str = "",
            severity: Severity | None = None, message: str | None = None,
            detail: dict[str, Any] | None = None) -> None:  # fmt: skip
        """Raise while ``condition`` holds, clear once it does not."""
        if condition:
            self.raise_alarm(
                site_id, type_, device=device, severity=severity, message=message, detail=detail
            )
        else:
            self.clear(site_id, type_, device)

    def acknowledge(self, alarm_id: int, person: str, note: str | None = None) -> Alarm:
        alarm = self.session.get(Alarm, alarm_id)
        if alarm is None:
            raise UnknownAlarm(alarm_id)
        if alarm.acknowledged_at is None:
            alarm.acknowledged_at = self.now
            alarm.acknowledged_by = person
            alarm.updated_at = self.now
            self._history(alarm, AlarmAction.ACKNOWLEDGED, actor=person, note=note)
        return alarm


def run_timed_rules(book: AlarmBook, config: CentralConfig) -> None:
    """Rules that fire because time passed: silence, unanswered help, old gaps, drift.

    Also marks commands that got no result before their expiry as ``expired``.
    """
    session, now = book.session, book.now
    # Retired sites are out of the fleet: no rule raises anything for them.
    in_service = select(Site.id).where(Site.retired_at.is_(None))
    silent_since = now - timedelta(seconds=config.offline_after_s)
    # A site that says it is online but has been silent too long; cleared by ingest on contact.
    for site in session.scalars(
        select(Site).where(Site.online.is_(True), Site.last_seen_at < silent_since,
                           Site.retired_at.is_(None))
    ):
        book.raise_alarm(
            site.id,
            AlarmType.SITE_OFFLINE,
            detail={"cause": "silence", "last_seen_at": _iso(site.last_seen_at)},
        )

    unanswered_since = now - timedelta(seconds=config.help_unanswered_s)
    for call in session.scalars(
        select(HelpCall).where(
            HelpCall.resolved_at.is_(None),
            HelpCall.acknowledged_at.is_(None),
            HelpCall.requested_at < unanswered_since,
            HelpCall.site_id.in_(in_service),
        )
    ):
        book.raise_alarm(
            call.site_id,
            AlarmType.HELP_UNANSWERED,
            device=call.button,
            detail={"location": call.location, "requested_at": _iso(call.requested_at)},
        )

    gap_since = now - timedelta(seconds=config.gap_alarm_after_s)
    old_gaps: dict[str, list[SequenceGap]] = {}
    for gap in session.scalars(
        select(SequenceGap).where(
            SequenceGap.filled_at.is_(None), SequenceGap.detected_at < gap_since,
            SequenceGap.site_id.in_(in_service),
        )
    ):
        old_gaps.setdefault(gap.site_id, []).append(gap)
    for site_id, gaps in old_gaps.items():
        book.raise_alarm(
            site_id,
            AlarmType.SEQUENCE_GAP,
            detail={"gaps": [[g.first_seq, g.last_seq] for g in gaps]},
        )
    for alarm in session.scalars(
        select(Alarm).where(Alarm.type == AlarmType.SEQUENCE_GAP, Alarm.cleared_at.is_(None))
    ):
        if alarm.site_id not in old_gaps:
            book.clear(alarm.site_id, AlarmType.SEQUENCE_GAP)

    for command in session.scalars(
        select(Command).where(Command.status == CommandStatus.SENT, Command.expires_at <= now)
    ):
        command.status = CommandStatus.EXPIRED
        log.info("command.expired", site=command.site_id, id=str(command.id), name=command.name)

    drift_since = now - timedelta(seconds=config.config_drift_after_s)
    drifting = session.scalars(
        select(Site).where(
            Site.retired_at.is_(None),
            Site.expected_config_version.is_not(None),
            or_(
                Site.reported_config_version.is_(None),
                Site.reported_config_version != Site.expected_config_version,
            ),
            or_(
                Site.config_version_changed_at.is_(None),
                Site.config_version_changed_at < drift_since,
            ),
        )
    ).all()
    for site in drifting:
        book.raise_alarm(
            site.id,
            AlarmType.CONFIG_DRIFT,
            detail={
                "expected": site.expected_config_version,
                "reported": site.reported_config_version,
            },
        )
    drifting_ids = {s.id for s in drifting}
    for alarm in session.scalars(
        select(Alarm).where(Alarm.type == AlarmType.CONFIG_DRIFT, Alarm.cleared_at.is_(None))
    ):
        owner = session.get(Site, alarm.site_id)
        in_sync = owner is not None and not owner.config_drift
        if alarm.site_id not in drifting_ids and in_sync:
            book.clear(alarm.site_id, AlarmType.CONFIG_DRIFT)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def redact_url(url: str) -> str:
    """Which webhook, without its secrets: scheme, host and a fingerprint of the whole URL.

    Robot URLs carry their credential in the query (企业微信 ``key``, 钉钉
    ``access_token`` and ``sign``) or in the path (Feishu, Slack), so neither is shown;
    the fingerprint (8 hex digits of its SHA-256) tells two configured URLs apart.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a malformed port or IPv6 literal
        parts, host, port = urllib.parse.urlsplit(""), "?", ""
    digest = hashlib.sha256(url.encode("utf-8", "replace")).hexdigest()[:8]
    return f"{parts.scheme or '?'}://{host}{port}/…#{digest}"


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) with every secret-bearing part of ``url`` as ``***``."""
    parts = urllib.parse.urlsplit(url)
    pieces = {url, parts.query, parts.path, parts.password or ""}
    pieces.add(f"{parts.path}?{parts.query}")
    for _name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        pieces.add(value)
    for segment in parts.path.split("/"):
        if len(segment) >= 16:  # a token in the path; short ones are words like "send"
            pieces.add(segment)
    variants: set[str] = set()
    for piece in pieces:
        if len(piece) >= 6:
            variants.update((piece, urllib.parse.quote(piece, safe=""),
                             urllib.parse.quote_plus(piece), repr(piece)[1:-1]))  # fmt: skip
    for piece in sorted(variants, key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


class WebhookNotifier:
    """POST each notification as JSON to the webhook; a few retries, then log and drop.

    Blocking (urllib): the service calls :meth:`send` from a worker thread so ingest
    never waits on a slow webhook. The URL is a secret (see :func:`redact_url`): logs
    name :attr:`target` and scrub error messages, on every path.
    """

    def __init__(self, url: str, *, timeout_s: float = 5.0, attempts: int = 3,
                 backoff_s: float = 0.5) -> None:  # fmt: skip
        self._url = url
        self.target = redact_url(url)
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.sent = 0
        self.failed = 0

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.target!r})"

    def scrub(self, text: str) -> str:
        return scrub(text, self._url)

    def send(self, notification: Notification) -> bool:
        """True once the webhook took it; False (logged) after the last attempt failed."""
        for attempt in range(1, self.attempts + 1):
            try:
                request = urllib.request.Request(
                    self._url,
                    data=notification.to_json(),
                    headers={
                        "Content-Type": "application/json; charset=utf-8",
                        "User-Agent": "onedoor-central",
                    },
                    method="POST",
                )
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                self.sent += 1
                return True
            # URLError and sockets are OSError; a malformed URL is ValueError or InvalidURL.
            except (OSError, ValueError, http.client.HTTPException) as exc:
                log.warning("alarm.webhook_failed", webhook=self.target, attempt=attempt,
                            error=self.scrub(f"{type(exc).__name__}: {exc}")[:300])  # fmt: skip
                if attempt < self.attempts:
                    time.sleep(self.backoff_s * 2 ** (attempt - 1))
        self.failed += 1
        return False


__all__ = [
    "DEFAULT_SEVERITY",
    "TITLES",
    "AlarmBook",
    "Notification",
    "WebhookNotifier",
    "redact_url",
    "run_timed_rules",
    "scrub",
]
