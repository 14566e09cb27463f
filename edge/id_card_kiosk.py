"""Taking a number with a 二代身份证 at the kiosk: the policy, and what is kept of a card.

A card read (:class:`~edge.devices.base.IdCardRead`) becomes a ticket for the
reader's service (``[devices.id_card] service``):

* **老年人优先.** Age on the day, from the ID number's birth date: from
  ``elder_age`` (60 by default) the ticket is a priority ticket.
* **One person cannot hoard numbers.** At most ``tickets_per_day`` tickets per
  ID number per service per day (1 by default; 0 lifts the limit). A card over
  the limit is refused with a message on the hall screen and nothing is issued.
* **Nothing personal is kept or sent.** The ID number is kept only as
  HMAC-SHA256 under a random salt drawn for the day (:class:`CardLedger`, a
  small SQLite file beside the journal): enough to recognise the same card
  today, useless to find a person, and unlinkable across days (yesterday's
  salts are deleted with yesterday's rows). The name and the number never
  reach the journal, the central or a log. The ticket itself carries only its
  class and the channel ``kiosk``.
* **预约 by card** (``booking_salt_file`` set): a card whose holder has a booking
  of today not checked in yet checks it in (an appointment ticket, as the code
  would) instead of taking an ordinary ticket. The comparison is of salted
  hashes: the number is hashed with the city's booking salt, as the central did.
  The same card read again soon after (:data:`edge.kiosk.REPEAT_CARD_S`) gets the
  same check-in (its ticket, or 此预约已签到 with its number), never a second ticket.
* **Call by name** (``call_by_name``, off by default): the hall screen shows a
  masked name with the number, 请张*女士 A012号到3号窗口, and the voice says
  张女士. Masked names live in memory for the day only.

The daemon wires this with :meth:`IdCardKiosk.take_ticket` (issuing and
printing stay the daemon's) and asks :meth:`IdCardKiosk.called_as` /
:meth:`IdCardKiosk.spoken_call` when it calls a number.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

import structlog

from fastpath.types import TicketClass
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.id_card import Gender, IdCardText, birth_of, booking_person_hash

from .config import EdgeConfig
from .devices.base import IdCardRead

log = structlog.get_logger(__name__)

# Two-character surnames (复姓) common enough to meet at a kiosk: masked after both.
COMPOUND_SURNAMES: Final = frozenset(
    {
        "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙",
        "宇文", "司徒", "夏侯", "轩辕", "令狐", "端木", "南宫", "西门", "独孤", "呼延",
        "万俟", "闻人", "澹台", "公冶", "宗政", "濮阳", "太叔", "申屠", "钟离", "赫连",
        "拓跋",
    }
)
_HONORIFIC: Final = {Gender.FEMALE: "女士", Gender.MALE: "先生"}


@dataclass(frozen=True, slots=True)
class KioskPolicy:
    service_id: str
    elder_age: int = 60  # 0: no priority by age
    tickets_per_day: int = 1  # 0: no limit
    call_by_name: bool = False

    def __post_init__(self) -> None:
        if self.elder_age < 0 or self.tickets_per_day < 0:
            raise ValueError("elder_age and tickets_per_day must be >= 0")


@dataclass(frozen=True, slots=True)
class Grant:
    """Issue a ticket of ``klass`` for ``service_id`` (the card is recorded once issued)."""

    service_id: str
    klass: TicketClass
    digest: str
    masked_name: str
    spoken_name: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """No ticket: ``message`` goes on the hall screen (Chinese first)."""

    message: str


def age_on(birth: date, day: date) -> int:
    """Whole years from ``birth`` to ``day`` (a 29 February birthday counts on 1 March)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def surname_of(name: str) -> str:
    return name[:2] if name[:2] in COMPOUND_SURNAMES and len(name) > 2 else name[:1]


def masked_name(name: str, gender: Gender) -> str:
    """张三 → 张*先生, 欧阳娜娜 → 欧阳*女士: the surname, a star, the honorific if known."""
    return f"{surname_of(name)}*{_HONORIFIC.get(gender, '')}"


def spoken_name(name: str, gender: Gender) -> str:
    """What the voice says: 张女士 (with no honorific known: 张*, said as 张)."""
    honorific = _HONORIFIC.get(gender)
    return f"{surname_of(name)}{honorific}" if honorific else surname_of(name)


class CardLedger:
    """Today's tickets per card, as salted hashes, in a small SQLite file of its own."""

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS salts (day TEXT PRIMARY KEY, salt BLOB)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tickets (day TEXT, service TEXT, digest TEXT, "
            "count INTEGER, PRIMARY KEY (day, service, digest))"
        )

    def close(self) -> None:
        self._db.close()

    def digest(self, day: str, id_number: str) -> str:
        """HMAC-SHA256 of the ID number under the day's salt (drawn at the day's first card)."""
        self._db.execute("DELETE FROM salts WHERE day != ?", (day,))  # older days: unlinkable
        self._db.execute("DELETE FROM tickets WHERE day != ?", (day,))
        salt_if_new = secrets.token_bytes(32)
        self._db.execute("INSERT OR IGNORE INTO salts VALUES (?, ?)", (day, salt_if_new))
        (salt,) = self._db.execute("SELECT salt FROM salts WHERE day = ?", (day,)).fetchone()
        return hmac.new(salt, id_number.encode("ascii"), hashlib.sha256).hexdigest()

    def count(self, day: str, service: str, digest: str) -> int:
        row = self._db.execute(
            "SELECT count FROM tickets WHERE day = ? AND service = ? AND digest = ?",
            (day, service, digest),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def record(self, day: str, service: str, digest: str) -> None:
        self._db.execute(
            "INSERT INTO tickets VALUES (?, ?, ?, 1) ON CONFLICT (day, service, digest) "
            "DO UPDATE SET count = count + 1",
            (day, service, digest),
        )

    def rows(self) -> list[tuple[str, str, str, int]]:
        """Everything stored (for tests and audits: no name, no ID number)."""
        return [(str(d), str(sv), str(dg), int(n))
                for d, sv, dg, n in self._db.execute("SELECT * FROM tickets")]


IssueTicket = Callable[[str, TicketClass], Awaitable[str]]
"""The daemon's side: issue (and print) a ticket, return its number."""


class IdCardKiosk:
    """The kiosk's card policy for one hall (see the module docstring)."""

    def __init__(self, policy: KioskPolicy, ledger: CardLedger, *,
                 booking_salt: str | None = None) -> None:
        self.policy = policy
        self.ledger = ledger
        self._booking_salt = booking_salt
        self._names: dict[str, tuple[str, str]] = {}  # today's ticket -> (masked, spoken)
        self._names_day = ""
        # Cards whose ticket is being issued: a card put down twice in a second counts once.
        self._in_flight: set[tuple[str, str, str]] = set()
        self._check_ins: dict[str, tuple[str, int]] = {}  # person -> (booking code, at ms)

    def checked_in(self, person: str, code: str, at_ms: int) -> None:
        """The card of ``person`` (:meth:`booking_person`) checks in booking ``code``."""
        self._check_ins = {who: seen for who, seen in self._check_ins.items()
                           if seen[1] > at_ms - 86_400_000}  # a day's worth at most
        self._check_ins[person] = (code, at_ms)

    def recent_check_in(self, person: str, now_ms: int, within_ms: float) -> str | None:
        """The booking code ``person``'s card checked in less than ``within_ms`` ago (a
        card read twice), or None."""
        seen = self._check_ins.get(person)
        if seen is None or not 0 <= now_ms - seen[1] < within_ms:
            return None
        return seen[0]

    def booking_person(self, card: IdCardText) -> str | None:
        """The card holder as the day's bookings name people (the first 16 hex digits of
        the salted hash the central keeps), or None when the hall has no booking salt."""
        if self._booking_salt is None:
            return None
        return booking_person_hash(self._booking_salt, card.id_number)[:mm.PERSON_HASH_HEX]

    def decide(self, card: IdCardText, day: str, today: date) -> Grant | Refusal:
        """What a card read on ``day`` (the hall's day, ``today`` its date) gets."""
        p = self.policy
        digest = self.ledger.digest(day, card.id_number)
        taken = self.ledger.count(day, p.service_id, digest)
        taken += (day, p.service_id, digest) in self._in_flight
        if p.tickets_per_day and taken >= p.tickets_per_day:
            return Refusal(
                f"今日已用此身份证取号{taken}次，每人每项业务限{p.tickets_per_day}次 "
                "already taken today with this ID card"
            )
        elder = p.elder_age > 0 and age_on(birth_of(card.id_number), today) >= p.elder_age
        return Grant(
            p.service_id,
            TicketClass.PRIORITY if elder else TicketClass.NORMAL,
            digest,
            masked_name(card.name, card.gender),
            spoken_name(card.name, card.gender),
        )

    def issued(self, grant: Grant, day: str, number: str) -> None:
        """The ticket ``number`` was issued for ``grant``: count it against the card."""
        self.ledger.record(day, grant.service_id, grant.digest)
        if self._names_day != day:
            self._names, self._names_day = {}, day
        if self.policy.call_by_name:
            self._names[number] = (grant.masked_name, grant.spoken_name)

    async def take_ticket(
        self, read: IdCardRead, day: str, today: date, issue: IssueTicket,
        refuse: Callable[[str], None],
    ) -> str | None:
        """The whole flow for one card read: decide, issue through the daemon, record.
        Returns the ticket number, or None when refused (``refuse`` shows why)."""
        decision = self.decide(read.card, day, today)
        if isinstance(decision, Refusal):
            log.info("id_card.refused", reader=read.reader)
            refuse(decision.message)
            return None
        key = (day, decision.service_id, decision.digest)
        self._in_flight.add(key)
        try:
            number = await issue(decision.service_id, decision.klass)  # may refuse: not counted
            self.issued(decision, day, number)
        finally:
            self._in_flight.discard(key)
        log.info("id_card.ticket", reader=read.reader, ticket=number,
                 klass=decision.klass.name.lower())
        return number

    def called_as(self, number: str) -> str:
        """``number`` as the hall screen calls it: with the masked name when enabled."""
        names = self._names.get(number)
        return number if names is None else f"{names[0]} {number}"

    def spoken_call(self, number: str, window: int) -> str | None:
        """The sentence the voice says for a call by name, or None (a plain number call)."""
        names = self._names.get(number)
        if names is None:
            return None
        return f"请{names[1]}，{number}号，到{window}号窗口办理"


def kiosk_for(config: EdgeConfig) -> IdCardKiosk | None:
    """The kiosk policy the site config asks for (``[devices.id_card]``), or None."""
    section = config.devices.id_card
    if section is None:
        return None
    policy = KioskPolicy(section.service, section.elder_age, section.tickets_per_day,
                         section.call_by_name)
    return IdCardKiosk(policy, CardLedger(section.ledger), booking_salt=section.booking_salt)


__all__ = [
    "COMPOUND_SURNAMES",
    "CardLedger",
    "Grant",
    "IdCardKiosk",
    "IssueTicket",
    "KioskPolicy",
    "Refusal",
    "age_on",
    "kiosk_for",
    "masked_name",
    "spoken_name",
]
