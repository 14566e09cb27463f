"""好差评 at the windows: 办件 from the business system, one rating each (一次一评), the pad's
offer and its end (rating.missed), 差评 follow-up reasons, the hook and the window API."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.clock import ManualClock
from edge.config import EdgeConfig, load_config, parse_config
from edge.errors import CommandRejected, ConfigInvalid
from edge.hall import RATING_GRACE_S, Hall, open_hall
from edge.http_api import HttpApi
from edge.kiosk import TicketDesk
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import BASE_SERVICES, site_toml
from tests.edge.test_hall import OPENING, reopen
from tests.edge.test_http_api import PaperTray, request

SERVICES = BASE_SERVICES.replace(
    'name_en = "Social insurance"',
    'name_en = "Social insurance"\nitem_code = "11442000MB2C92107F4442115001000"\n'
    'department = "11442000MB2C92107F"\ndepartment_name = "中山市社会保险基金管理局"')
RATINGS = """
[ratings]
pad_seconds = 30
reason_seconds = 60
[[ratings.reasons]]
code = "attitude"
label = "服务态度不好"
[[ratings.reasons]]
code = "slow"
label = "等候时间长"
[[ratings.reasons]]
code = "not_told"
label = "未一次性告知"
"""
CASE_TOKEN = "business-system-token-01"


@pytest.fixture
def config(tmp_path: Path) -> EdgeConfig:
    return load_config(site_toml(tmp_path, services=SERVICES, extra=RATINGS))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(OPENING)


@pytest.fixture
def hall(config: EdgeConfig, clock: ManualClock) -> Iterator[Hall]:
    hall = open_hall(config, clock)
    hall.sign_in(1, "zhang01")
    yield hall
    hall.journal.close()


def bodies(hall: Hall, after: int) -> list[mm.EventBody]:
    return [e.body for e in hall.journal.events(after)]


def serve(hall: Hall, clock: ManualClock, service: str = "shebao") -> str:
    """Issue a ticket and call it at window 1; its number."""
    hall.issue(service)
    called = hall.call_next(1)
    assert called is not None
    clock.advance(60)
    return called.number


def test_a_rating_after_next_is_bound_to_the_ticket_just_finished(hall: Hall,
                                                                  clock: ManualClock) -> None:
    """下一位 finishes the ticket and calls the next in one go: the citizen who just left
    still rates what was finished (the call used to drop the pad's offer)."""
    hall.issue("shebao")
    serve(hall, clock)
    hall.call_next(1)  # finishes A001 and calls A002
    clock.advance(5)
    rating = hall.rate(1, 5)
    assert rating.body == mm.RatingGiven(ticket="A001", window=1, staff="zhang01", value=5)


def test_the_offer_ends_unrated_when_its_time_runs_out(hall: Hall, clock: ManualClock) -> None:
    number = serve(hall, clock)
    hall.finish(1)
    seq = hall.journal.last_seq
    clock.advance(30 + RATING_GRACE_S)
    assert hall.tick() == []  # the last moment still counts
    clock.advance(1)
    with pytest.raises(CommandRejected, match="nothing to rate"):
        hall.rate(1, 4)
    hall.tick()
    assert bodies(hall, seq) == [mm.RatingMissed(ticket=number, window=1, staff="zhang01",
                                                 case=None)]
    assert hall.pending_rating(1) is None
    assert hall.tick() == []  # once


def test_a_new_finish_replaces_an_unrated_offer(hall: Hall, clock: ManualClock) -> None:
    hall.issue("shebao")
    serve(hall, clock)
    seq = hall.journal.last_seq
    hall.call_next(1)  # finishes A001 (offered), calls A002
    clock.advance(20)
    hall.finish(1)  # A002: A001's offer ends unrated
    kinds = [type(b).__name__ for b in bodies(hall, seq)]
    assert kinds == ["TicketDone", "TicketCalled", "RatingMissed", "TicketDone"]
    assert hall.rate(1, 4).body == mm.RatingGiven(ticket="A002", window=1, staff="zhang01",
                                                  value=4)


def test_an_offer_open_at_the_day_reset_ends_unrated(hall: Hall, clock: ManualClock) -> None:
    number = serve(hall, clock)
    hall.finish(1)
    seq = hall.journal.last_seq
    clock.set(OPENING + 19 * 3_600_000)  # 04:00 next day: past the 03:00 reset
    hall.tick()
    missed, reset = bodies(hall, seq)
    assert missed == mm.RatingMissed(ticket=number, window=1, staff="zhang01", case=None)
    assert isinstance(reset, mm.DayReset)


def test_the_offer_outlives_the_sign_out(hall: Hall, clock: ManualClock) -> None:
    serve(hall, clock)
    hall.finish(1)
    hall.sign_out(1)
    assert hall.rate(1, 5).body == mm.RatingGiven(ticket="A001", window=1, staff="zhang01",
                                                  value=5)


def test_a_case_from_the_hook_is_rated_once_with_its_item(hall: Hall, clock: ManualClock) -> None:
    number = serve(hall, clock)
    seq = hall.journal.last_seq
    opened = hall.open_case(1, "442000-2026-000123", source="hook",
                            item_code="11442000007502434M4442111001000", item_name="居民身份证换领",
                            department="11442000007502434M", department_name="中山市公安局")
    assert opened is not None
    assert hall.open_case(1, "442000-2026-000123", source="hook") is None  # already open
    closed = hall.close_case(1, "442000-2026-000123")
    assert closed is not None
    assert hall.pending_rating(1) is not None
    hall.finish(1)  # the ticket's 办件 was offered: its finish offers nothing more
    case = mm.CaseInfo(no="442000-2026-000123", item_code="11442000007502434M4442111001000",
                       item_name="居民身份证换领", department="11442000007502434M",
                       department_name="中山市公安局", source="hook")
    assert bodies(hall, seq) == [
        mm.CaseOpened(window=1, ticket=number, case=case),
        mm.CaseClosed(window=1, ticket=number, case_no="442000-2026-000123"),
        mm.TicketDone(ticket=number, window=1, served_s=60),
    ]
    rating = hall.rate(1, 5)
    assert rating.body == mm.RatingGiven(ticket=number, window=1, staff="zhang01", value=5,
                                         case=case)
    assert hall.close_case(1, "442000-2026-000123") is None  # the hook says it again: nothing
    # Opened again and closed again the same day: 一次一评, no second offer.
    hall.issue("shebao")
    hall.call_next(1)
    hall.open_case(1, "442000-2026-000123", source="hook")
    hall.close_case(1)
    assert hall.pending_rating(1) is None


def test_a_case_typed_on_the_keypad_takes_its_item_from_the_service(
        hall: Hall, clock: ManualClock) -> None:
    number = serve(hall, clock)
    hall.open_case(1, "2026000456", source="keypad")
    seq = hall.journal.last_seq
    hall.finish(1)  # closes the 办件 with the ticket
    case = mm.CaseInfo(no="2026000456", item_code="11442000MB2C92107F4442115001000",
                       item_name="社保医保", department="11442000MB2C92107F",
                       department_name="中山市社会保险基金管理局", source="keypad")
    assert bodies(hall, seq) == [
        mm.CaseClosed(window=1, ticket=number, case_no="2026000456"),
        mm.TicketDone(ticket=number, window=1, served_s=60),
    ]
    assert hall.rate(1, 3).body == mm.RatingGiven(ticket=number, window=1, staff="zhang01",
                                                  value=3, case=case)


def test_two_cases_on_one_ticket_are_each_offered(hall: Hall, clock: ManualClock) -> None:
    serve(hall, clock)
    hall.open_case(1, "C-1", source="hook")
    hall.close_case(1)
    hall.rate(1, 5)
    seq = hall.journal.last_seq
    hall.open_case(1, "C-2", source="hook")
    hall.open_case(1, "C-3", source="hook")  # C-2 closed first, then left unrated by C-3
    hall.finish(1)
    kinds = [(type(b).__name__, getattr(b, "case_no", None)) for b in bodies(hall, seq)]
    assert kinds == [("CaseOpened", None), ("CaseClosed", "C-2"), ("CaseOpened", None),
                     ("RatingMissed", None), ("CaseClosed", "C-3"), ("TicketDone", None)]
    offer = hall.pending_rating(1)
    assert offer is not None
    assert offer.case is not None
    assert offer.case.no == "C-3"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda h: h.open_case(1, "办件1", source="hook"), "bad 办件编号"),
        (lambda h: h.open_case(1, None, source="keypad"), "bad 办件编号"),
        (lambda h: h.open_case(1, "C-1", source="hook", item_code="有 空格"), "bad 办件"),
        (lambda h: h.open_case(9, "C-1", source="hook"), "unknown window"),
        (lambda h: h.close_case(1), "no open 办件"),
        (lambda h: h.close_case(1, "C-9"), "no open 办件"),
        (lambda h: h.rate_reason(1, 1), "no 差评"),
    ],
)
def test_bad_case_commands_are_refused_and_journal_nothing(hall: Hall, call: object,
                                                            message: str) -> None:
    before = hall.journal.last_seq
    with pytest.raises(CommandRejected, match=message):
        call(hall)  # type: ignore[operator]
    assert hall.journal.last_seq == before


def test_a_bad_rating_takes_the_pads_follow_up_reasons(hall: Hall, clock: ManualClock) -> None:
    number = serve(hall, clock)
    hall.open_case(1, "C-7", source="hook")
    hall.finish(1)
    hall.rate(1, 2)
    seq = hall.journal.last_seq
    assert hall.rate_reason(1, 2) is not None
    assert hall.rate_reason(1, 2) is None  # chosen already
    with pytest.raises(CommandRejected, match=r"not in ratings\.reasons") as refused:
        hall.rate_reason(1, 4)
    assert refused.value.status == 422
    clock.advance(59)
    hall.rate_reason(1, 1)
    assert bodies(hall, seq) == [
        mm.RatingReason(ticket=number, window=1, case_no="C-7", reason="slow"),
        mm.RatingReason(ticket=number, window=1, case_no="C-7", reason="attitude"),
    ]
    clock.advance(2)
    with pytest.raises(CommandRejected, match="no 差评"):
        hall.rate_reason(1, 3)


def test_a_good_rating_takes_no_reasons(hall: Hall, clock: ManualClock) -> None:
    serve(hall, clock)
    hall.finish(1)
    with pytest.raises(CommandRejected, match="不满意 or 非常不满意 only"):
        hall.rate(1, 4, reasons=("slow",))
    with pytest.raises(CommandRejected, match="unknown reason"):
        hall.rate(1, 1, reasons=("rude",))
    hall.rate(1, 5)
    with pytest.raises(CommandRejected, match="no 差评"):
        hall.rate_reason(1, 1)


def test_a_replayed_day_keeps_offers_cases_and_reasons(hall: Hall, clock: ManualClock) -> None:
    """After a crash the hall folds the journal again: the same offer, 办件 and reasons."""
    serve(hall, clock)
    hall.open_case(1, "C-1", source="hook")
    hall.close_case(1)
    hall.open_case(1, "C-2", source="hook")
    again = reopen(hall)
    try:
        offer = again.pending_rating(1)
        assert offer is not None
        assert offer.case is not None
        assert offer.case.no == "C-1"
        assert again.case_at(1) is not None
        rating = again.rate(1, 1)
        assert isinstance(rating.body, mm.RatingGiven)
        assert rating.body.case == offer.case
        again.rate_reason(1, 3)
        again = reopen(again)
        assert again.rate_reason(1, 3) is None  # chosen before the restart
        with pytest.raises(CommandRejected, match="nothing to rate"):
            again.rate(1, 5)
    finally:
        hall.journal = again.journal  # the fixture closes the one in use


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[http]\ncase_hook = true\n', "http.case_token: required with case_hook"),
        ("[ratings]\npad_seconds = 300\n", "ratings.pad_seconds: must be 5..255"),
        ('[[ratings.reasons]]\ncode = "a"\nlabel = "x"\n[[ratings.reasons]]\ncode = "a"\n'
         'label = "y"\n', "ratings.reasons[1].code: duplicate reason"),
        ("".join(f'[[ratings.reasons]]\ncode = "r{n}"\nlabel = "原因{n}"\n' for n in range(16)),
         "ratings.reasons: at most 15 reasons"),
    ],
)
def test_bad_rating_settings_are_refused(tmp_path: Path, extra: str, message: str) -> None:
    text = site_toml(tmp_path, extra=extra).read_text(encoding="utf-8")
    with pytest.raises(ConfigInvalid, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(text, base_dir=tmp_path)


def test_without_a_reasons_table_the_pad_offers_the_defaults(tmp_path: Path) -> None:
    config = load_config(site_toml(tmp_path))
    assert config.ratings.reason_code(1) == "attitude"
    assert config.ratings.pad_seconds == 30


# --------------------------------------------------------------------------- over HTTP


def test_the_business_systems_hook_and_a_software_pad(config: EdgeConfig,
                                                      clock: ManualClock) -> None:
    hall = open_hall(config, clock)

    async def main() -> None:
        api = HttpApi(hall, TicketDesk(hall, PaperTray(hall)), status=hall.snapshot, port=0,
                      window_api=True, case_token=CASE_TOKEN)
        server = asyncio.create_task(api.run())
        await api.listening.wait()
        auth = f"authorization: Bearer {CASE_TOKEN}\r\n"
        try:
            hall.sign_in(1, "zhang01")
            hall.issue("shebao")
            hall.call_next(1)
            opened = ('{"window": 1, "case_no": "442000-2026-000123", '
                      '"item_name": "居民身份证换领"}').encode()
            assert (await request(api.port, "POST", "/cases/open", opened))[0] == 401
            status, answer = await request(api.port, "POST", "/cases/open", opened, auth)
            assert status == 200
            assert answer["opened"] is True
            assert answer["ticket"] == "A001"
            assert answer["item_code"] == "11442000MB2C92107F4442115001000"  # the service's
            status, answer = await request(api.port, "POST", "/cases/close",
                                           b'{"window": 1, "case_no": "C-other"}', auth)
            assert (status, answer["error"]) == (409, "case_mismatch")
            status, answer = await request(api.port, "POST", "/cases/close",
                                           b'{"window": 1, "case_no": "442000-2026-000123"}',
                                           auth)
            assert (status, answer["closed"], answer["rating_offered"]) == (200, True, True)
            status, answer = await request(api.port, "POST", "/cases/close",
                                           b'{"window": 1, "case_no": "442000-2026-000123"}',
                                           auth)
            assert (status, answer["closed"], answer["rating_offered"]) == (200, False, False)
            status, answer = await request(api.port, "POST", "/cases/open",
                                           b'{"window": 1, "case_no": "x", "extra": 1}', auth)
            assert (status, answer["error"]) == (422, "bad_field")

            status, reasons = await request(api.port, "GET", "/ratings/reasons")
            assert reasons["reasons"][1] == {"number": 2, "code": "slow", "label": "等候时间长"}
            status, answer = await request(api.port, "POST", "/windows/1/rate",
                                           b'{"value": 1, "reasons": ["slow", "attitude"]}')
            assert status == 200
            rating = list(hall.journal.events(answer["seq"] - 1))[-1].body
            assert isinstance(rating, mm.RatingGiven)
            assert (rating.channel, rating.reasons) == ("tablet", ["slow", "attitude"])
            assert rating.case is not None
            assert rating.case.item_name == "居民身份证换领"
            status, answer = await request(api.port, "POST", "/windows/1/rate",
                                           b'{"value": 5, "channel": "fax"}')
            assert (status, answer["error"]) == (422, "bad_field")
        finally:
            server.cancel()
            with pytest.raises(asyncio.CancelledError):
                await server

    try:
        asyncio.run(main())
    finally:
        hall.journal.close()


def test_the_hook_is_off_without_its_token(config: EdgeConfig, clock: ManualClock) -> None:
    hall = open_hall(config, clock)

    async def main() -> None:
        api = HttpApi(hall, TicketDesk(hall, PaperTray(hall)), status=hall.snapshot, port=0)
        server = asyncio.create_task(api.run())
        await api.listening.wait()
        try:
            status, _ = await request(api.port, "POST", "/cases/open", b'{"window": 1}')
            assert status == 404
        finally:
            server.cancel()
            with pytest.raises(asyncio.CancelledError):
                await server

    try:
        asyncio.run(main())
    finally:
        hall.journal.close()
