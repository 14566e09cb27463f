"""Real pyserial against the simulated vendor-frame terminal bank, over a pty."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import serial

from firmware_protocols import vendor_frame as vf
from firmware_protocols.errors import ProtocolError
from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming
from firmware_protocols.simulators.vendor_bank import KeypadDisplay, VendorTerminalBank
from firmware_protocols.terminal_events import (
    Key,
    KeyPressed,
    RatingPressed,
    RequestRating,
    ShowText,
)

ADDRESSES = range(1, 7)
DEAD = 4
ANSWER_TIMEOUT = 0.5  # generous: a live answer takes ~5 ms, but CI machines stall


class Host:
    """A minimal vendor-bus master: one frame out, at most one frame back."""

    def __init__(self, port: str) -> None:
        self.port = serial.Serial(port, baudrate=vf.BAUD, timeout=0.02)
        self.decoder = vf.VendorDecoder()
        self.poller = vf.VendorPoller()
        self.errors: list[ProtocolError] = []

    def exchange(self, frame: bytes) -> vf.VendorEvent | None:
        self.port.write(frame)
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while time.monotonic() < deadline:
            self.decoder.receive_data(self.port.read(256))
            try:
                event = self.decoder.next_event()
            except ProtocolError as exc:
                self.errors.append(exc)
                continue
            if event is not vf.NEED_DATA:
                return event
        return None  # timed out: a dead or absent terminal

    def poll(self, address: int) -> vf.VendorEvent | None:
        answer = self.exchange(self.poller.poll(address))
        if isinstance(answer, KeyPressed | RatingPressed):
            self.poller.taken(answer)
        return answer

    def drain(self, address: int) -> list[KeyPressed | RatingPressed]:
        reports: list[KeyPressed | RatingPressed] = []
        while isinstance(answer := self.poll(address), KeyPressed | RatingPressed):
            reports.append(answer)
        assert isinstance(answer, vf.Idle)
        return reports


@pytest.fixture
def link() -> Iterator[PtyLink]:
    with PtyLink() as link:
        yield link


@pytest.fixture
def bank(link: PtyLink) -> Iterator[VendorTerminalBank]:
    with VendorTerminalBank(link, ADDRESSES, dead=[DEAD]) as bank:
        yield bank


@pytest.fixture
def host(link: PtyLink, bank: VendorTerminalBank) -> Iterator[Host]:
    host = Host(link.port_name)
    yield host
    host.port.close()


def test_press_poll_ack(bank: VendorTerminalBank, host: Host) -> None:
    bank.press(3, Key.NEXT)
    bank.rate(5, 4)
    assert host.poll(3) == KeyPressed(3, Key.NEXT, 1)
    assert bank.pending_reports(3) == 1  # kept until the next poll acknowledges it
    assert host.poll(3) == vf.Idle(3, 0)
    assert bank.pending_reports(3) == 0
    assert host.poll(5) == RatingPressed(5, 4, 1)
    assert host.poll(5) == vf.Idle(5, 0)
    assert host.poll(1) == vf.Idle(1, 0)


def test_lost_answer_is_resent_not_lost(bank: VendorTerminalBank, host: Host) -> None:
    bank.press(2, Key.TRANSFER)
    bank.press(2, Key.FINISH)
    first = host.exchange(host.poller.poll(2))  # the host drops this answer on the floor
    assert first == KeyPressed(2, Key.TRANSFER, 1)
    assert host.drain(2) == [KeyPressed(2, Key.TRANSFER, 1), KeyPressed(2, Key.FINISH, 2)]


def test_every_window_action_arrives_in_order(bank: VendorTerminalBank, host: Host) -> None:
    actions = [Key.SIGN_IN, Key.NEXT, Key.RECALL, Key.NO_SHOW, Key.PAUSE, Key.RESUME, Key.FINISH]
    for key in actions:
        bank.press(6, key)
    bank.rate(6, 5)
    reports = host.drain(6)
    assert [r.key for r in reports if isinstance(r, KeyPressed)] == actions
    assert reports[-1] == RatingPressed(6, 5, 8)
    assert bank.press(6, Key.SIGN_OUT) == 9


def test_display_commands_are_acknowledged(bank: VendorTerminalBank, host: Host) -> None:
    answer = host.exchange(vf.encode(ShowText(3, "请A012号到3号窗口")))
    assert answer == vf.Ack(3, vf.Function.LED_TEXT)
    assert bank.led_text(3) == "请A012号到3号窗口"
    assert host.exchange(vf.encode(vf.CallDisplay(3, "A012", 5))) == vf.Ack(
        3, vf.Function.CALL_DISPLAY
    )
    assert bank.keypad_display(3) == KeypadDisplay("A012", 5)
    host.exchange(vf.encode(vf.RecallDisplay(3, "A012")))
    assert bank.keypad_display(3) == KeypadDisplay("A012", None)
    assert host.exchange(vf.encode(RequestRating(3, 20))) == vf.Ack(3, vf.Function.RATING_REQUEST)
    assert bank.rating_requested(3)
    assert host.poll(3) == vf.Idle(3, vf.STATUS_RATING_PENDING)


def test_dead_terminal_times_out_while_others_answer(bank: VendorTerminalBank, host: Host) -> None:
    bank.press(DEAD, Key.NEXT)
    assert host.poll(DEAD) is None
    assert host.poll(200) is None  # an address nobody has
    assert host.poll(5) == vf.Idle(5, 0)
    bank.set_dead(DEAD, False)
    assert host.poll(DEAD) == KeyPressed(DEAD, Key.NEXT, 1)


def test_garbage_and_bad_frames_get_no_answer_and_break_nothing(
    bank: VendorTerminalBank, host: Host
) -> None:
    bad_sum = bytearray(vf.encode(vf.Poll(3, 0)))
    bad_sum[-2] ^= 0xFF
    assert host.exchange(bytes(bad_sum)) is None
    assert host.exchange(vf.encode_frame(3, 0x7F, b"\x00")) is None  # unknown function
    assert host.exchange(vf.encode(vf.Idle(3, 0))) is None  # an answer is not a request
    assert host.exchange(bytes(range(0x60, 0x70)) * 3) is None
    assert bank.bad_frames == 3
    bank.press(3, Key.HELP_ACK)
    assert host.poll(3) == KeyPressed(3, Key.HELP_ACK, 1)


def test_reply_delay_and_line_timing_are_applied(link: PtyLink) -> None:
    timing = SerialTiming(vf.BAUD)
    with VendorTerminalBank(link, [1], reply_delay=0.03, timing=timing) as bank:
        host = Host(link.port_name)
        try:
            started = time.monotonic()
            assert host.poll(1) == vf.Idle(1, 0)
            elapsed = time.monotonic() - started
        finally:
            host.port.close()
        expected = bank.reply_seconds(10, 10)
    assert expected == pytest.approx(0.03 + 20 * 10 / 9600 + 2 * 3.5 * 10 / 9600)  # 8N1
    assert elapsed >= expected


def test_power_cycle_with_a_stale_ack_loses_nothing(bank: VendorTerminalBank, host: Host) -> None:
    bank.press(2, Key.SIGN_IN)
    assert host.drain(2) == [KeyPressed(2, Key.SIGN_IN, 1)]  # the host now acks 1 each poll
    bank.press(2, Key.NEXT)
    bank.reboot(2)  # the unacknowledged NEXT dies with the power; sequences restart
    assert host.poll(2) == vf.Idle(2, 0)
    bank.press(2, Key.SIGN_IN)  # sequence 1 again, while the host still sends ack 1
    assert host.drain(2) == [KeyPressed(2, Key.SIGN_IN, 1)]
