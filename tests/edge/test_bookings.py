"""Bookings (预约) the central pushes, checked in at the kiosk by code: an appointment
ticket at the slot's start, the dispatcher's grace rule; a wrong, used or other-day code
refused in Chinese; held across a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge.clock import ManualClock
from edge.config import load_config
from edge.device_set import DeviceSet
from edge.devices.base import IdCardRead
from edge.devices_factory import build_devices
from edge.errors import CommandRejected
from edge.hall import Hall, open_hall
from edge.id_card_kiosk import CardLedger, IdCardKiosk, KioskPolicy
from edge.kiosk import TicketDesk
from edge.outputs import HallOutputs
from fastpath.types import TicketClass
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.id_card import booking_person_hash
from tests.edge.sites import site_toml
from tests.edge.test_hours import on
from tests.edge.test_id_card_daemon import ELDER
from tests.edge.test_pushed import run

PERSON = "0123456789abcdef"
BOOKINGS = mm.BookingsArgs(version="bk-20261208-aaaa", day="2026-12-08", bookings=[
    mm.Booking("1208000001", "shebao", "09:00", PERSON),
    mm.Booking("1208000002", "huji", "09:30", PERSON),
    mm.Booking("1208000003", "shebao", "10:00", PERSON),
])


def check_in(hall: Hall, code: str) -> tuple[str, str, int | None]:
    """What the kiosk does with a code: (ticket, class, booked time)."""
    service, booked = hall.booking(code)
    issued = hall.issue(service, TicketClass.APPOINTMENT, channel="kiosk", booked_ms=booked,
                        wait=None, booking=code)
    body = issued.event.body
    assert isinstance(body, mm.TicketIssued)
    return body.ticket, body.ticket_class, body.booked_ts


def refused(hall: Hall, code: str) -> tuple[int, str, str]:
    with pytest.raises(CommandRejected) as caught:
        hall.booking(code)
    return caught.value.status, caught.value.code, str(caught.value)


def test_a_booking_checks_in_once_on_its_day_within_grace_or_as_a_walk_in(
        tmp_path: Path) -> None:
    config = load_config(site_toml(tmp_path))
    clock = ManualClock(on(2026, 12, 8, 8, 55))
    hall = open_hall(config, clock)
    try:
        assert refused(hall, "1208000001")[1] == "unknown_booking"  # nothing pushed yet
        run(hall, BOOKINGS)
        assert hall.bookings_version() == "bk-20261208-aaaa"
        run(hall, BOOKINGS)  # sent again: nothing new journaled
        assert [e.type for e in hall.journal.events()].count("bookings.applied") == 1
        assert check_in(hall, "1208000001") == ("A001", "appointment", on(2026, 12, 8, 9))
        status, code, message = refused(hall, "1208000001")
        assert (status, code) == (409, "booking_used")
        assert message.startswith("此预约已签到，号码A001")
        status, code, message = refused(hall, "1209000001")
        assert (status, code) == (409, "booking_other_day")
        assert message.startswith("此预约不是今天的（12月9日）")
        status, code, message = refused(hall, "1208999999")
        assert (status, code) == (404, "unknown_booking")
        assert message.startswith("预约码无效")
        assert refused(hall, "12080")[:2] == (422, "bad_booking_code")
        clock.set(on(2026, 12, 8, 9, 45))  # 15 minutes past 09:30: past the 10-minute grace
        assert check_in(hall, "1208000002") == ("B001", "normal", None)
        hall.close()
        hall = open_hall(config, clock)  # the check-ins and the bookings, after a restart
        assert refused(hall, "1208000002")[1] == "booking_used"
        assert check_in(hall, "1208000003")[1] == "appointment"
        # A new version without a booking (cancelled at the central) replaces the old one.
        run(hall, mm.BookingsArgs(version="bk-20261208-bbbb", day="2026-12-08", bookings=[]))
        assert refused(hall, "1208000004")[1] == "unknown_booking"
        events = [e.body for e in hall.journal.events()
                  if isinstance(e.body, mm.BookingCheckedIn)]
        assert [(b.code, b.ticket) for b in events] == [
            ("1208000001", "A001"), ("1208000002", "B001"), ("1208000003", "A002")]
    finally:
        hall.close()


def test_yesterdays_bookings_check_nothing_in(tmp_path: Path) -> None:
    config = load_config(site_toml(tmp_path))
    clock = ManualClock(on(2026, 12, 9, 9))
    hall = open_hall(config, clock)
    try:
        run(hall, BOOKINGS)  # held, but for the 8th
        assert refused(hall, "1209000001")[1] == "unknown_booking"
        assert refused(hall, "1208000001")[1] == "booking_other_day"
    finally:
        hall.close()


def test_a_booking_moved_to_today_keeps_its_code(tmp_path: Path) -> None:
    """The central moves a booking to another day with its code kept: the code names
    the day it was made for, the day's bookings hold it."""
    config = load_config(site_toml(tmp_path))
    hall = open_hall(config, ManualClock(on(2026, 12, 8, 9, 5)))
    try:
        run(hall, mm.BookingsArgs(version="bk-20261208-dddd", day="2026-12-08", bookings=[
            mm.Booking("1210000001", "huji", "10:00", PERSON)]))
        assert check_in(hall, "1210000001") == ("B001", "appointment", on(2026, 12, 8, 10))
        assert refused(hall, "1209000001")[1] == "booking_other_day"
    finally:
        hall.close()


def test_the_kiosk_checks_in_by_code(tmp_path: Path) -> None:
    """Through the desk the kiosk HTTP API calls: the same ticket, and nothing lost on
    a refusal."""
    config = load_config(site_toml(tmp_path))
    clock = ManualClock(on(2026, 12, 8, 9, 5))
    hall = open_hall(config, clock)
    try:
        run(hall, BOOKINGS)

        async def scenario() -> tuple[str, int]:
            devices = DeviceSet(build_devices, asyncio.Queue())
            desk = TicketDesk(hall, HallOutputs(hall, devices), predict_budget_s=lambda: 5.0)
            try:
                answer = await desk.check_in(" 1208000001 ", print_it=False)
                with pytest.raises(CommandRejected):
                    await desk.check_in("1208000001", print_it=False)
                return answer.issued.ticket.number, hall.journal.last_seq
            finally:
                desk.close()

        number, seq = asyncio.run(scenario())
        assert number == "A001"
        assert hall.journal.last_seq == seq
    finally:
        hall.close()


SALT = "the-city-booking-salt"


def test_an_id_card_checks_in_its_holders_booking(tmp_path: Path) -> None:
    """A card whose holder booked today checks the booking in (compared as salted hashes);
    another card, or a hall without the salt, takes an ordinary ticket."""
    config = load_config(site_toml(tmp_path))
    clock = ManualClock(on(2026, 12, 8, 9, 5))
    hall = open_hall(config, clock)
    elder = booking_person_hash(SALT, ELDER.id_number)[:mm.PERSON_HASH_HEX]
    try:
        run(hall, mm.BookingsArgs(version="bk-20261208-cccc", day="2026-12-08", bookings=[
            mm.Booking("1208000007", "huji", "09:00", PERSON),
            mm.Booking("1208000008", "huji", "09:00", elder)]))

        def read_card(salt: str | None) -> mm.TicketIssued:
            async def scenario() -> None:
                tasks: list[asyncio.Task[None]] = []
                cards = IdCardKiosk(KioskPolicy("shebao", tickets_per_day=0),
                                    CardLedger(tmp_path / "idcards.sqlite"), booking_salt=salt)
                desk = TicketDesk(hall, HallOutputs(hall, DeviceSet(build_devices,
                                                                    asyncio.Queue())),
                                  spawn=lambda work, _name: tasks.append(
                                      asyncio.ensure_future(work)), cards=cards)
                try:
                    desk.card(IdCardRead("id_card", ELDER))
                    await asyncio.gather(*tasks)
                finally:
                    desk.close()
                    cards.ledger.close()

            asyncio.run(scenario())
            issued = [e.body for e in hall.journal.events() if isinstance(e.body, mm.TicketIssued)]
            return issued[-1]

        without_salt = read_card(None)
        assert (without_salt.service, without_salt.ticket_class) == ("shebao", "priority")
        booked = read_card(SALT)
        assert (booked.ticket, booked.ticket_class, booked.booked_ts) == (
            "B001", "appointment", on(2026, 12, 8, 9))
        assert [(e.body.code, e.body.ticket) for e in hall.journal.events()
                if isinstance(e.body, mm.BookingCheckedIn)] == [("1208000008", "B001")]
        assert hall.booking_of(elder) is None  # checked in: the card takes a ticket again
        assert read_card(SALT).service == "shebao"
    finally:
        hall.close()


def test_the_booking_salt_is_masked_in_the_diagnostics_log(tmp_path: Path) -> None:
    from edge.daemon import EdgeDaemon
    from onedoor.log import recent

    (tmp_path / "salt").write_text(SALT + "\n")
    config = load_config(site_toml(tmp_path, extra=(
        '[devices.id_card]\nport = "/dev/ttyUSB9"\nservice = "shebao"\n'
        'booking_salt_file = "salt"\n')))
    EdgeDaemon._mask_secrets(config)
    recent.add("info", f"config.loaded salt={SALT}")
    assert SALT not in recent.tail(1)[0].text
