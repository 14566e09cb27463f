"""A booking check-in retried never issues a second ticket: a double tap or a scan read
twice while the first is answered gets its ticket (printed once), a retry with the kiosk's
Idempotency-Key gets it after the answer was lost, an ID card read twice checks in once.
Through the real kiosk HTTP API, and a real daemon where the timing matters."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from edge.clock import ManualClock, SystemClock
from edge.config import load_config
from edge.devices.base import IdCardRead
from edge.hall import Hall, open_hall
from edge.id_card_kiosk import CardLedger, IdCardKiosk, KioskPolicy
from edge.journal import Journal
from edge.kiosk import REPEAT_CARD_S, TEST_FAULT_EXIT_AFTER_TICKET_ENV, TicketDesk
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.id_card import booking_person_hash
from tests.edge.sites import free_port, site_toml, start_daemon, stop_daemon, until, wait_http
from tests.edge.test_hall import OPENING
from tests.edge.test_http_api import PaperTray, request, with_api
from tests.edge.test_id_card_daemon import ELDER
from tests.edge.test_kiosk import RETRYABLE, issued_events
from tests.edge.test_prediction import gated_daemon

SALT = "the-city-booking-salt"


def book_today(hall: Hall, *entries: tuple[str, str, str]) -> list[str]:
    """Hold bookings of the hall's day, as the central pushes them: (serial, service,
    person) each; returns their codes."""
    day = hall.day
    codes = [f"{day[5:7]}{day[8:10]}{serial}" for serial, _, _ in entries]
    hall.set_bookings(f"bk-{day}-test", day, [
        mm.Booking(code, service, "09:00", person)
        for code, (_, service, person) in zip(codes, entries, strict=True)])
    return codes


def post_json(url: str, body: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["idempotency-key"] = key
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def checked_in(hall: Hall) -> list[tuple[str, str]]:
    return [(e.body.code, e.body.ticket) for e in hall.journal.events()
            if isinstance(e.body, mm.BookingCheckedIn)]


def test_a_check_in_retried_with_its_key_gets_the_same_ticket(tmp_path: Path) -> None:
    async def test(api: Any, hall: Hall) -> None:
        one, two = book_today(hall, ("000001", "shebao", "p1"), ("000002", "huji", "p2"))
        key = "idempotency-key: kiosk-1-ci-1\r\n"
        body = f'{{"code": "{one}", "print": true}}'.encode()
        status, first = await request(api.port, "POST", "/bookings/check_in", body, key)
        assert (status, first["number"], first["class"], first["replayed"]) == (
            201, "A001", "appointment", False)
        status, again = await request(api.port, "POST", "/bookings/check_in", body, key)
        assert (status, again["number"], again["replayed"]) == (201, "A001", True)
        status, other = await request(api.port, "POST", "/bookings/check_in",
                                      f'{{"code": "{two}"}}'.encode(), key)
        assert (status, other["error"]) == (422, "key_reused")
        status, ticket = await request(api.port, "POST", "/tickets", b'{"service": "shebao"}',
                                       key)
        assert (status, ticket["error"]) == (422, "key_reused")  # one key, one request
        status, bad = await request(api.port, "POST", "/bookings/check_in", body,
                                    "idempotency-key: has space\r\n")
        assert (status, bad["error"]) == (422, "bad_key")
        status, keyless = await request(api.port, "POST", "/bookings/check_in", body)
        assert (status, keyless["error"]) == (409, "booking_used")
        assert "A001" in keyless["message"]
        assert checked_in(hall) == [(one, "A001")]
        assert len(hall.dispatcher.tickets()) == 1
        assert api.desk._outputs.printed == ["A001", "A001"]  # the retry reprints its slip

    with_api(tmp_path, test)


def test_a_double_tap_while_the_check_in_is_answered_gets_one_ticket(tmp_path: Path) -> None:
    """The first check-in waits for its predicted wait; a second tap (no key), a retry
    with another key, and one with the first key all get its ticket."""
    async def scenario() -> None:
        async with gated_daemon(tmp_path, budget_s=20.0) as (daemon, base, gate):
            hall = daemon.hall
            assert hall is not None
            (code,) = book_today(hall, ("000001", "shebao", "p1"))

            def check_in(key: str | None) -> Any:
                return asyncio.create_task(asyncio.to_thread(
                    post_json, f"{base}/bookings/check_in", {"code": code}, key))

            first = check_in("kiosk-2-1")
            await until(lambda: gate.started.is_set(), "the first prediction runs")
            taps = [check_in(None), check_in("kiosk-2-2"), check_in("kiosk-2-1")]
            await asyncio.sleep(0.5)
            gate.release.set()
            answers = [await task for task in [first, *taps]]
            assert [status for status, _ in answers] == [201] * 4
            assert {body["number"] for _, body in answers} == {"A001"}
            assert [body["replayed"] for _, body in answers] == [False, True, True, True]
            assert gate.runs == 1
            assert checked_in(hall) == [(code, "A001")]
            assert len(hall.dispatcher.tickets()) == 1

    asyncio.run(scenario())


def test_an_id_card_read_twice_checks_its_booking_in_once(tmp_path: Path) -> None:
    """Two reads at once, then a third: one appointment ticket, the later read told its
    number; past the repeat window the card takes an ordinary ticket as before."""
    config = load_config(site_toml(tmp_path))
    clock = ManualClock(OPENING)
    hall = open_hall(config, clock)
    person = booking_person_hash(SALT, ELDER.id_number)[:mm.PERSON_HASH_HEX]
    try:
        (code,) = book_today(hall, ("000008", "huji", person))

        async def scenario() -> list[str]:
            tasks: list[asyncio.Task[None]] = []
            cards = IdCardKiosk(KioskPolicy("shebao", tickets_per_day=0),
                                CardLedger(tmp_path / "idcards.sqlite"), booking_salt=SALT)
            outputs = PaperTray(hall)
            desk = TicketDesk(hall, outputs, cards=cards, spawn=lambda work, _name: tasks.append(
                asyncio.ensure_future(work)))
            try:
                desk.card(IdCardRead("id_card", ELDER))
                desk.card(IdCardRead("id_card", ELDER))
                await asyncio.gather(*tasks)
                desk.card(IdCardRead("id_card", ELDER))
                await asyncio.gather(*tasks)
                assert any(n.startswith("此预约已签到，号码B001") for n in outputs.notices())
                clock.advance(int(REPEAT_CARD_S * 1000) + 1000)
                desk.card(IdCardRead("id_card", ELDER))
                await asyncio.gather(*tasks)
                return outputs.printed
            finally:
                desk.close()
                cards.ledger.close()

        assert asyncio.run(scenario()) == ["B001", "A001"]
        assert checked_in(hall) == [(code, "B001")]
        issued = [e.body for e in hall.journal.events() if isinstance(e.body, mm.TicketIssued)]
        assert [(t.ticket, t.ticket_class) for t in issued] == [
            ("B001", "appointment"), ("A001", "priority")]
    finally:
        hall.close()


def test_a_check_in_journaled_but_not_answered_is_answered_on_retry(tmp_path: Path) -> None:
    """The daemon dies right after the check-in's ticket is journaled, before the kiosk
    hears of it: the retry with the same key gets that ticket, nothing more is issued."""
    port = free_port()
    config_path = site_toml(tmp_path, http_port=port)
    hall = open_hall(load_config(config_path), SystemClock())
    try:
        (code,) = book_today(hall, ("000001", "shebao", "p1"))
    finally:
        hall.close()
    url = f"http://127.0.0.1:{port}/bookings/check_in"
    process = start_daemon(config_path, env={TEST_FAULT_EXIT_AFTER_TICKET_ENV: "1"},
                           log_path=tmp_path / "first.log")
    wait_http(port, process)
    with pytest.raises(RETRYABLE):
        post_json(url, {"code": code, "print": True}, "kiosk-1-ci-42")
    assert process.wait(timeout=10) == 87
    process = start_daemon(config_path, log_path=tmp_path / "second.log")
    try:
        wait_http(port, process)
        status, body = post_json(url, {"code": code, "print": True}, "kiosk-1-ci-42")
        assert (status, body["number"], body["replayed"]) == (201, "A001", True)
        status, body = post_json(url, {"code": code}, None)
        assert (status, body["error"]) == (409, "booking_used")
    finally:
        assert stop_daemon(process) == 0
    assert [t.ticket for t in issued_events(config_path)] == ["A001"]
    with Journal(tmp_path / "journal.db", "test-site", read_only=True) as journal:
        assert [(e.body.code, e.body.ticket) for e in journal.events()
                if isinstance(e.body, mm.BookingCheckedIn)] == [(code, "A001")]
