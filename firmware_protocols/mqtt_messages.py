"""MQTT payloads of the onedoor contract (v1): typed schemas and a strict JSON codec.

Used by both ends: the edge encodes ``state``/``event``/``telemetry``/``cmd_result``/
``advice`` and decodes ``ack``/``cmd``; the central does the reverse. Pure: no paho, no
sockets, no clocks (times are passed in, as unix milliseconds).

Every payload is a JSON object with ``"v": 1`` and the publishing/target
``"site"`` (checked against the topic). Schemas are frozen msgspec Structs with
``forbid_unknown_fields``; strings, lists and payload bytes are bounded.

::

    encode(message) -> bytes                     compact UTF-8 JSON; LocalProtocolError if invalid
    decode(kind, payload, *, site_id) -> message InvalidMessage(reason=...) if invalid
    decode_publish(topic, payload) -> Incoming(site_id, kind, message)
    to_publish(message) -> Publish(topic, payload, qos, retain)
    will_for(state) -> Publish                   the LWT matching an online state

Errors: see :mod:`firmware_protocols.mqtt_topics` (``InvalidMessage`` and its ``Reason``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, NamedTuple, TypeAlias, get_args

import msgspec

from firmware_protocols.errors import LocalProtocolError
from firmware_protocols.gb2312 import display_text_problem
from firmware_protocols.mqtt_topics import (
    COMMAND_NAMES,
    SITE_ID_PATTERN,
    TOPICS,
    InvalidMessage,
    Kind,
    Reason,
    build_topic,
    parse_topic,
)

VERSION: Final = 1

# --------------------------------------------------------------------------- field types
# Patterns end in \Z, not $: msgspec uses re.search and "$" would accept a trailing "\n".

SiteId = Annotated[str, msgspec.Meta(pattern=f"^{SITE_ID_PATTERN}\\Z")]
IDENT_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z"
Ident = Annotated[str, msgspec.Meta(pattern=IDENT_PATTERN)]
"""Ids from the site config: service, staff (工号), device, button."""
TOKEN_PATTERN: Final = r"^[\x21-\x7e]{1,64}\Z"
Token = Annotated[str, msgspec.Meta(pattern=TOKEN_PATTERN)]
"""Printable ASCII without spaces: software/config versions, boot id."""
TicketNo = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{1,2}[0-9]{3,4}\Z")]
"""Prefix letter(s) of the service plus the daily counter: ``A012``."""
DetailCode = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}\Z")]
"""Device detail code, e.g. ``paper_out``; see :data:`KNOWN_DEVICE_DETAILS`."""
Day = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}-[0-1][0-9]-[0-3][0-9]\Z")]
PROGRESS_TOKEN_PATTERN: Final = r"^[A-Za-z0-9_-]{22}\Z"
ProgressToken = Annotated[str, msgspec.Meta(pattern=PROGRESS_TOKEN_PATTERN)]
BOOKING_CODE_PATTERN: Final = r"^[0-9]{10}\Z"
BookingCode = Annotated[str, msgspec.Meta(pattern=BOOKING_CODE_PATTERN)]
"""A booking's code (预约码): the month and day it is for (``MMDD``), six random digits."""
"""A ticket's progress-page token: 16 random bytes in URL-safe base64 (unguessable)."""
# Free text reaches TTS, LED screens and logs: control characters (NUL, ESC, newlines) never.
_NO_CONTROL: Final = r"^[^\x00-\x1f\x7f]*\Z"
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_NO_CONTROL)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_NO_CONTROL)]
ErrorText = Annotated[str, msgspec.Meta(min_length=1, max_length=400, pattern=_NO_CONTROL)]

UnixMs = Annotated[int, msgspec.Meta(ge=0, le=4_102_444_800_000)]
"""Wall time in unix milliseconds (0 .. 2100-01-01); may be wrong if the clock is not synced."""
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**53 - 1)]
AckSeq = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]

EPOCH_SHIFT: Final = 32
"""A seq is ``epoch << EPOCH_SHIFT | n``: each device of a site numbers its events in
the epoch the central granted it (n = 1, 2, ...), so two devices' seqs never meet."""
MAX_EPOCH: Final = 2**21 - 1
"""The last epoch whose seqs fit the contract's 2**53 - 1."""
Epoch = Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCH)]
DeviceId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{16}\Z")]
"""An edge device's identity: made at random with its journal (16 hex digits); a new SD
card or a wiped journal is a new device of the same site."""


def epoch_of(seq: int) -> int:
    """The epoch a seq belongs to (0 for every seq below 2**32)."""
    return seq >> EPOCH_SHIFT


def epoch_base(epoch: int) -> int:
    """The seq just below the epoch's first: its events are ``base + 1``, ``base + 2``..."""
    return epoch << EPOCH_SHIFT

WindowNo = Annotated[int, msgspec.Meta(ge=1, le=9999)]
Seconds = Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
Count = Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
Percent = Annotated[float, msgspec.Meta(ge=0.0, le=100.0)]

CaseNo = Annotated[str, msgspec.Meta(pattern=IDENT_PATTERN)]
"""办件编号 of a business system: letters, digits, '_', '.', '-', at most 64."""
CaseSource = Literal["hook", "keypad"]
RatingChannel = Literal["pad", "tablet", "kiosk", "qr", "mobile", "pc", "phone", "sms"]
"""Where a rating was given (评价渠道): ``pad`` the window's rating pad (窗口评价器),
``tablet`` a software pad through the window API (平板), ``kiosk`` a self-service
terminal (自助终端), ``qr`` a QR code in the hall (二维码), ``mobile`` an app or mini
program (移动端), ``pc`` the online service portal (PC端), ``phone`` (电话), ``sms`` (短信)."""
TicketClass = Literal["normal", "priority", "appointment"]
Channel = Literal["kiosk", "button", "api"]
DeviceKind = Literal["printer", "led", "terminal", "gpio", "audio", "id_card"]
DeviceHealth = Literal["ok", "degraded", "fault", "offline"]
WindowState = Literal["closed", "open", "paused", "serving"]

KNOWN_DEVICE_DETAILS: Final = frozenset(
    {"paper_out", "paper_low", "cover_open", "cutter_error", "no_reply", "bad_frame", "silent"}
)
"""Detail codes the edge drivers emit today; others matching :data:`DetailCode` are accepted.

How the device events of the contract map onto ``device.status``::

    printer paper low     kind printer   status degraded  detail paper_low
    printer paper out     kind printer   status fault     detail paper_out
    screen silent         kind led       status fault     detail silent
    terminal dead         kind terminal  status offline   detail no_reply
    terminal alive again  kind terminal  status ok        detail null
    any device offline    any kind       status offline   detail null or a code
"""

MAX_CONFIG_ERRORS: Final = 16
MAX_QUEUES: Final = 64
MAX_WINDOWS: Final = 256
MAX_DEVICES: Final = 1024
MAX_COMMAND_TTL_MS: Final = 86_400_000
MAX_PROGRESS_WAITING: Final = 3000
MAX_PROGRESS_ENDED: Final = 500


class _Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every schema: frozen, strict, keyword-only."""


class _Message(_Struct, frozen=True, kw_only=True):
    """Top-level payload: version and site id first."""

    v: Literal[1] = VERSION
    site: SiteId


class WaitPrediction(_Struct, frozen=True, kw_only=True):
    """Predicted wait in seconds (50th and 90th percentile of the simulated hall)."""

    p50_s: Seconds
    p90_s: Seconds

    def __post_init__(self) -> None:
        if self.p90_s < self.p50_s:
            raise ValueError("p90_s must be >= p50_s")


# --------------------------------------------------------------------------- state


class Forked(_Struct, frozen=True, kw_only=True):
    """Where a journal that was found behind the central's came from (``state.forked``).

    It was device ``device`` numbering in ``epoch`` until the central told it that it
    holds more of that device's events than the journal has (a journal restored from an
    older copy, or a second copy of one SD card): it became a new device, its events above
    ``after`` (the central's last ack) up to ``last`` wait to be renumbered into the epoch
    it will be granted. Among them, the ones the central already holds under ``device``
    (same event id) are copies, not stored twice.
    """

    device: DeviceId
    epoch: Epoch
    after: AckSeq
    last: AckSeq


class State(_Message, frozen=True, kw_only=True):
    """``state``: retained presence; the offline variant with ``lwt=true`` is the Will.

    ``session`` increases on every MQTT connection of the device, across reboots
    (persisted with the journal): the central ignores a state whose session is
    older than the one it holds for that device, e.g. a Will of a dead connection
    delivered after the edge reconnected. ``boot_id`` changes on every boot.

    ``device`` is the journal's identity and ``epoch`` the epoch it numbers in
    (null while it waits for the central to grant it one). Both were added to v1
    compatibly: a state without them is an edge from before device identity, read
    as device null, epoch null.

    What the central pushed that the site holds (fields added later: edges before them
    leave them out): ``stop``, the emergency stop in force (``cmd/issuing``), and
    ``calendar``, the version of the city calendar (``cmd/calendar``). The central
    sends again what a site does not report.
    """

    status: Literal["online", "offline"]
    lwt: bool
    boot_id: Token
    session: Seq
    software: Token
    config: Token | None
    ts: UnixMs
    clock_synced: bool
    device: DeviceId | None = None
    epoch: Epoch | None = None
    stop: Token | None = None
    calendar: Token | None = None
    bookings: Token | None = None
    """The version of the day's bookings the site holds (``cmd/bookings``)."""
    seq: AckSeq | None = None
    """The journal's last seq when the state was sent: an online device whose journal ends
    below what the central holds of its epoch is behind (restored from an older copy)."""
    forked: Forked | None = None
    """Set while this device is a journal that was found behind (:class:`Forked`)."""

    def __post_init__(self) -> None:
        if self.lwt and self.status != "offline":
            raise ValueError("a Will (lwt=true) must have status offline")


def state_supersedes(new: State, current: State | None) -> bool:
    """Whether the central should replace ``current`` with ``new`` for one device.

    A newer session always wins, an older one never does (a stale Will). Within
    one session ``offline`` is final: a late ``online`` of the same session loses.
    A state of another device is not ordered against ``current`` (each device counts
    its own sessions) and is taken as new: the central keeps one state per device and
    decides which device speaks for the site (``docs/PROTOCOLS.md``).
    """
    if current is None or new.device != current.device or new.session > current.session:
        return True
    if new.session < current.session:
        return False
    return not (current.status == "offline" and new.status == "online")


# --------------------------------------------------------------------------- event bodies


class _Body(_Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of event bodies; the tag (``"type"``) is the event type, e.g. ``ticket.issued``."""


class TicketIssued(_Body, frozen=True, kw_only=True, tag="ticket.issued", omit_defaults=True):
    """A ticket taken. ``token`` came later to v1: absent when null (the rule for fields
    added to the contract: a default, left out of the JSON at it)."""

    ticket: TicketNo
    service: Ident
    ticket_class: TicketClass = msgspec.field(name="class")
    booked_ts: UnixMs | None
    """Booked time of an appointment; null for the other classes."""
    channel: Channel
    people_ahead: Count
    wait: WaitPrediction | None
    token: ProgressToken | None = None
    """The ticket's progress-page token (its QR opens ``{public URL}/q/{token}``); absent
    from edges older than the progress page."""

    def __post_init__(self) -> None:
        if (self.ticket_class == "appointment") != (self.booked_ts is not None):
            raise ValueError("booked_ts is required for appointments and only for them")


class TicketCalled(_Body, frozen=True, kw_only=True, tag="ticket.called"):
    ticket: TicketNo
    window: WindowNo


class TicketRecalled(_Body, frozen=True, kw_only=True, tag="ticket.recalled"):
    ticket: TicketNo
    window: WindowNo
    recall: Annotated[int, msgspec.Meta(ge=1, le=99)]
    """How many times the ticket has been recalled so far (1 on the first recall)."""


class TicketServing(_Body, frozen=True, kw_only=True, tag="ticket.serving"):
    ticket: TicketNo
    window: WindowNo


class TicketDone(_Body, frozen=True, kw_only=True, tag="ticket.done"):
    ticket: TicketNo
    window: WindowNo
    served_s: Seconds


class TicketNoShow(_Body, frozen=True, kw_only=True, tag="ticket.no_show"):
    ticket: TicketNo
    window: WindowNo
    requeued: bool


class TicketTransferred(_Body, frozen=True, kw_only=True, tag="ticket.transferred"):
    ticket: TicketNo
    window: WindowNo
    from_service: Ident
    to_service: Ident


class TicketCancelled(_Body, frozen=True, kw_only=True, tag="ticket.cancelled"):
    ticket: TicketNo


class CaseInfo(_Struct, frozen=True, kw_only=True):
    """A 办件 of the window's business system: what a 好差评 record is about (一次一评).

    ``source``: ``hook`` when the business system opened it through the edge's HTTP hook
    (with its 事项 and department), ``keypad`` when staff typed its number on the window
    keypad (the 事项 then comes from the ticket's service in the site config).
    """

    no: CaseNo
    """办件编号, as the business system numbers it."""
    item_code: Ident | None
    """事项编码 (the national or provincial code of the service item)."""
    item_name: ShortText | None
    """事项名称."""
    department: Ident | None
    """Code of the department (实施机构) that handles the item."""
    department_name: ShortText | None
    source: CaseSource


RatingValue = Annotated[int, msgspec.Meta(ge=1, le=5)]
"""The five levels: 5 非常满意, 4 满意, 3 基本满意, 2 不满意, 1 非常不满意."""
MAX_RATING_REASONS: Final = 16


class RatingGiven(_Body, frozen=True, kw_only=True, tag="rating.given"):
    """A citizen's 好差评 at a window, bound to what was finished there last.

    ``case`` is the 办件 rated (None: a ticket served without one); ``reasons`` are the
    follow-up reasons of a 差评 (1 or 2) chosen with the rating (a software pad sends
    them at once; a rating pad sends each later as ``rating.reason``). ``case``,
    ``channel`` and ``reasons`` were added to v1 with defaults, so an edge that predates
    them is still read (docs/PROTOCOLS.md, "Additions to v1").
    """

    ticket: TicketNo
    window: WindowNo
    staff: Ident
    value: RatingValue
    case: CaseInfo | None = None
    channel: RatingChannel = "pad"
    reasons: Annotated[list[Ident], msgspec.Meta(max_length=MAX_RATING_REASONS)] = []


class RatingReason(_Body, frozen=True, kw_only=True, tag="rating.reason"):
    """A follow-up reason chosen on the rating pad after a 差评, for the rating just given
    at ``window`` (the reason codes are the site config's ``ratings.reasons``)."""

    ticket: TicketNo
    window: WindowNo
    case_no: CaseNo | None
    reason: Ident


class RatingMissed(_Body, frozen=True, kw_only=True, tag="rating.missed"):
    """未评价: the rating pad was offered for a finished ticket or 办件 and nobody rated
    it before the offer ended (its time ran out, another finish at the window replaced it,
    or the business day ended)."""

    ticket: TicketNo
    window: WindowNo
    staff: Ident
    case: CaseInfo | None


class CaseOpened(_Body, frozen=True, kw_only=True, tag="case.opened"):
    """The business system (or staff on the keypad) opened a 办件 at ``window``, for the
    ticket being served there (None: no ticket at the window)."""

    window: WindowNo
    ticket: TicketNo | None
    case: CaseInfo


class CaseClosed(_Body, frozen=True, kw_only=True, tag="case.closed"):
    """The 办件 open at ``window`` was closed (办结): the rating pad is offered for it."""

    window: WindowNo
    ticket: TicketNo | None
    case_no: CaseNo


class WindowSignedIn(_Body, frozen=True, kw_only=True, tag="window.signed_in"):
    window: WindowNo
    staff: Ident


class WindowSignedOut(_Body, frozen=True, kw_only=True, tag="window.signed_out"):
    window: WindowNo
    staff: Ident


class WindowPaused(_Body, frozen=True, kw_only=True, tag="window.paused"):
    window: WindowNo


class WindowResumed(_Body, frozen=True, kw_only=True, tag="window.resumed"):
    window: WindowNo


class HelpRequested(_Body, frozen=True, kw_only=True, tag="help.requested"):
    button: Ident
    location: ShortText


class HelpAcknowledged(_Body, frozen=True, kw_only=True, tag="help.acknowledged"):
    button: Ident
    staff: Ident | None


class HelpResolved(_Body, frozen=True, kw_only=True, tag="help.resolved"):
    button: Ident


class HelpEscalated(_Body, frozen=True, kw_only=True, tag="help.escalated"):
    button: Ident
    waited_s: Seconds


class SlaBreached(_Body, frozen=True, kw_only=True, tag="sla.breached"):
    ticket: TicketNo
    service: Ident
    waited_s: Seconds


class ServiceOvertime(_Body, frozen=True, kw_only=True, tag="service.overtime"):
    ticket: TicketNo
    window: WindowNo
    served_s: Seconds


class DeviceStatus(_Body, frozen=True, kw_only=True, tag="device.status"):
    """A device changed health (paper low/out, screen silent, terminal dead/alive, ...).

    See :data:`KNOWN_DEVICE_DETAILS` for how each device event is spelled.
    """

    device: Ident
    kind: DeviceKind
    status: DeviceHealth
    detail: DetailCode | None


class ConfigApplied(_Body, frozen=True, kw_only=True, tag="config.applied"):
    version: Token


class ConfigRejected(_Body, frozen=True, kw_only=True, tag="config.rejected"):
    version: Token
    errors: Annotated[list[Text], msgspec.Meta(min_length=1, max_length=MAX_CONFIG_ERRORS)]


class OutboxDropped(_Body, frozen=True, kw_only=True, tag="outbox.dropped"):
    count: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
    """Telemetry snapshots dropped because the outbox was full (events are never dropped)."""


class JournalLost(_Body, frozen=True, kw_only=True, tag="journal.lost"):
    """The edge's journal lost events the central had already committed.

    Only a disk that acknowledges writes it has not made can do this (a power cut
    then tears the journal's write-ahead log): the central's ``ack`` came back
    above the journal's last seq. Seqs ``first_seq..last_seq`` stay the central's;
    the edge continues above them, so no seq is used twice. Tickets among the lost
    events may be numbered again that day.
    """

    first_seq: Annotated[int, msgspec.Meta(ge=1)]
    last_seq: Annotated[int, msgspec.Meta(ge=1)]

    def __post_init__(self) -> None:
        if self.last_seq < self.first_seq:
            raise ValueError("last_seq must not be below first_seq")


class AckRefused(_Body, frozen=True, kw_only=True, tag="ack.refused"):
    """The edge refused acks too far above its journal's last seq to be a torn tail.

    A torn write-ahead log loses seconds of events; an ack thousands of seqs ahead
    is wrong or forged, and taking it would move the seq floor there (at the top of
    the range, for good). The journal keeps its seq; ``ack`` is the highest refused,
    ``last_seq`` the journal's last seq then, ``count`` how many since the last report.
    """

    ack: AckSeq
    last_seq: AckSeq
    count: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]


class IssuingStopped(_Body, frozen=True, kw_only=True, tag="issuing.stopped"):
    """An emergency stop (台风, system outage): no ticket is issued until it is lifted;
    tickets already issued are served. ``stop`` names the central's decision."""

    stop: Token
    reason: ShortText


class IssuingResumed(_Body, frozen=True, kw_only=True, tag="issuing.resumed"):
    stop: Token


class CalendarApplied(_Body, frozen=True, kw_only=True, tag="calendar.applied"):
    """The city calendar the central pushed is in force at the site."""

    version: Token


class BookingsApplied(_Body, frozen=True, kw_only=True, tag="bookings.applied"):
    """The site holds the bookings of ``day`` the central pushed (``cmd/bookings``)."""

    version: Token
    day: Day
    count: Count


class BookingCheckedIn(_Body, frozen=True, kw_only=True, tag="booking.checked_in"):
    """A booking (预约) checked in at the kiosk: ``ticket`` is the ticket it took, in the
    same journal commit as its ``ticket.issued``."""

    code: BookingCode
    ticket: TicketNo


class DayReset(_Body, frozen=True, kw_only=True, tag="day.reset"):
    day: Day
    """The new business day, local date ``YYYY-MM-DD``: ticket counters restart."""


class DayRestored(_Body, frozen=True, kw_only=True, tag="day.restored"):
    """This device took over the day of the devices before it (a :class:`Restore`).

    ``tickets`` went into its queue, ``left_out`` were not (a service its config has
    not, a number it already had); the counters of every prefix continue at least
    ``skipped`` above the last number the central had seen.
    """

    day: Day
    epoch: Epoch
    tickets: Count
    left_out: Count
    skipped: Annotated[int, msgspec.Meta(ge=0, le=9999)]


class DeviceReplaced(_Body, frozen=True, kw_only=True, tag="device.replaced"):
    """Another device (``device``, granted ``epoch``) numbers this site's tickets now.

    The last event of the replaced device's numbering: it issues no ticket after it.
    The central hands the new device its restore once it holds this event and every
    one before it.
    """

    device: DeviceId
    epoch: Epoch


EventBody: TypeAlias = (
    TicketIssued
    | TicketCalled
    | TicketRecalled
    | TicketServing
    | TicketDone
    | TicketNoShow
    | TicketTransferred
    | TicketCancelled
    | RatingGiven
    | RatingReason
    | RatingMissed
    | CaseOpened
    | CaseClosed
    | WindowSignedIn
    | WindowSignedOut
    | WindowPaused
    | WindowResumed
    | HelpRequested
    | HelpAcknowledged
    | HelpResolved
    | HelpEscalated
    | SlaBreached
    | ServiceOvertime
    | DeviceStatus
    | ConfigApplied
    | ConfigRejected
    | OutboxDropped
    | JournalLost
    | AckRefused
    | IssuingStopped
    | IssuingResumed
    | CalendarApplied
    | BookingsApplied
    | BookingCheckedIn
    | DayReset
    | DayRestored
    | DeviceReplaced
)


def _tag(cls: type[msgspec.Struct]) -> str:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


EVENT_TYPES: Final[Mapping[str, type[msgspec.Struct]]] = MappingProxyType(
    {_tag(cls): cls for cls in get_args(EventBody)}
)
"""Every event type name (``ticket.issued`` ...) and its body struct."""


class Event(_Message, frozen=True, kw_only=True):
    """``event``: one business event; ``seq`` is per site, gap-free, starting at 1."""

    seq: Seq
    id: uuid.UUID
    ts: UnixMs
    clock_synced: bool
    body: EventBody

    @property
    def type(self) -> str:
        """The event type, e.g. ``"ticket.issued"`` (the body's tag)."""
        return _tag(type(self.body))


# --------------------------------------------------------------------------- telemetry


class QueueStat(_Struct, frozen=True, kw_only=True):
    service: Ident
    waiting: Count
    oldest_wait_s: Seconds
    wait: WaitPrediction | None


class WindowStat(_Struct, frozen=True, kw_only=True):
    window: WindowNo
    state: WindowState
    ticket: TicketNo | None

    def __post_init__(self) -> None:
        if self.state == "serving" and self.ticket is None:
            raise ValueError("a serving window must have a ticket")
        if self.state == "closed" and self.ticket is not None:
            raise ValueError("a closed window has no ticket")


class DeviceStat(_Struct, frozen=True, kw_only=True):
    device: Ident
    kind: DeviceKind
    status: DeviceHealth
    detail: DetailCode | None


class HostStat(_Struct, frozen=True, kw_only=True):
    cpu_temp_c: Annotated[float, msgspec.Meta(ge=-60.0, le=150.0)] | None
    load1: Annotated[float, msgspec.Meta(ge=0.0, le=1000.0)]
    mem_used_pct: Percent
    disk_used_pct: Percent
    uptime_s: Annotated[int, msgspec.Meta(ge=0, le=2**40)]


class OutboxStat(_Struct, frozen=True, kw_only=True):
    depth: Count
    oldest_unacked_seq: Seq | None
    last_seq: AckSeq
    """The site's last journaled event seq when the snapshot was taken (0 before the
    first). Telemetry and events travel separately and may overtake each other; the
    central orders the snapshot's window and device states against events with it."""

    def __post_init__(self) -> None:
        if self.oldest_unacked_seq is not None and self.oldest_unacked_seq > self.last_seq:
            raise ValueError("oldest_unacked_seq must not be above last_seq")


class Telemetry(_Message, frozen=True, kw_only=True):
    """``telemetry``: periodic snapshot, QoS 0, may be dropped (see ``outbox.dropped``)."""

    ts: UnixMs
    clock_synced: bool
    queues: Annotated[list[QueueStat], msgspec.Meta(max_length=MAX_QUEUES)]
    windows: Annotated[list[WindowStat], msgspec.Meta(max_length=MAX_WINDOWS)]
    devices: Annotated[list[DeviceStat], msgspec.Meta(max_length=MAX_DEVICES)]
    host: HostStat
    outbox: OutboxStat


# --------------------------------------------------------------------------- progress


class WaitingProgress(_Struct, frozen=True, kw_only=True, array_like=True):
    """A waiting ticket, as the JSON array ``[ticket, service, ahead, p50_s, p90_s, requeued]``.

    ``ahead``: the tickets of its service the dispatcher calls before it now
    (:meth:`fastpath.dispatcher.Dispatcher.people_ahead`); ``p50_s``/``p90_s``: its
    remaining wait at the message's ``ts`` as the simulator predicts it (null: no
    prediction); ``requeued``: it was called once, nobody came (过号), and it queues again.
    """

    ticket: TicketNo
    service: Ident
    ahead: Count
    p50_s: Seconds | None
    p90_s: Seconds | None
    requeued: bool

    def __post_init__(self) -> None:
        if (self.p50_s is None) != (self.p90_s is None):
            raise ValueError("p50_s and p90_s go together")
        if self.p50_s is not None and self.p90_s is not None and self.p90_s < self.p50_s:
            raise ValueError("p90_s must be >= p50_s")


class CalledProgress(_Struct, frozen=True, kw_only=True, array_like=True):
    """A ticket at a window: ``[ticket, service, window, serving]`` (serving: 办理中)."""

    ticket: TicketNo
    service: Ident
    window: WindowNo
    serving: bool


EndedOutcome = Literal["done", "no_show", "cancelled"]


class EndedProgress(_Struct, frozen=True, kw_only=True, array_like=True):
    """A ticket that ended lately: ``[ticket, outcome, window]`` (window: null if cancelled)."""

    ticket: TicketNo
    outcome: EndedOutcome
    window: WindowNo | None


IssuingStatus = Literal["open", "closed", "stopped"]


class Progress(_Message, frozen=True, kw_only=True):
    """``progress``: what the citizens' progress pages show, the whole of it each time.

    Published (QoS 0, retained) when the queue changes and at least every minute while
    the edge is connected, never queued behind an outage: a later one replaces it.
    ``seq`` is the journal's last seq the snapshot reflects. ``issuing`` says whether
    tickets are issued now (``closed``: outside the hall's hours; ``stopped``: an
    emergency stop) and ``notice`` what the hall says about it. ``ended`` lists the
    tickets that ended lately (the last half hour, newest last).
    """

    ts: UnixMs
    clock_synced: bool
    day: Day
    day_seq: AckSeq
    """The seq of the day's ``day.reset``: the tickets issued after it are today's."""
    seq: AckSeq
    issuing: IssuingStatus
    notice: Text | None
    services: Annotated[dict[Ident, ShortText], msgspec.Meta(max_length=MAX_QUEUES)]
    """Service id -> its Chinese name, as the tickets print it."""
    waiting: Annotated[list[WaitingProgress], msgspec.Meta(max_length=MAX_PROGRESS_WAITING)]
    called: Annotated[list[CalledProgress], msgspec.Meta(max_length=MAX_WINDOWS)]
    ended: Annotated[list[EndedProgress], msgspec.Meta(max_length=MAX_PROGRESS_ENDED)]
# --------------------------------------------------------------------------- advice

AdviceText = Annotated[str, msgspec.Meta(min_length=1, max_length=400, pattern=_NO_CONTROL)]
MoveKind = Literal["switch", "open", "add"]


class AdviceOutlook(_Struct, frozen=True, kw_only=True):
    """One service over the advice's horizon, as simulated from the live hall (pooled
    over the simulated futures): its p90 wait against its SLA."""

    service: Ident
    sla_s: Seconds
    p90_s: Seconds
    over_sla_pct: Percent
    """Share of its waits above the SLA."""
    breach_pct: Percent
    """Share of the simulated futures in which its p90 passes the SLA."""
    tickets: Annotated[float, msgspec.Meta(ge=0.0, le=10_000_000.0)]
    """Tickets counted per simulated future (those waiting and those arriving)."""


class AdviceMove(_Struct, frozen=True, kw_only=True):
    """What a person would do: ``switch`` open windows to other services, ``open``
    signed-out windows, or ``add`` windows (应急窗口); verified by simulation."""

    kind: MoveKind
    windows: Annotated[list[WindowNo], msgspec.Meta(max_length=MAX_WINDOWS)]
    """The windows switched or opened; empty for ``add``."""
    services: Annotated[list[Ident], msgspec.Meta(min_length=1, max_length=MAX_QUEUES)]
    """What those windows (or the added ones) serve after the move."""
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_WINDOWS)]

    def __post_init__(self) -> None:
        if self.kind == "add" and self.windows:
            raise ValueError("an add move names no window")
        if self.kind != "add" and len(self.windows) != self.count:
            raise ValueError("a switch or open move names count windows")


class Advisory(_Struct, frozen=True, kw_only=True):
    """A breach seen coming and the move that prevents it (``move`` null: none found
    within the limit, more staff is needed)."""

    id: uuid.UUID
    """The same while the breaching services and the move stay the same."""
    since_ts: UnixMs
    """When the edge first gave this advisory."""
    horizon_s: Seconds
    breaching: Annotated[list[Ident], msgspec.Meta(min_length=1, max_length=MAX_QUEUES)]
    move: AdviceMove | None
    before: Annotated[list[AdviceOutlook], msgspec.Meta(min_length=1, max_length=MAX_QUEUES)]
    """Every service judged (those with an SLA), without the move."""
    after: Annotated[list[AdviceOutlook], msgspec.Meta(max_length=MAX_QUEUES)] | None
    """Every service judged, with the move; null when there is no move."""
    message_zh: AdviceText
    message_en: AdviceText

    def __post_init__(self) -> None:
        if (self.move is None) != (self.after is None):
            raise ValueError("after is given exactly when a move is")
        judged = {o.service for o in self.before}
        if not set(self.breaching) <= judged:
            raise ValueError("every breaching service must be among those judged (before)")


class Advice(_Message, frozen=True, kw_only=True):
    """``advice``: the site's live staffing advice, the latest replacing the one before.

    ``advisory`` null clears it. The edge sends it again every advice period while
    it holds; the central drops it at ``expires_ts`` (measured from when it arrived)
    if no newer one came. ``session`` and ``ts`` order the messages of a site.
    """

    session: Seq
    ts: UnixMs
    clock_synced: bool
    expires_ts: UnixMs
    advisory: Advisory | None

    def __post_init__(self) -> None:
        if self.expires_ts <= self.ts:
            raise ValueError("expires_ts must be after ts")
        if self.advisory is not None and self.advisory.since_ts > self.ts:
            raise ValueError("an advisory cannot be older than since_ts")

    def supersedes(self, session: int, ts: int) -> bool:
        """Whether this message is newer than one of ``session`` sent at ``ts``: a later
        MQTT session always is (a clock set back at boot does not hold it back)."""
        return (self.session, self.ts) > (session, ts)


# --------------------------------------------------------------------------- ack


class Ack(_Message, frozen=True, kw_only=True):
    """``ack``: the highest seq such that every event 1..seq is committed centrally."""

    seq: AckSeq


# --------------------------------------------------------------------------- lease, restore

MAX_RESTORE_PARTS: Final = 64
MAX_RESTORE_TICKETS: Final = 400
"""Tickets in one :class:`Restore` part (about 200 bytes each: a part stays under the
topic's 128 KiB); a bigger queue is sent in several parts."""


class Lease(_Message, frozen=True, kw_only=True):
    """``lease`` (retained): the device that numbers the site's tickets, and its epoch.

    Only the central publishes it, when it grants an epoch. A device that reads a lease
    of another device with a higher epoch than its own stops numbering
    (:class:`DeviceReplaced`); a device that waits for its first epoch keeps waiting.
    ``behind`` is left out unless set, so edges from before it still read every lease.
    """

    device: DeviceId
    epoch: Epoch
    ts: UnixMs
    behind: BehindJournal | msgspec.UnsetType = msgspec.UNSET
    """Set when one running copy of the holder's journal is behind the central's; left
    out of the wire otherwise."""


class BehindJournal(_Struct, frozen=True, kw_only=True):
    """``lease.behind``: the holder's journal running as ``boot_id`` (``state.boot_id``)
    ends below ``held``, the last seq the central holds of its epoch, or counts fewer
    sessions than the central has seen of it (an older or a second copy of the journal).
    That copy must stop numbering and become a new device (``state.forked``); the copy
    the central believes keeps the lease."""

    boot_id: Token
    held: AckSeq


class PrefixCounter(_Struct, frozen=True, kw_only=True):
    prefix: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{1,2}\Z")]
    last: Annotated[int, msgspec.Meta(ge=0, le=9999)]
    """The highest number of this prefix issued that day, as far as the central knows."""


class RestoredTicket(_Struct, frozen=True, kw_only=True):
    """A ticket still in the hall: waiting, or called or being served at ``window``."""

    ticket: TicketNo
    service: Ident
    ticket_class: TicketClass = msgspec.field(name="class")
    issued_ts: UnixMs
    key_ts: UnixMs
    """What the queue orders by: the issue time, a booked time, or a requeued no-show's."""
    state: Literal["waiting", "called", "serving"]
    window: WindowNo | None
    recalls: Annotated[int, msgspec.Meta(ge=0, le=99)]
    requeued: bool
    transfers: Annotated[int, msgspec.Meta(ge=0, le=99)]

    def __post_init__(self) -> None:
        if (self.state == "waiting") != (self.window is None):
            raise ValueError("a waiting ticket has no window; a called one has one")


class RestoredWindow(_Struct, frozen=True, kw_only=True):
    """A window signed in (open or paused), its staff and the ticket it holds."""

    window: WindowNo
    state: Literal["open", "paused"]
    staff: Ident | None
    ticket: TicketNo | None


class Restore(_Message, frozen=True, kw_only=True):
    """``restore``: the central's record of the day, for the device granted ``epoch``.

    The device takes its epoch with the first complete restore (parts ``1..parts``,
    applied together): it numbers nothing before. Later restores of the same epoch
    hand over tickets a replaced device issued that the central learnt of since: they
    join the queue. ``day`` null: the central knows nothing of the day (a new site).
    """

    device: DeviceId
    epoch: Epoch
    day: Day | None
    part: Annotated[int, msgspec.Meta(ge=1, le=MAX_RESTORE_PARTS)]
    parts: Annotated[int, msgspec.Meta(ge=1, le=MAX_RESTORE_PARTS)]
    counters: Annotated[list[PrefixCounter], msgspec.Meta(max_length=MAX_QUEUES)]
    skipped: Annotated[int, msgspec.Meta(ge=0, le=9999)]
    """Numbers of every prefix to leave unused above ``counters``: tickets the replaced
    device may have issued that never reached the central."""
    tickets: Annotated[list[RestoredTicket], msgspec.Meta(max_length=MAX_RESTORE_TICKETS)]
    windows: Annotated[list[RestoredWindow], msgspec.Meta(max_length=MAX_WINDOWS)]
    ts: UnixMs

    def __post_init__(self) -> None:
        if self.part > self.parts:
            raise ValueError("part must not be above parts")


# --------------------------------------------------------------------------- diagnostics

MAX_LOG_LINES: Final = 200
MAX_LOG_TEXT: Final = 400
LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class LogLine(_Struct, frozen=True, kw_only=True):
    ts: UnixMs
    level: LogLevel
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LOG_TEXT, pattern=_NO_CONTROL)]
    """The log event and its fields, secrets and ID numbers masked (``***``)."""


class DiagTask(_Struct, frozen=True, kw_only=True):
    name: Token
    """A supervised task of the daemon (``uplink``, ``device:printer``...)."""
    restarts: Count


class DiagStatus(_Struct, frozen=True, kw_only=True):
    config: Token | None
    day: Day | None
    numbering: Literal["granted", "waiting", "replaced"]
    epoch: Epoch | None
    last_seq: AckSeq
    acked_seq: AckSeq
    outbox_depth: Count
    journal_bytes: Annotated[int, msgspec.Meta(ge=0, le=2**40)]
    uplink_connects: Count
    tasks: Annotated[list[DiagTask], msgspec.Meta(max_length=64)]
    devices: Annotated[list[DeviceStat], msgspec.Meta(max_length=MAX_DEVICES)]
    host: HostStat


class Diagnostics(_Message, frozen=True, kw_only=True):
    """``diag``: the answer to ``cmd/diagnostics`` (``id``): status and the last log lines.

    ``logs`` are the newest lines, oldest first; ``logs_dropped`` older ones were left out
    to keep the payload under the topic's limit.
    """

    id: uuid.UUID
    device: DeviceId
    boot_id: Token
    software: Token
    ts: UnixMs
    status: DiagStatus
    logs: Annotated[list[LogLine], msgspec.Meta(max_length=MAX_LOG_LINES)]
    logs_dropped: Count


# --------------------------------------------------------------------------- commands


class _Args(_Struct, frozen=True, kw_only=True, tag_field="name"):
    """Base of command args; the tag (``"name"``) is the command name of ``cmd/{name}``."""


def _check_display_text(text: str) -> None:
    """Text the hall shows on its LED screens must be in their GB2312 font: refused here,
    where it enters (the central's API answers 422 with this reason), not at the screen."""
    if any(0xD800 <= ord(char) <= 0xDFFF for char in text):
        return  # a lone surrogate is no text at all: the encoder refuses it (not UTF-8)
    problem = display_text_problem(text)
    if problem is not None:
        raise ValueError(f"text cannot be shown on the LED screens: {problem}")


class AnnounceArgs(_Args, frozen=True, kw_only=True, tag="announce"):
    text: Text
    """Spoken and shown on the hall screen: GB2312 only."""
    repeat: Annotated[int, msgspec.Meta(ge=1, le=5)]

    def __post_init__(self) -> None:
        _check_display_text(self.text)


class ReprintArgs(_Args, frozen=True, kw_only=True, tag="reprint"):
    ticket: TicketNo


class ScreenNoticeArgs(_Args, frozen=True, kw_only=True, tag="screen_notice"):
    text: Text
    screen: Ident | None
    """Device id of one LED screen, or null for every screen of the site."""
    duration_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)]

    def __post_init__(self) -> None:
        _check_display_text(self.text)


class ReloadConfigArgs(_Args, frozen=True, kw_only=True, tag="reload_config"):
    version: Token | None
    """The config version the daemon should find on disk, or null for any."""


class DiagnosticsArgs(_Args, frozen=True, kw_only=True, tag="diagnostics"):
    """Ask for the device's status and its last ``lines`` log lines (answered on ``diag``)."""

    lines: Annotated[int, msgspec.Meta(ge=1, le=MAX_LOG_LINES)]


class IssuingArgs(_Args, frozen=True, kw_only=True, tag="issuing"):
    """Stop issuing tickets (``stopped``, with the ``reason`` the hall screen, the kiosk
    and the progress pages show), or lift the stop ``stop``."""

    stop: Token
    stopped: bool
    reason: ShortText | None

    def __post_init__(self) -> None:
        if self.stopped != (self.reason is not None):
            raise ValueError("a stop has a reason, a lift has none")
        if self.reason is not None:
            _check_display_text(self.reason)


CalendarDate = Annotated[str, msgspec.Meta(
    pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(\.\.[0-9]{4}-[0-9]{2}-[0-9]{2})?\Z")]
"""A date, or a range ``first..last``."""
SpecialDay = Annotated[str, msgspec.Meta(
    pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:,-]{11,35}\Z")]
"""A date and its own hours: ``2026-12-31 08:30-12:00``."""
MAX_CALENDAR_ENTRIES: Final = 100


class CalendarArgs(_Args, frozen=True, kw_only=True, tag="calendar"):
    """The city calendar's dated days, over the site's own ``[calendar]`` (a date named
    here takes this word): holidays, 调休 make-up working days, days of their own hours."""

    version: Token
    holidays: Annotated[list[CalendarDate], msgspec.Meta(max_length=MAX_CALENDAR_ENTRIES)]
    workdays: Annotated[list[CalendarDate], msgspec.Meta(max_length=MAX_CALENDAR_ENTRIES)]
    special: Annotated[list[SpecialDay], msgspec.Meta(max_length=MAX_CALENDAR_ENTRIES)]


MAX_BOOKINGS_PER_DAY: Final = 800
"""Bookings of one site and day: what one ``cmd/bookings`` carries (64 KiB)."""
PERSON_HASH_HEX: Final = 16
PersonHash = Annotated[str, msgspec.Meta(pattern=f"^[0-9a-f]{{{PERSON_HASH_HEX}}}\\Z")]
"""The first 16 hex digits of the salted hash of a person's ID number (never the number)."""
SlotTime = Annotated[str, msgspec.Meta(pattern=r"^[0-2][0-9]:[0-5][0-9]\Z")]


class Booking(msgspec.Struct, frozen=True, array_like=True):
    """One booking of the day, as a compact row: ``[code, service, "09:00", person]``;
    ``start`` is the slot's start, the appointment's booked time."""

    code: BookingCode
    service: Ident
    start: SlotTime
    person: PersonHash


class BookingsArgs(_Args, frozen=True, kw_only=True, tag="bookings"):
    """The site's bookings (预约) of ``day``, all of them (cancelled ones left out): each
    new version replaces the one before. Checked in at the kiosk by code."""

    version: Token
    day: Day
    bookings: Annotated[list[Booking], msgspec.Meta(max_length=MAX_BOOKINGS_PER_DAY)]


CommandArgs: TypeAlias = (AnnounceArgs | ReprintArgs | ScreenNoticeArgs | ReloadConfigArgs
                          | DiagnosticsArgs | IssuingArgs | CalendarArgs | BookingsArgs)

COMMAND_ARGS: Final[Mapping[str, type[msgspec.Struct]]] = MappingProxyType(
    {_tag(cls): cls for cls in get_args(CommandArgs)}
)
assert tuple(COMMAND_ARGS) == COMMAND_NAMES


class Cmd(_Message, frozen=True, kw_only=True):
    """``cmd/{name}``: a remote command; the edge must not run it at or after ``expires_ts``."""

    id: uuid.UUID
    issued_ts: UnixMs
    expires_ts: UnixMs
    args: CommandArgs

    def __post_init__(self) -> None:
        ttl = self.expires_ts - self.issued_ts
        if not 0 < ttl <= MAX_COMMAND_TTL_MS:
            raise ValueError(f"expires_ts - issued_ts must be in 1..{MAX_COMMAND_TTL_MS} ms")

    @property
    def name(self) -> str:
        return _tag(type(self.args))

    def expired(self, now_ms: int) -> bool:
        """Whether the command is past its time-to-live at ``now_ms`` (caller's clock)."""
        return now_ms >= self.expires_ts


class CmdResult(_Message, frozen=True, kw_only=True):
    """``cmd_result``: outcome of a command; ``error`` is set exactly when ``ok`` is false."""

    id: uuid.UUID
    ok: bool
    error: ErrorText | None
    ts: UnixMs

    def __post_init__(self) -> None:
        if self.ok != (self.error is None):
            raise ValueError("error must be null when ok and set when not ok")


Message: TypeAlias = (
    State | Event | Telemetry | Ack | Cmd | CmdResult | Lease | Restore | Diagnostics
    | Progress | Advice
)

SCHEMAS: Final[Mapping[Kind, type[msgspec.Struct]]] = MappingProxyType(
    {
        Kind.STATE: State,
        Kind.EVENT: Event,
        Kind.TELEMETRY: Telemetry,
        Kind.ACK: Ack,
        Kind.CMD: Cmd,
        Kind.CMD_RESULT: CmdResult,
        Kind.LEASE: Lease,
        Kind.RESTORE: Restore,
        Kind.DIAG: Diagnostics,
        Kind.PROGRESS: Progress,
        Kind.ADVICE: Advice,
    }
)
"""The payload schema of every topic kind."""

_KIND_OF: Final = {cls: kind for kind, cls in SCHEMAS.items()}

# --------------------------------------------------------------------------- codec


class _Probe(msgspec.Struct):
    """Reads only ``v`` (unknown fields skipped) to tell version errors from schema errors."""

    v: Any = msgspec.UNSET


_PROBE: Final = msgspec.json.Decoder(_Probe)
_DECODERS: Final[Mapping[Kind, msgspec.json.Decoder[Any]]] = MappingProxyType(
    {kind: msgspec.json.Decoder(cls) for kind, cls in SCHEMAS.items()}
)
_ENCODER: Final = msgspec.json.Encoder()


def kind_of(message: Message) -> Kind:
    """The topic kind a message is published on."""
    try:
        return _KIND_OF[type(message)]
    except KeyError:
        raise LocalProtocolError(f"not an MQTT message: {type(message).__name__}") from None


def encode(message: Message) -> bytes:
    """Compact UTF-8 JSON (Chinese not escaped), validated against the schema and size limit.

    Raises :class:`LocalProtocolError` if the message would be rejected by the peer.
    """
    kind = kind_of(message)
    try:
        data = _ENCODER.encode(message)
    except (msgspec.EncodeError, OverflowError, UnicodeEncodeError, TypeError) as exc:
        raise LocalProtocolError(f"cannot encode {kind.value}: {exc}") from exc
    limit = TOPICS[kind].max_payload
    if len(data) > limit:
        raise LocalProtocolError(f"{kind.value} payload is {len(data)} bytes, limit {limit}")
    try:
        _DECODERS[kind].decode(data)
    except msgspec.ValidationError as exc:
        raise LocalProtocolError(f"invalid {kind.value}: {exc}") from exc
    return data


def decode(
    kind: Kind | str,
    payload: bytes | bytearray | memoryview,
    *,
    site_id: str,
    command: str | None = None,
) -> Message:
    """Decode and validate one payload received on ``onedoor/v1/{site_id}/{kind}``.

    ``command`` is the ``{name}`` of a ``cmd/{name}`` topic, checked against the
    payload when given. Raises :class:`InvalidMessage` with a :class:`Reason`;
    never anything else for any bytes.
    """
    kind = Kind(kind)

    def fail(reason: Reason, detail: str) -> InvalidMessage:
        return InvalidMessage(reason, detail, site_id=site_id, kind=kind)

    limit = TOPICS[kind].max_payload
    if len(payload) > limit:
        raise fail(Reason.TOO_LARGE, f"{len(payload)} bytes, limit {limit}")
    # Our encoders put "v" first: then a good payload is decoded once, and only a failure
    # asks the probe whether the version is what failed (it is checked before the schema).
    ours = payload[: len(_VERSION_FIRST)] == _VERSION_FIRST
    if not ours:
        _check_version(payload, fail)
    try:
        message: Message = _DECODERS[kind].decode(payload)
    except msgspec.ValidationError as exc:
        if ours:
            _check_version(payload, fail)
        raise fail(Reason.SCHEMA, str(exc)) from None
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise fail(Reason.JSON, str(exc) or type(exc).__name__) from None
    if message.site != site_id:
        raise fail(Reason.SITE_MISMATCH, f"payload site {message.site!r}, topic {site_id!r}")
    if isinstance(message, Cmd) and command is not None and message.name != command:
        raise fail(Reason.COMMAND_MISMATCH, f"payload {message.name!r}, topic {command!r}")
    return message


_VERSION_FIRST: Final = b'{"v":%d,' % VERSION


def _check_version(payload: bytes | bytearray | memoryview,
                   fail: Callable[[Reason, str], InvalidMessage]) -> None:  # fmt: skip
    """Raise unless ``v`` is there and is this contract's (reads only ``v``)."""
    try:
        probe = _PROBE.decode(payload)
    except msgspec.ValidationError as exc:
        raise fail(Reason.SCHEMA, str(exc)) from None
    # msgspec raises UnicodeDecodeError for invalid UTF-8 inside a JSON string.
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise fail(Reason.JSON, str(exc) or type(exc).__name__) from None
    if probe.v is msgspec.UNSET:
        raise fail(Reason.VERSION, 'missing "v"')
    if type(probe.v) is not int or probe.v != VERSION:
        raise fail(Reason.VERSION, f'unsupported "v": {probe.v!r:.20}')


class Incoming(NamedTuple):
    """A received publish: unpacks as ``site_id, kind, message``."""

    site_id: str
    kind: Kind
    message: Message


def decode_publish(topic: str, payload: bytes | bytearray | memoryview) -> Incoming:
    """Parse the topic and decode the payload in one call (the ingest path).

    Raises :class:`InvalidMessage` (``reason`` ``topic`` for a bad topic; otherwise
    with ``site_id`` and ``kind`` set, for per-site counters).
    """
    parsed = parse_topic(topic)
    message = decode(parsed.kind, payload, site_id=parsed.site_id, command=parsed.command)
    return Incoming(parsed.site_id, parsed.kind, message)


@dataclass(frozen=True, slots=True)
class Publish:
    """Everything needed for ``client.publish(topic, payload, qos=qos, retain=retain)``."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


def to_publish(message: Message) -> Publish:
    """Encode ``message`` and pick its topic (from ``message.site``), QoS and retain flag."""
    kind = kind_of(message)
    command = message.name if isinstance(message, Cmd) else None
    spec = TOPICS[kind]
    payload = encode(message)
    return Publish(build_topic(message.site, kind, command), payload, spec.qos, spec.retain)


def will_for(state: State) -> Publish:
    """The Last Will to register on connect, matching the ``online`` state about to be sent.

    Same site, boot id, session and versions; ``status`` offline and ``lwt`` true.
    Its ``ts`` is the connect time (a Will cannot know when it fires).
    """
    will = msgspec.structs.replace(state, status="offline", lwt=True)
    return to_publish(will)


__all__ = [
    "BOOKING_CODE_PATTERN",
    "COMMAND_ARGS",
    "EPOCH_SHIFT",
    "EVENT_TYPES",
    "IDENT_PATTERN",
    "KNOWN_DEVICE_DETAILS",
    "MAX_BOOKINGS_PER_DAY",
    "MAX_CALENDAR_ENTRIES",
    "MAX_COMMAND_TTL_MS",
    "MAX_CONFIG_ERRORS",
    "MAX_DEVICES",
    "MAX_EPOCH",
    "MAX_LOG_LINES",
    "MAX_LOG_TEXT",
    "MAX_PROGRESS_ENDED",
    "MAX_PROGRESS_WAITING",
    "MAX_QUEUES",
    "MAX_RATING_REASONS",
    "MAX_RESTORE_PARTS",
    "MAX_RESTORE_TICKETS",
    "MAX_WINDOWS",
    "PERSON_HASH_HEX",
    "PROGRESS_TOKEN_PATTERN",
    "SCHEMAS",
    "TOKEN_PATTERN",
    "VERSION",
    "Ack",
    "AckRefused",
    "Advice",
    "AdviceMove",
    "AdviceOutlook",
    "Advisory",
    "AnnounceArgs",
    "BehindJournal",
    "Booking",
    "BookingCheckedIn",
    "BookingCode",
    "BookingsApplied",
    "BookingsArgs",
    "CalendarApplied",
    "CalendarArgs",
    "CalendarDate",
    "CalledProgress",
    "CaseClosed",
    "CaseInfo",
    "CaseOpened",
    "Cmd",
    "CmdResult",
    "CommandArgs",
    "ConfigApplied",
    "ConfigRejected",
    "DayReset",
    "DayRestored",
    "DeviceId",
    "DeviceReplaced",
    "DeviceStat",
    "DeviceStatus",
    "DiagStatus",
    "DiagTask",
    "Diagnostics",
    "DiagnosticsArgs",
    "EndedOutcome",
    "EndedProgress",
    "Epoch",
    "Event",
    "EventBody",
    "Forked",
    "HelpAcknowledged",
    "HelpEscalated",
    "HelpRequested",
    "HelpResolved",
    "HostStat",
    "Incoming",
    "InvalidMessage",
    "IssuingArgs",
    "IssuingResumed",
    "IssuingStatus",
    "IssuingStopped",
    "JournalLost",
    "Kind",
    "Lease",
    "LogLevel",
    "LogLine",
    "Message",
    "OutboxDropped",
    "OutboxStat",
    "PrefixCounter",
    "Progress",
    "Publish",
    "QueueStat",
    "RatingGiven",
    "RatingMissed",
    "RatingReason",
    "RatingValue",
    "Reason",
    "ReloadConfigArgs",
    "ReprintArgs",
    "Restore",
    "RestoredTicket",
    "RestoredWindow",
    "ScreenNoticeArgs",
    "ServiceOvertime",
    "SlaBreached",
    "SpecialDay",
    "State",
    "Telemetry",
    "TicketCalled",
    "TicketCancelled",
    "TicketDone",
    "TicketIssued",
    "TicketNoShow",
    "TicketRecalled",
    "TicketServing",
    "TicketTransferred",
    "WaitPrediction",
    "WaitingProgress",
    "WindowPaused",
    "WindowResumed",
    "WindowSignedIn",
    "WindowSignedOut",
    "WindowStat",
    "decode",
    "decode_publish",
    "encode",
    "epoch_base",
    "epoch_of",
    "kind_of",
    "state_supersedes",
    "to_publish",
    "will_for",
]
