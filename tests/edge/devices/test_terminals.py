"""The window-terminal bus driver against the real simulated banks over ptys.

The Modbus bank is a real pymodbus RTU server; the vendor bank speaks the
vendor frame. Every behavioural test runs against both.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from edge.devices import terminals as terminals_module
from edge.devices.base import (
    DeviceConfigError,
    DeviceInput,
    DeviceStatusChanged,
    HealthState,
    InputMark,
    KeyPress,
    Rating,
    RatingReason,
    WindowKey,
)
from edge.devices.terminals import (
    BusKind,
    KeypadEntry,
    NoAnswer,
    TerminalDriver,
    TerminalSettings,
)
from firmware_protocols.errors import LocalProtocolError
from firmware_protocols.simulators.modbus_bank import ModbusTerminalBank
from firmware_protocols.simulators.serial_link import PtyLink
from firmware_protocols.simulators.terminal_bank import TerminalBank
from firmware_protocols.simulators.vendor_bank import VendorTerminalBank
from firmware_protocols.terminal_events import Key
from tests.edge.devices.waiting import RecordingInputs, until

WINDOWS = {1: 11, 2: 12, 3: 13}  # window -> bus address


# --- keypad entry (pure) -------------------------------------------------------------------------
D = {n: Key(Key.DIGIT_0 + n) for n in range(10)}


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ([Key.NEXT], [KeyPress(5, WindowKey.NEXT)]),
        ([D[4], D[2], Key.SIGN_IN], [KeyPress(5, WindowKey.SIGN_IN, staff_id="42")]),
        (
            [Key.SIGN_IN, D[0], D[7], Key.CONFIRM],
            [KeyPress(5, WindowKey.SIGN_IN, staff_id="07")],
        ),
        ([Key.TRANSFER, D[3], Key.CONFIRM], [KeyPress(5, WindowKey.TRANSFER, to_service="3")]),
        ([D[3], Key.TRANSFER], [KeyPress(5, WindowKey.TRANSFER, to_service="3")]),
        ([Key.TRANSFER, Key.CONFIRM], [KeyPress(5, WindowKey.TRANSFER)]),
        ([D[9], Key.CLEAR, Key.SIGN_IN, D[1], Key.CONFIRM], [KeyPress(5, WindowKey.SIGN_IN, "1")]),
        ([Key.SIGN_IN, D[1], Key.CLEAR, Key.CONFIRM], []),
        ([D[5], Key.NEXT], [KeyPress(5, WindowKey.NEXT)]),  # digits before NEXT mean nothing
        ([Key.TRANSFER, D[2], Key.FINISH], [KeyPress(5, WindowKey.FINISH)]),  # abandoned
        ([Key.CONFIRM, D[1]], []),
        (
            [Key.FINISH, Key.HELP_ACK, Key.PAUSE, Key.RESUME, Key.NO_SHOW, Key.RECALL],
            [
                KeyPress(5, k)
                for k in (
                    WindowKey.FINISH,
                    WindowKey.HELP_ACK,
                    WindowKey.PAUSE,
                    WindowKey.RESUME,
                    WindowKey.NO_SHOW,
                    WindowKey.RECALL,
                )
            ],
        ),
    ],
)
def test_keypad_entry(keys: list[Key], expected: list[KeyPress]) -> None:
    entry = KeypadEntry(5)
    got = [press for key in keys if (press := entry.key(key)) is not None]
    assert got == expected


def test_keypad_entry_caps_the_number_of_digits() -> None:
    entry = KeypadEntry(1)
    for _ in range(20):
        entry.key(Key.DIGIT_1)
    assert entry.key(Key.SIGN_IN) == KeyPress(1, WindowKey.SIGN_IN, staff_id="1" * 8)


def test_keypad_entry_takes_a_case_number_of_up_to_32_digits() -> None:
    """办件编号 from the business system, typed before 办件 (or after it, then 确认)."""
    entry = KeypadEntry(2)
    for digit in "4420002026000123":
        entry.key(D[int(digit)])
    assert entry.key(Key.CASE) == KeyPress(2, WindowKey.CASE, case_no="4420002026000123")
    entry.key(Key.CASE)
    for _ in range(40):
        entry.key(Key.DIGIT_9)
    assert entry.key(Key.CONFIRM) == KeyPress(2, WindowKey.CASE, case_no="9" * 32)


# --- against the banks ---------------------------------------------------------------------------
@pytest.fixture(params=["modbus", "vendor"])
def bus_kind(request: pytest.FixtureRequest) -> BusKind:
    kind: BusKind = request.param
    return kind


def make_bank(kind: BusKind, link: PtyLink, **kwargs: object) -> TerminalBank:  # type: ignore[type-arg]
    bank_class = ModbusTerminalBank if kind == "modbus" else VendorTerminalBank
    return bank_class(link, WINDOWS.values(), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def bank(bus_kind: BusKind) -> Iterator[TerminalBank]:  # type: ignore[type-arg]
    with PtyLink() as link, make_bank(bus_kind, link) as simulated:
        yield simulated


def settings(kind: BusKind, port: str, **overrides: float) -> TerminalSettings:
    values = {
        "reply_timeout_s": 0.1,
        "poll_interval_s": 0.02,
        "dead_after": 2,
        "dead_poll_interval_s": 0.5,
        "reopen_interval_s": 0.1,
    } | overrides
    return TerminalSettings(port, WINDOWS, bus=kind, **values)  # type: ignore[arg-type]

class Inputs(RecordingInputs):
    """Also what the terminals put in, by kind."""

    def presses(self) -> list[KeyPress | Rating]:
        return [i for i in self.received if isinstance(i, KeyPress | Rating)]

    def reasons(self) -> list[RatingReason]:
        return [i for i in self.received if isinstance(i, RatingReason)]

    def health(self) -> list[HealthState]:
        return [i.health.state for i in self.received if isinstance(i, DeviceStatusChanged)]


def run(
    kind: BusKind,
    bank: TerminalBank,  # type: ignore[type-arg]
    scenario: Callable[[TerminalDriver, Inputs], object],
    *,
    marks: list[InputMark] | None = None,
    confirm: bool = False,
    **overrides: float,
) -> None:
    """Run ``scenario`` against a driver on ``bank``. With ``marks`` the driver starts as
    the daemon starts it after a restart (the journaled marks restored); with
    ``confirm`` each input is confirmed as handled as soon as it is handed on."""

    async def main() -> None:
        inputs = Inputs()
        driver = TerminalDriver(settings(kind, bank.link.port_name, **overrides), inputs)
        if marks is not None:
            driver.restore_inputs(marks)
        loop = asyncio.get_running_loop()

        def handled(item: DeviceInput) -> None:
            if isinstance(item, KeyPress | Rating) and item.mark is not None:
                loop.call_soon(driver.input_handled, item.mark)

        if confirm:
            inputs.on_put = handled
        task = asyncio.create_task(driver.run())
        try:
            await until(lambda: driver.health().state is HealthState.OK)
            result = scenario(driver, inputs)
            assert asyncio.iscoroutine(result)
            await result
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_presses_and_ratings_arrive_once_in_order(bus_kind: BusKind, bank: TerminalBank) -> None:  # type: ignore[type-arg]
    async def scenario(driver: TerminalDriver, inputs: Inputs) -> None:
        bank.press(11, Key.DIGIT_7)
        bank.press(11, Key.SIGN_IN)
        bank.press(12, Key.NEXT)
        bank.press(11, Key.NEXT)
        bank.rate(13, 5)
        await until(lambda: len(inputs.presses()) == 4)
        await asyncio.sleep(0.2)  # several more polls: nothing is repeated
        got = inputs.presses()
        assert len(got) == 4
        assert [p for p in got if isinstance(p, KeyPress) and p.window == 1] == [
            KeyPress(1, WindowKey.SIGN_IN, staff_id="7"),
            KeyPress(1, WindowKey.NEXT),
        ]
        assert KeyPress(2, WindowKey.NEXT) in got
        assert Rating(3, 5) in got
        # Every input was acknowledged: the terminals' queues are empty again.
        if isinstance(bank, ModbusTerminalBank):
            await until(lambda: all(bank.pending_inputs(a) == 0 for a in WINDOWS.values()))
        else:
            assert isinstance(bank, VendorTerminalBank)
            await until(lambda: all(bank.pending_reports(a) == 0 for a in WINDOWS.values()))

    run(bus_kind, bank, scenario)


def test_a_bank_served_on_the_drivers_loop_needs_no_thread(bus_kind: BusKind) -> None:
    """``serving()``: the bank answers on the loop that polls it (the fleet demo runs ten
    villages' banks so), with the same bytes; no thread, and start() is refused meanwhile."""

    async def main() -> None:
        with PtyLink() as link:
            bank = make_bank(bus_kind, link)
            threads = threading.active_count()
            async with bank.serving():
                assert threading.active_count() == threads
                with pytest.raises(RuntimeError, match="already started"):
                    bank.start()
                inputs = Inputs()
                driver = TerminalDriver(settings(bus_kind, link.port_name), inputs)
                task = asyncio.create_task(driver.run())
                try:
                    bank.press(12, Key.NEXT)
                    bank.rate(13, 4)
                    await until(lambda: len(inputs.presses()) == 2)
                    assert set(inputs.presses()) == {KeyPress(2, WindowKey.NEXT), Rating(3, 4)}
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            with bank:  # served again, now by its own thread
                assert bank.running

    asyncio.run(main())


def test_a_burst_between_slow_polls_loses_and_doubles_nothing(
    bus_kind: BusKind,
    bank: TerminalBank,  # type: ignore[type-arg]
) -> None:
    """Polls every 0.3 s: eight presses land between two polls and all come through once."""

    async def scenario(driver: TerminalDriver, inputs: Inputs) -> None:
        keys = [Key.NEXT, Key.RECALL, Key.NO_SHOW, Key.NEXT, Key.PAUSE, Key.RESUME, Key.FINISH]
        for key in keys:
            bank.press(12, key)
        bank.rate(12, 4)
        await until(lambda: len(inputs.presses()) == 8)
        await asyncio.sleep(0.7)
        assert inputs.presses() == [
            KeyPress(2, WindowKey.NEXT),
            KeyPress(2, WindowKey.RECALL),
            KeyPress(2, WindowKey.NO_SHOW),
            KeyPress(2, WindowKey.NEXT),
            KeyPress(2, WindowKey.PAUSE),
            KeyPress(2, WindowKey.RESUME),
            KeyPress(2, WindowKey.FINISH),
            Rating(2, 4),
        ]

    run(bus_kind, bank, scenario, poll_interval_s=0.3)


def test_modbus_acks_by_separate_write_when_asked() -> None:
    """``modbus_ack_in_poll=False``: FC16 acks right after the poll, nothing lost or doubled."""
    with PtyLink() as link, ModbusTerminalBank(link, WINDOWS.values()) as bank:

        async def main() -> None:
            inputs = Inputs()
            s = settings("modbus", link.port_name, poll_interval_s=0.2)
            s = TerminalSettings(
                s.port, s.terminals, bus="modbus", poll_interval_s=0.2, modbus_ack_in_poll=False
            )
            driver = TerminalDriver(s, inputs)
            task = asyncio.create_task(driver.run())
            for key in (Key.NEXT, Key.RECALL, Key.FINISH):
                bank.press(11, key)
            await until(lambda: len(inputs.presses()) == 3)
            await until(lambda: bank.pending_inputs(11) == 0)  # acknowledged at once
            await asyncio.sleep(0.5)
            assert [p.key for p in inputs.presses() if isinstance(p, KeyPress)] == [
                WindowKey.NEXT,
                WindowKey.RECALL,
                WindowKey.FINISH,
            ]
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        asyncio.run(main())


def test_a_lost_acknowledgement_does_not_double_a_press(
    bus_kind: BusKind,
    bank: TerminalBank,  # type: ignore[type-arg]
) -> None:
    """The terminal goes silent right after its press was taken, before the ack reaches it."""

    async def scenario(driver: TerminalDriver, inputs: Inputs) -> None:
        def cut_the_line(item: DeviceInput) -> None:
            if isinstance(item, KeyPress) and item.window == 3:
                bank.set_dead(13)  # the ack (Modbus write / next vendor POLL) is lost

        inputs.on_put = cut_the_line
        bank.press(13, Key.NEXT)
        await until(lambda: len(inputs.presses()) == 1)
        inputs.on_put = None
        await asyncio.sleep(0.3)
        bank.set_dead(13, dead=False)
        await until(lambda: driver.health().state is HealthState.OK)
        await asyncio.sleep(0.2)  # it answers again, with the unacknowledged press still queued
        assert inputs.presses() == [KeyPress(3, WindowKey.NEXT)]
        bank.press(13, Key.FINISH)
        await until(lambda: len(inputs.presses()) == 2)
        assert inputs.presses()[-1] == KeyPress(3, WindowKey.FINISH)

    run(bus_kind, bank, scenario, dead_poll_interval_s=0.1)


def test_a_dead_terminal_is_reported_and_does_not_stall_the_others(
    bus_kind: BusKind,
) -> None:
    with PtyLink() as link, make_bank(bus_kind, link, dead=[12]) as bank:

        async def main() -> None:
            inputs = Inputs()
            driver = TerminalDriver(settings(bus_kind, link.port_name), inputs)
            task = asyncio.create_task(driver.run())
            await until(lambda: driver.health().state is HealthState.DEGRADED)
            assert driver.health().detail == "终端无应答 silent: 窗口2(#12)"
            polls_before = {a: t.polls for a, t in driver._by_address.items()}
            started = time.monotonic()
            for _ in range(10):
                bank.press(11, Key.NEXT)
                bank.press(13, Key.NEXT)
                await asyncio.sleep(0.05)
            await until(lambda: len(inputs.presses()) == 20)
            await asyncio.sleep(0.5)
            polls = {a: t.polls - polls_before[a] for a, t in driver._by_address.items()}
            # The dead one is polled every dead_poll_interval_s (0.5 s); the live ones
            # all the time, and every press at them came through meanwhile.
            elapsed = time.monotonic() - started
            assert polls[12] <= elapsed / 0.5 + 1
            assert polls[11] > 2 * polls[12]
            assert polls[13] > 2 * polls[12]
            # It comes back: reported, polled normally again.
            bank.set_dead(12, dead=False)
            bank.press(12, Key.NEXT)
            await until(lambda: KeyPress(2, WindowKey.NEXT) in inputs.presses())
            assert driver.health().state is HealthState.OK
            # All dead: offline.
            for address in WINDOWS.values():
                bank.set_dead(address)
            await until(lambda: driver.health().state is HealthState.OFFLINE)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            states = inputs.health()  # the detail changes as terminals die one by one
            collapsed = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
            assert collapsed == [
                HealthState.OK,
                HealthState.DEGRADED,
                HealthState.OK,
                HealthState.DEGRADED,
                HealthState.OFFLINE,
            ]

        asyncio.run(main())


def test_window_led_text_and_rating_request(bus_kind: BusKind, bank: TerminalBank) -> None:  # type: ignore[type-arg]
    async def scenario(driver: TerminalDriver, inputs: Inputs) -> None:
        for n in range(1, 6):
            driver.set_window_text(1, f"请A00{n}号")
        driver.set_window_text(3, "暂停服务")
        driver.request_rating(2, 30)
        await until(lambda: bank.led_text(11) == "请A005号" and bank.led_text(13) == "暂停服务")
        await until(lambda: bank.rating_requested(12))
        assert driver.window_text_shown(1) == "请A005号"
        bank.rate(12, 1)
        await until(lambda: Rating(2, 1) in inputs.presses())
        assert not bank.rating_requested(12)

    run(bus_kind, bank, scenario)


def test_a_rebooted_terminal_gets_its_text_back_and_reports_new_presses(
    bus_kind: BusKind,
    bank: TerminalBank,  # type: ignore[type-arg]
) -> None:
    async def scenario(driver: TerminalDriver, inputs: Inputs) -> None:
        driver.set_window_text(2, "A010")
        await until(lambda: bank.led_text(12) == "A010")
        bank.press(12, Key.NEXT)
        await until(lambda: len(inputs.presses()) == 1)
        bank.set_dead(12)  # power cut...
        await until(lambda: driver.health().state is HealthState.DEGRADED)
        bank.reboot(12)  # ...and back, blank, counting from 1 again
        bank.set_dead(12, dead=False)
        await until(lambda: bank.led_text(12) == "A010")
        bank.press(12, Key.RECALL)
        await until(lambda: len(inputs.presses()) == 2)
        assert inputs.presses()[-1] == KeyPress(2, WindowKey.RECALL)

    run(bus_kind, bank, scenario, dead_poll_interval_s=0.1)


def test_bad_commands_are_refused_at_once(bus_kind: BusKind, bank: TerminalBank) -> None:  # type: ignore[type-arg]
    async def scenario(driver: TerminalDriver, inputs: Inputs) -> None:
        with pytest.raises(LocalProtocolError, match="not in GB2312"):
            driver.set_window_text(1, "A001 ✓")
        with pytest.raises(LocalProtocolError, match="at most"):
            driver.set_window_text(1, "很长" * 100)
        with pytest.raises(DeviceConfigError, match="window 7 has no terminal"):
            driver.set_window_text(7, "A001")
        with pytest.raises(LocalProtocolError, match="rating request timeout"):
            driver.request_rating(1, 999)

    run(bus_kind, bank, scenario)


def test_a_missing_port_is_offline() -> None:
    async def main() -> None:
        driver = TerminalDriver(settings("vendor", "/dev/onedoor-no-such-tty"), Inputs())
        task = asyncio.create_task(driver.run())
        await until(lambda: "串口无法打开" in driver.health().detail)
        assert driver.health().state is HealthState.OFFLINE
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"terminals": {}}, "no window terminals"),
        ({"terminals": {1: 5, 2: 5}}, "share a terminal address"),
        ({"terminals": {1: 248}}, "1..247"),
        ({"terminals": {1: 1}, "bus": "can"}, "'modbus' or 'vendor'"),
        ({"terminals": {1: 1}, "reply_timeout_s": 0}, "reply_timeout_s"),
        ({"terminals": {1: 1}, "dead_poll_max_interval_s": 1}, "dead_poll_max_interval_s"),
        ({"terminals": {1: 1}, "dead_probe_timeout_s": 0}, "dead_probe_timeout_s"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DeviceConfigError, match=message):
        TerminalSettings("/dev/ttyUSB2", **kwargs)  # type: ignore[arg-type]


# --- exactly once over a daemon restart ----------------------------------------------------------
def take_one_press_then_die(
    kind: BusKind,
    bank: TerminalBank,  # type: ignore[type-arg]
    key: Key,
) -> KeyPress:
    """A driver that takes one press and dies before acknowledging it (the daemon killed)."""

    async def main() -> KeyPress:
        inputs = Inputs()
        driver = TerminalDriver(settings(kind, bank.link.port_name), inputs)
        task = asyncio.create_task(driver.run())

        def die(item: DeviceInput) -> None:
            if isinstance(item, KeyPress):
                task.cancel()  # before any acknowledgement

        inputs.on_put = die
        await until(lambda: driver.health().state is HealthState.OK)
        # Health turns OK at the bus's opening, before the first poll: wait until what was
        # typed before is taken and acknowledged, or it would come in one poll with ``key``
        # and die unacknowledged with it.
        await until(lambda: pending(bank, 11) == 0)
        bank.press(11, key)
        await asyncio.gather(task, return_exceptions=True)
        [press] = inputs.presses()
        assert isinstance(press, KeyPress)
        return press

    return asyncio.run(main())


def pending(bank: TerminalBank, address: int) -> int:  # type: ignore[type-arg]
    if isinstance(bank, ModbusTerminalBank):
        return bank.pending_inputs(address)
    assert isinstance(bank, VendorTerminalBank)
    return bank.pending_reports(address)


def test_a_press_handled_before_a_restart_is_acknowledged_not_handed_on_again(
    bus_kind: BusKind,
    bank: TerminalBank,  # type: ignore[type-arg]
) -> None:
    bank.press(11, Key.DIGIT_4)  # typed before: digits have no effect of their own
    press = take_one_press_then_die(bus_kind, bank, Key.NEXT)
    assert press == KeyPress(1, WindowKey.NEXT)
    mark = press.mark
    assert mark is not None
    boot = bank.boot_id(11) if isinstance(bank, ModbusTerminalBank) else 0
    assert mark == InputMark("terminals", 11, 2, 0x0100 | Key.NEXT, boot)
    assert pending(bank, 11) == 1  # handled (say), never acknowledged

    async def scenario(driver: TerminalDriver, inputs: Inputs) -> None:
        await until(lambda: pending(bank, 11) == 0)  # acknowledged at the first poll...
        await asyncio.sleep(0.2)
        assert inputs.presses() == []  # ...and not handed on again
        bank.press(11, Key.FINISH)
        await until(lambda: len(inputs.presses()) == 1)
        assert inputs.presses() == [KeyPress(1, WindowKey.FINISH)]

    run(bus_kind, bank, scenario, marks=[mark, InputMark("gpio", 12, 1, 0x0101)], confirm=True)


def test_inputs_after_the_handled_one_are_new_after_a_restart(
    bus_kind: BusKind,
    bank: TerminalBank,  # type: ignore[type-arg]
) -> None:
    press = take_one_press_then_die(bus_kind, bank, Key.NEXT)
    assert press.mark is not None
    bank.press(11, Key.RECALL)  # while the daemon was down
    bank.rate(11, 4)

    async def scenario(driver: TerminalDriver, inputs: Inputs) -> None:
        await until(lambda: len(inputs.presses()) == 2)
        await asyncio.sleep(0.2)
        assert inputs.presses() == [KeyPress(1, WindowKey.RECALL), Rating(1, 4)]
        assert pending(bank, 11) == 0

    run(bus_kind, bank, scenario, marks=[press.mark], confirm=True)


def test_a_terminal_rebooted_while_the_daemon_was_down_counts_from_1_again(
    bus_kind: BusKind,
    bank: TerminalBank,  # type: ignore[type-arg]
) -> None:
    press = take_one_press_then_die(bus_kind, bank, Key.NEXT)
    assert press.mark is not None
    assert press.mark.sequence == 1
    bank.reboot(11)  # power cut: the unacknowledged press is gone, sequences restart
    # Modbus: a new BOOT_ID, so even the very same (sequence, key) is new. The vendor frame
    # has no boot id: a report is new when its sequence or its key differs from the mark.
    bank.press(11, Key.NEXT if bus_kind == "modbus" else Key.RECALL)
    expected = WindowKey.NEXT if bus_kind == "modbus" else WindowKey.RECALL

    async def scenario(driver: TerminalDriver, inputs: Inputs) -> None:
        await until(lambda: len(inputs.presses()) == 1)
        assert inputs.presses() == [KeyPress(1, expected)]
        bank.press(11, Key.FINISH)
        await until(lambda: len(inputs.presses()) == 2)
        assert inputs.presses()[-1] == KeyPress(1, WindowKey.FINISH)

    run(bus_kind, bank, scenario, marks=[press.mark], confirm=True)


def test_ratings_carry_their_mark(bus_kind: BusKind, bank: TerminalBank) -> None:  # type: ignore[type-arg]
    async def scenario(driver: TerminalDriver, inputs: Inputs) -> None:
        bank.rate(12, 5)
        await until(lambda: len(inputs.presses()) == 1)
        [rating] = inputs.presses()
        assert rating == Rating(2, 5)
        assert rating.mark is not None
        assert (rating.mark.address, rating.mark.sequence, rating.mark.code) == (12, 1, 0x0205)

    run(bus_kind, bank, scenario)


def test_a_bad_rating_and_its_reasons_arrive_in_order_with_marks(
        bus_kind: BusKind, bank: TerminalBank) -> None:  # type: ignore[type-arg]
    """The pad's follow-up page after a 差评: each reason a latched input of its own."""
    async def scenario(driver: TerminalDriver, inputs: Inputs) -> None:
        for digit in (4, 4, 2):
            bank.press(12, D[digit])
        bank.press(12, Key.CASE)
        bank.rate(12, 2)
        bank.choose_reason(12, 3)
        bank.choose_reason(12, 1)
        await until(lambda: len(inputs.reasons()) == 2)
        await asyncio.sleep(0.2)  # more polls: nothing is repeated
        assert inputs.presses() == [KeyPress(2, WindowKey.CASE, case_no="442"), Rating(2, 2)]
        assert inputs.reasons() == [RatingReason(2, 3), RatingReason(2, 1)]
        marks = [r.mark for r in inputs.reasons()]
        assert [(m.address, m.code) for m in marks if m is not None] == [(12, 0x0303),
                                                                         (12, 0x0301)]
        ordered = [i for i in inputs.received if isinstance(i, KeyPress | Rating | RatingReason)]
        assert [i.mark.sequence for i in ordered if i.mark is not None] == [4, 5, 6, 7]

    run(bus_kind, bank, scenario)


# --- dead terminals: rare, short probes, one per cycle -----------------------------------------
class ScriptedBus:
    """A bus whose terminals either answer (nothing new) or stay silent; records every poll."""

    def __init__(self, silent: set[int]) -> None:
        self.silent = silent
        self.polls: list[tuple[float, int, float | None]] = []  # (when, address, timeout)

    async def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def poll(self, address: int, timeout_s: float | None = None) -> tuple[()]:
        self.polls.append((time.monotonic(), address, timeout_s))
        await asyncio.sleep(0.002)
        if address in self.silent:
            raise NoAnswer(f"terminal {address}")
        return ()

    async def acknowledge(self, address: int) -> None:
        pass

    async def send(self, command: object) -> None:
        pass

    def check_text(self, text: str) -> None:
        pass

    def forget(self, address: int) -> None:
        pass

    def restore(self, marks: object) -> None:
        pass

    def boot_id(self, address: int) -> int:
        return 0


def test_dead_terminals_are_probed_rarely_briefly_and_one_per_cycle() -> None:
    bus = ScriptedBus(silent={12, 13})
    probe_s = 0.02
    terminal_settings = TerminalSettings(
        "/dev/null",
        WINDOWS,
        reply_timeout_s=0.05,
        poll_interval_s=0.01,
        dead_after=1,
        dead_poll_interval_s=0.05,
        dead_poll_max_interval_s=0.2,
        dead_probe_timeout_s=probe_s,
    )

    async def main() -> None:
        driver = TerminalDriver(terminal_settings, Inputs(), bus=bus)
        task = asyncio.create_task(driver.run())
        await until(lambda: driver.health().state is HealthState.DEGRADED)
        await until(lambda: all(t.dead for a, t in driver._by_address.items() if a != 11))
        bus.polls.clear()
        await asyncio.sleep(1.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    probes = [(t, a) for t, a, timeout in bus.polls if a in bus.silent]
    assert all(timeout == probe_s for _, a, timeout in bus.polls if a in bus.silent)
    assert all(timeout is None for _, a, timeout in bus.polls if a == 11)
    # Between two probes the live terminal is polled: never two probes in one cycle.
    order = [a for _, a, _ in bus.polls]
    for before, after in itertools.pairwise(order):
        assert not (before in bus.silent and after in bus.silent), order
    # Each dead terminal: the interval doubles while it stays silent, up to the cap.
    for address in (12, 13):
        times = [t for t, a in probes if a == address]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(times) <= 1.5 / 0.05  # far fewer than a poll every interval
        assert gaps
        assert max(gaps) >= 0.2 - 0.01
        assert all(gap <= 0.2 + 0.1 for gap in gaps)
    assert order.count(11) > 5 * len(probes)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # The turnaround a probe allows on top of the poll's own wire time (which the
        # exchange counts anyway): half that line time and 5 ms, at least 20 ms.
        ({}, 0.02),  # Modbus at 19200 8E1: a poll's line time is ~30 ms
        ({"bus": "vendor"}, 0.02),  # 20 bytes at 9600 8N1: ~21 ms
        ({"baudrate": 9600, "reply_timeout_s": 0.2}, 0.5 * 52 * 11 / 9600 + 0.005),
        ({"baudrate": 9600, "reply_timeout_s": 0.03}, 0.03),  # never above the reply timeout
        ({"dead_probe_timeout_s": 0.03}, 0.03),
    ],
)
def test_the_probe_turnaround_follows_the_line(kwargs: dict[str, object], expected: float) -> None:
    values: dict[str, object] = {"reply_timeout_s": 0.1} | kwargs
    terminal_settings = TerminalSettings("/dev/ttyUSB2", WINDOWS, **values)  # type: ignore[arg-type]
    assert terminal_settings.probe_timeout_s == pytest.approx(expected)


def test_no_ack_reaches_the_terminal_before_the_daemon_confirms(
    bus_kind: BusKind,
    bank: TerminalBank,  # type: ignore[type-arg]
) -> None:
    """A daemon that journals marks confirms each input; until then the press stays latched."""

    async def scenario(driver: TerminalDriver, inputs: Inputs) -> None:
        bank.press(11, Key.NEXT)
        await until(lambda: len(inputs.presses()) == 1)
        [press] = inputs.presses()
        assert press.mark is not None
        await asyncio.sleep(0.3)  # many poll intervals: the daemon is slow (a print, say)
        assert pending(bank, 11) == 1
        bank.press(12, Key.NEXT)  # the other terminals go on meanwhile
        await until(lambda: len(inputs.presses()) == 2)
        driver.input_handled(press.mark)  # journaled now
        await until(lambda: pending(bank, 11) == 0)
        second = inputs.presses()[1]
        assert second.mark is not None
        driver.input_handled(second.mark)
        await until(lambda: pending(bank, 12) == 0)
        bank.press(11, Key.FINISH)
        await until(lambda: len(inputs.presses()) == 3)
        assert inputs.presses()[2] == KeyPress(1, WindowKey.FINISH)

    run(bus_kind, bank, scenario, marks=[])


def test_an_unconfirmed_input_is_acknowledged_after_a_while(
    bus_kind: BusKind,
    bank: TerminalBank,  # type: ignore[type-arg]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(terminals_module, "ACK_HOLD_MAX_S", 0.3)

    async def scenario(driver: TerminalDriver, inputs: Inputs) -> None:
        bank.press(11, Key.NEXT)
        await until(lambda: len(inputs.presses()) == 1)
        await until(lambda: pending(bank, 11) == 0)  # never confirmed: acked anyway
        assert len(inputs.presses()) == 1

    run(bus_kind, bank, scenario, marks=[])
