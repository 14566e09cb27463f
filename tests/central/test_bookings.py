"""Bookings (预约), from a booking platform to the hall's kiosk and back to the statistics.

Real parts: Mosquitto, the central (service and API), the edge daemon of the simulated
hall (its kiosk HTTP API, windows). The booking platform is a fake, named as such
(:class:`FakeBookingPlatform`): an HTTP client of the central's bookings API, as a
粤省事-style platform would be.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central.audit import Actor
from central.auth import Role
from central.bookings import Bookings, check_id_number, person_hash
from central.config import CentralConfig
from central.errors import InvalidRequest, Unavailable
from central.models import Booking
from central.stats import business_date
from edge.simhall import simulated_hall
from onedoor.broker import free_port
from tests.central.edge_thread import EdgeThread, post
from tests.central.test_api_support import RunningApp, wait_until
from tests.central.test_pushes import SITE, app_with_simulated_hall, site_state
from tests.servers import MosquittoBroker

SALT = "test-salt-of-the-city-0001"


def id_number(serial: int) -> str:
    """A resident ID number of Zhongshan (4420), born 1990-01-01, with its check digit."""
    body = f"44200019900101{serial:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


class FakeBookingPlatform:
    """A stand-in for the booking platform (no real one here): books and cancels
    through the central's API with its own operator token."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def book(self, day: str, slot: str, person: int, *, site: str = SITE,
             service: str = "shebao") -> tuple[int, dict[str, Any]]:
        answer = self.client.post("/api/v1/bookings", headers=self.headers, json={
            "site": site, "service": service, "day": day, "slot": slot,
            "id_number": id_number(person), "reference": f"yss-{person}"})
        return answer.status_code, answer.json()

    def change(self, code: str, **fields: str) -> tuple[int, dict[str, Any]]:
        answer = self.client.post(f"/api/v1/bookings/{code}/change", headers=self.headers,
                                  json=fields)
        return answer.status_code, answer.json()

    def cancel(self, code: str) -> tuple[int, dict[str, Any]]:
        answer = self.client.post(f"/api/v1/bookings/{code}/cancel", headers=self.headers)
        return answer.status_code, answer.json()


@pytest.fixture
def env(tmp_path: Path, mqtt_broker: MosquittoBroker) -> Iterator[RunningApp]:
    with app_with_simulated_hall(tmp_path, mqtt_broker, booking_person_salt=SALT,
                                 booking_slot_quota=2) as env:
        yield env


def platform(env: RunningApp) -> FakeBookingPlatform:
    return FakeBookingPlatform(env.client, env.tokens[Role.OPERATOR])


def counts(env: RunningApp, day: str) -> dict[str, Any]:
    answer = env.client.get(f"/api/v1/bookings/stats?day={day}&site={SITE}",
                            headers=env.headers(Role.VIEWER)).json()
    return answer["sites"][0] if answer["sites"] else {}


def test_book_check_in_called_within_grace_and_a_no_show(
        env: RunningApp, tmp_path: Path, clips_dir: Path, mqtt_broker: MosquittoBroker) -> None:
    now = env.central.now()
    local = now.astimezone(dt.timezone(dt.timedelta(hours=8)))
    today = business_date(now).isoformat()
    if local.hour < 3 or local >= local.replace(hour=23, minute=20):
        pytest.skip("the simulated hall's business day starts at 03:00; a slot ends by 23:59")
    slot = f"{local:%H:%M}-{local + dt.timedelta(minutes=30):%H:%M}"
    yss = platform(env)
    http_port = free_port()
    with simulated_hall(tmp_path / "hall", clips_dir=clips_dir, http_port=http_port,
                        mqtt_port=mqtt_broker.port) as sim:
        kiosk = f"http://127.0.0.1:{http_port}"
        with EdgeThread(sim) as edge:
            hall = edge.daemon.hall
            assert hall is not None
            wait_until(lambda: site_state(env).get("status") == "online", timeout=20)
            status, booked = yss.book(today, slot, 1)
            assert status == 201, booked
            code = booked["booking"]["code"]
            assert code[:4] == f"{local:%m%d}"
            # Pushed at once; the site reports the version it holds.
            wait_until(lambda: hall.bookings_version() is not None, timeout=20)
            wait_until(lambda: site_state(env).get("bookings") == hall.bookings_version(),
                       timeout=20)
            post(kiosk, "/windows/1/sign_in", {"staff": "101"})
            walk_in = post(kiosk, "/tickets", {"service": "shebao"})["number"]
            ticket = post(kiosk, "/bookings/check_in", {"code": code})
            assert ticket["class"] == "appointment", ticket
            # Within the grace period the appointment goes before the walk-in taken first.
            assert post(kiosk, "/windows/1/next")["ticket"] == ticket["number"]
            assert post(kiosk, "/windows/1/next")["ticket"] == walk_in
            again = post(kiosk, "/bookings/check_in", {"code": code})
            assert (again["status"], again["error"]) == (409, "booking_used")
            assert again["message"].startswith(f"此预约已签到，号码{ticket['number']}")
            wrong = post(kiosk, "/bookings/check_in", {"code": f"{local:%m%d}999999"})
            assert (wrong["status"], wrong["error"]) == (404, "unknown_booking")
            assert wrong["message"].startswith("预约码无效")
            wait_until(lambda: counts(env, today).get("checked_in") == 1, timeout=20)
            listed = env.client.get(f"/api/v1/sites/{SITE}/bookings?day={today}",
                                    headers=env.headers(Role.VIEWER)).json()["bookings"]
            assert [(b["code"], b["status"], b["ticket"]) for b in listed] == [
                (code, "checked_in", ticket["number"])]
        # The site goes offline; a booking made meanwhile reaches it when it is back.
        wait_until(lambda: site_state(env).get("status") == "offline", timeout=20)
        status, second = yss.book(today, slot, 2)
        assert status == 201, second
        no_show = second["booking"]["code"]
        with EdgeThread(sim) as edge:
            hall = edge.daemon.hall
            assert hall is not None

            def holds() -> bool:
                try:
                    return hall.booking(no_show)[0] == "shebao"
                except Exception:
                    return False

            wait_until(holds, timeout=30)
    # Nobody came for the second: a no-show once the day is over.
    assert counts(env, today) == {"site": SITE, "day": today, "booked": 2, "checked_in": 1,
                                  "no_show": 0, "waiting": 1, "cancelled": 0}
    tomorrow = env.central.now() + dt.timedelta(days=1)
    bookings: Bookings = env.central.bookings
    assert bookings.counts(today, tomorrow, SITE) == [
        {"site": SITE, "day": today, "booked": 2, "checked_in": 1, "no_show": 1, "waiting": 0,
         "cancelled": 0}]
    assert {b.code: b.status for b in bookings.of_site(SITE, today, tomorrow)} == {
        code: "checked_in", no_show: "no_show"}


def test_a_change_reaches_the_hall_with_its_code_kept(
        env: RunningApp, tmp_path: Path, clips_dir: Path, mqtt_broker: MosquittoBroker) -> None:
    """Tomorrow's booking moved to today is checked in at the kiosk by its code (which
    still names tomorrow); today's moved to tomorrow leaves the hall; each step is in
    the audit log, the site's check-in too."""
    now = env.central.now()
    local = now.astimezone(dt.timezone(dt.timedelta(hours=8)))
    today = business_date(now)
    if local.hour < 3 or local >= local.replace(hour=22, minute=15):
        pytest.skip("the simulated hall's business day starts at 03:00; slots end by 23:59")
    slot = f"{local:%H:%M}-{local + dt.timedelta(minutes=30):%H:%M}"
    later_today = (f"{local + dt.timedelta(minutes=70):%H:%M}-"  # past the change deadline
                   f"{local + dt.timedelta(minutes=100):%H:%M}")
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    yss = platform(env)
    http_port = free_port()
    with simulated_hall(tmp_path / "hall", clips_dir=clips_dir, http_port=http_port,
                        mqtt_port=mqtt_broker.port) as sim, EdgeThread(sim) as edge:
        hall = edge.daemon.hall
        assert hall is not None
        kiosk = f"http://127.0.0.1:{http_port}"
        wait_until(lambda: site_state(env).get("status") == "online", timeout=20)
        status, later = yss.book(tomorrow, "10:00-10:30", 11)
        assert status == 201, later
        status, leaving = yss.book(today.isoformat(), later_today, 12)
        assert status == 201, leaving
        moved_in, moved_out = later["booking"]["code"], leaving["booking"]["code"]

        def held(code: str) -> str | None:
            try:
                return hall.booking(code)[0]
            except Exception:
                return None

        wait_until(lambda: held(moved_out) == "shebao", timeout=20)
        status, changed = yss.change(moved_in, day=today.isoformat(), slot=slot,
                                     service="huji")
        assert (status, changed["booking"]["code"], changed["booking"]["day"]) == (
            200, moved_in, today.isoformat())
        status, gone = yss.change(moved_out, day=tomorrow, slot="10:00-10:30")
        assert (status, gone["booking"]["day"]) == (200, tomorrow)
        wait_until(lambda: held(moved_in) == "huji" and held(moved_out) is None, timeout=30)
        ticket = post(kiosk, "/bookings/check_in", {"code": moved_in})
        assert (ticket["service"], ticket["class"]) == ("huji", "appointment"), ticket
        wait_until(lambda: env.central.bookings.get(moved_in, env.central.now()).status
                   == "checked_in", timeout=20)
        post(kiosk, "/windows/1/sign_in", {"staff": "101"})
        for _ in range(2):  # called, not there (过号); requeued once at most
            assert post(kiosk, "/windows/1/next")["ticket"] == ticket["number"]
            post(kiosk, "/windows/1/no_show")

        def audited() -> list[tuple[str, str]]:
            csv = env.client.get("/api/v1/audit.csv?action=booking.",
                                 headers=env.headers(Role.ADMIN)).text
            rows = [line.split(",")[1:8] for line in csv.splitlines()[1:]]
            return [(row[5], row[1]) for row in rows if row[6] == f"booking:{moved_in}"]

        wait_until(lambda: audited()[:1] == [("booking.no_show", SITE)], timeout=20)
    assert audited() == [("booking.no_show", SITE), ("booking.check_in", SITE),
                         ("booking.change", "test operator"),
                         ("booking.create", "test operator")]  # newest first


def test_the_booking_rules(env: RunningApp) -> None:
    yss = platform(env)
    now = env.central.now()
    tomorrow = (business_date(now) + dt.timedelta(days=1)).isoformat()
    assert yss.book(tomorrow, "09:00-09:30", 1)[0] == 201
    status, answer = yss.book(tomorrow, "14:00-14:30", 1)
    assert (status, answer["detail"]) == (409, f"this person has a booking on {tomorrow} "
                                               "already (one a day)")
    assert yss.book(tomorrow, "09:00-09:30", 2)[0] == 201
    status, answer = yss.book(tomorrow, "09:00-09:30", 3)  # the quota of the slot is 2
    assert status == 409
    assert answer["detail"].startswith("slot full")
    assert yss.book(tomorrow, "09:00-09:30", 3, service="huji")[0] == 201  # its own quota
    far = (business_date(now) + dt.timedelta(days=8)).isoformat()
    assert yss.book(far, "09:00-09:30", 4)[1]["detail"] == "day: bookings open 7 days ahead"
    yesterday = (business_date(now) - dt.timedelta(days=1)).isoformat()
    assert yss.book(yesterday, "09:00-09:30", 4)[0] == 422
    assert yss.book(tomorrow, "09:30-09:00", 4)[0] == 422
    assert yss.book(tomorrow, "9:00-09:30x", 4)[0] == 422
    assert yss.book(tomorrow, "09:00-09:30", 4, site="nowhere")[0] == 404
    assert yss.book(tomorrow, "09:00-09:30", 4, site="zs-city", service="zonghe")[0] == 201
    status, answer = yss.book(tomorrow, "10:00-10:30", 5, site="zs-city", service="nothing")
    assert (status, answer["detail"]) == (422, "service: zs-city has no service 'nothing'")
    bad_check = id_number(6)[:17] + ("0" if id_number(6)[17] != "0" else "1")
    answer = env.client.post("/api/v1/bookings", headers=yss.headers, json={
        "site": SITE, "service": "shebao", "day": tomorrow, "slot": "10:00-10:30",
        "id_number": bad_check})
    assert (answer.status_code, answer.json()["detail"]) == (
        422, "id_number: the check digit does not match")
    assert env.client.post("/api/v1/bookings", headers=env.headers(Role.VIEWER), json={
        "site": SITE, "service": "shebao", "day": tomorrow, "slot": "10:00-10:30",
        "id_number": id_number(7)}).status_code == 403
    # Cancelling: the slot is free again; once more changes nothing; unknown is 404.
    code = yss.book(tomorrow, "11:00-11:30", 8)[1]["booking"]["code"]
    status, answer = yss.cancel(code)
    assert (status, answer["booking"]["status"]) == (200, "cancelled")
    assert yss.cancel(code)[0] == 200
    assert yss.cancel("0101000000")[0] == 404
    assert yss.book(tomorrow, "11:00-11:30", 8)[0] == 201  # one a day counts live ones
    # The ID number is kept nowhere, only its salted hash.
    with env.central.sessions() as session:
        people = {b.person for b in session.query(Booking)}
    assert id_number(1) not in people
    assert person_hash(SALT, id_number(1)) in people
    # The cancel deadline: an hour before the slot starts.
    local = now.astimezone(dt.timezone(dt.timedelta(hours=8)))
    if dt.time(0, 5) < local.time() < dt.time(23, 0):
        today = business_date(now).isoformat()
        soon = f"{local:%H:%M}-{local + dt.timedelta(minutes=50):%H:%M}"
        late = yss.book(today, soon, 9)[1]["booking"]["code"]
        status, answer = yss.cancel(late)
        assert status == 409
        assert answer["detail"].startswith(f"booking {late}: cancelling closed at")
    stats = env.client.get(f"/api/v1/bookings/stats?day={tomorrow}",
                           headers=env.headers(Role.VIEWER)).json()["sites"]
    assert {s["site"]: (s["booked"], s["cancelled"]) for s in stats} == {
        SITE: (4, 1), "zs-city": (1, 0)}
    assert env.client.get("/api/v1/bookings/stats?day=2026-13-01",
                          headers=env.headers(Role.VIEWER)).status_code == 422
    # A platform's token of one town books, reads and counts that town's sites only.
    _, secret = env.central.tokens.create(Role.OPERATOR, "town platform", towns=["模拟镇"])
    town = FakeBookingPlatform(env.client, secret)
    status, answer = town.book(tomorrow, "15:00-15:30", 10, site="zs-city", service="zonghe")
    assert status == 403
    assert answer["detail"].startswith("不在您的管辖范围")
    assert town.book(tomorrow, "15:00-15:30", 10)[0] == 201
    city_code = next(b["code"] for b in env.client.get(
        f"/api/v1/sites/zs-city/bookings?day={tomorrow}",
        headers=env.headers(Role.VIEWER)).json()["bookings"])
    assert town.cancel(city_code)[0] == 403
    assert env.client.get(f"/api/v1/bookings/{city_code}", headers=town.headers
                          ).status_code == 403
    assert [s["site"] for s in env.client.get(f"/api/v1/bookings/stats?day={tomorrow}",
                                              headers=town.headers).json()["sites"]] == [SITE]


def test_without_a_salt_no_booking_is_taken(env: RunningApp) -> None:
    bookings = Bookings(env.central.sessions, CentralConfig())
    with pytest.raises(Unavailable, match="booking_person_salt"):
        bookings.book(SITE, "shebao", "2026-12-08", "09:00-09:30", id_number(1),
                      reference=None, actor=Actor("t", "test"), now=env.central.now())
    assert check_id_number("11010519491231002x") == "11010519491231002X"
    with pytest.raises(InvalidRequest):
        check_id_number("1101051949123100")
