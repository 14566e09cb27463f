"""The ID card kiosk policy: 老年人优先 by age, one ticket per card per service per day,
salted hashes only, masked names when the hall calls by name."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from edge.devices.base import IdCardRead
from edge.id_card_kiosk import (
    CardLedger,
    Grant,
    IdCardKiosk,
    KioskPolicy,
    age_on,
    masked_name,
    spoken_name,
)
from fastpath.types import TicketClass
from firmware_protocols.id_card import Gender, IdCardText, id_number_problem

TODAY = date(2026, 11, 23)
DAY = "2026-11-23"
ELDER = IdCardText("张秀兰", Gender.FEMALE, "01", date(1958, 3, 15), "广东省中山市三乡镇",
                   "442000195803151248", "中山市公安局", date(2016, 5, 20), None)
YOUNG = IdCardText("欧阳明", Gender.MALE, "01", date(1990, 7, 4), "广东省中山市石岐区",
                   "442000199007044511", "中山市公安局", date(2019, 1, 2), date(2039, 1, 2))


def kiosk(tmp_path: Path, ledger: str = "idcards.sqlite", **policy: object) -> IdCardKiosk:
    values: dict[str, object] = {"service_id": "shebao"} | policy
    return IdCardKiosk(KioskPolicy(**values), CardLedger(tmp_path / ledger))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("birth", "day", "age"),
    [
        (date(1966, 11, 23), TODAY, 60),  # the birthday itself
        (date(1966, 11, 24), TODAY, 59),
        (date(1964, 2, 29), date(2024, 2, 28), 59),  # leap-day birthdays: not yet
        (date(1964, 2, 29), date(2024, 2, 29), 60),
        (date(1964, 2, 29), date(2025, 3, 1), 61),
    ],
)
def test_age_in_whole_years(birth: date, day: date, age: int) -> None:
    assert age_on(birth, day) == age


def test_from_the_configured_age_the_ticket_is_a_priority_ticket(tmp_path: Path) -> None:
    hall = kiosk(tmp_path)
    elder = hall.decide(ELDER, DAY, TODAY)
    young = hall.decide(YOUNG, DAY, TODAY)
    assert isinstance(elder, Grant)
    assert elder.klass is TicketClass.PRIORITY  # 68: 老年人优先
    assert isinstance(young, Grant)
    assert young.klass is TicketClass.NORMAL
    turning_60 = replace(YOUNG, id_number="442000196611230026", birth=date(1966, 11, 23))
    assert id_number_problem(turning_60.id_number) is None
    decision = hall.decide(turning_60, DAY, TODAY)
    assert isinstance(decision, Grant)
    assert decision.klass is TicketClass.PRIORITY  # 60 today
    older_only = kiosk(tmp_path, "b.sqlite", elder_age=70)
    decision = older_only.decide(ELDER, DAY, TODAY)
    assert isinstance(decision, Grant)
    assert decision.klass is TicketClass.NORMAL
    never = kiosk(tmp_path, "c.sqlite", elder_age=0)
    decision = never.decide(ELDER, DAY, TODAY)
    assert isinstance(decision, Grant)
    assert decision.klass is TicketClass.NORMAL


def take(hall: IdCardKiosk, card: IdCardText, day: str = DAY, today: date = TODAY
         ) -> tuple[str | None, list[str], list[tuple[str, TicketClass]]]:
    issued: list[tuple[str, TicketClass]] = []
    refused: list[str] = []

    async def issue(service: str, klass: TicketClass) -> str:
        issued.append((service, klass))
        return f"A{len(issued):03d}"

    number = asyncio.run(hall.take_ticket(IdCardRead("id_card", card), day, today, issue,
                                          refused.append))
    return number, refused, issued


def test_one_ticket_per_card_per_service_per_day(tmp_path: Path) -> None:
    hall = kiosk(tmp_path)
    number, refused, issued = take(hall, ELDER)
    assert number == "A001"
    assert issued == [("shebao", TicketClass.PRIORITY)]
    again, refused, issued = take(hall, ELDER)
    assert again is None
    assert issued == []
    assert refused == [
        "今日已用此身份证取号1次，每人每项业务限1次 already taken today with this ID card"
    ]
    other, refused, _ = take(hall, YOUNG)  # another person is not affected
    assert other == "A001"
    assert refused == []
    tomorrow, refused, _ = take(hall, ELDER, "2026-11-24", date(2026, 11, 24))
    assert tomorrow == "A001"
    assert refused == []


def test_the_limit_is_per_service_and_configurable(tmp_path: Path) -> None:
    ledger = CardLedger(tmp_path / "shared.sqlite")
    shebao = IdCardKiosk(KioskPolicy("shebao", tickets_per_day=2), ledger)
    huji = IdCardKiosk(KioskPolicy("huji"), ledger)
    assert take(shebao, YOUNG)[0] == "A001"
    assert take(shebao, YOUNG)[0] == "A001"
    assert take(shebao, YOUNG)[0] is None  # the third
    assert take(huji, YOUNG)[0] == "A001"  # another service: its own count
    unlimited = IdCardKiosk(KioskPolicy("shebao", tickets_per_day=0), ledger)
    assert take(unlimited, YOUNG)[0] == "A001"


def test_the_count_survives_a_restart(tmp_path: Path) -> None:
    assert take(kiosk(tmp_path), ELDER)[0] == "A001"
    restarted = kiosk(tmp_path)  # the daemon came back: same ledger file
    assert take(restarted, ELDER)[0] is None


def test_a_refused_issue_is_not_counted(tmp_path: Path) -> None:
    """The hall refused the ticket (closed, say): the card may try again."""
    hall = kiosk(tmp_path)

    async def closed(service: str, klass: TicketClass) -> str:
        raise RuntimeError("停止取号")

    with pytest.raises(RuntimeError):
        asyncio.run(hall.take_ticket(IdCardRead("id_card", ELDER), DAY, TODAY, closed,
                                     lambda _: None))
    assert take(hall, ELDER)[0] == "A001"


def test_a_card_put_down_twice_at_once_gets_one_ticket(tmp_path: Path) -> None:
    hall = kiosk(tmp_path)
    refused: list[str] = []
    issued: list[str] = []

    async def slow_issue(service: str, klass: TicketClass) -> str:
        await asyncio.sleep(0.05)  # predicting and printing take a while
        issued.append(service)
        return f"A{len(issued):03d}"

    async def main() -> list[str | None]:
        read = IdCardRead("id_card", YOUNG)
        return list(await asyncio.gather(
            hall.take_ticket(read, DAY, TODAY, slow_issue, refused.append),
            hall.take_ticket(read, DAY, TODAY, slow_issue, refused.append),
        ))

    assert sorted(asyncio.run(main()), key=str) == ["A001", None]
    assert len(refused) == 1


def test_only_salted_hashes_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "idcards.sqlite"
    hall = IdCardKiosk(KioskPolicy("shebao"), CardLedger(path))
    take(hall, ELDER)
    take(hall, YOUNG)
    hall.ledger.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for card in (ELDER, YOUNG):
        assert card.id_number.encode() not in stored
        assert card.id_number[-6:].encode() not in stored
        assert card.name.encode() not in stored
    rows = CardLedger(path).rows()
    assert [(day, service, count) for day, service, _, count in rows] == [
        (DAY, "shebao", 1), (DAY, "shebao", 1)]
    assert all(len(digest) == 64 for _, _, digest, _ in rows)


def test_the_salt_is_drawn_per_day_so_days_cannot_be_linked(tmp_path: Path) -> None:
    ledger = CardLedger(tmp_path / "idcards.sqlite")
    today = ledger.digest(DAY, ELDER.id_number)
    assert ledger.digest(DAY, ELDER.id_number) == today  # stable within the day
    tomorrow = ledger.digest("2026-11-24", ELDER.id_number)
    assert tomorrow != today
    other_site = CardLedger(tmp_path / "other.sqlite").digest(DAY, ELDER.id_number)
    assert other_site != today  # nor across halls


@pytest.mark.parametrize(
    ("name", "gender", "masked", "spoken"),
    [
        ("张秀兰", Gender.FEMALE, "张*女士", "张女士"),
        ("李明", Gender.MALE, "李*先生", "李先生"),
        ("欧阳娜娜", Gender.FEMALE, "欧阳*女士", "欧阳女士"),
        ("司马", Gender.MALE, "司*先生", "司先生"),  # two characters: 司 and 马, not a 复姓
        ("王五", Gender.UNKNOWN, "王*", "王"),
    ],
)
def test_masked_names(name: str, gender: Gender, masked: str, spoken: str) -> None:
    assert masked_name(name, gender) == masked
    assert spoken_name(name, gender) == spoken


def test_call_by_name_only_when_the_hall_enables_it(tmp_path: Path) -> None:
    plain = kiosk(tmp_path)
    number, _, _ = take(plain, ELDER)
    assert number is not None
    assert plain.called_as(number) == number
    assert plain.spoken_call(number, 3) is None
    by_name = kiosk(tmp_path, "n.sqlite", call_by_name=True)
    number, _, _ = take(by_name, ELDER)
    assert number is not None
    assert by_name.called_as(number) == f"张*女士 {number}"
    assert by_name.spoken_call(number, 3) == f"请张女士，{number}号，到3号窗口办理"
    assert by_name.called_as("B001") == "B001"  # a ticket from a button: no name
