"""The threaded simulator base (PtyDevice) and the receive pacing in serial_link."""

from __future__ import annotations

import pytest
import serial

from firmware_protocols.simulators import serial_link
from firmware_protocols.simulators.serial_link import (
    PtyDevice,
    PtyLink,
    ReceivePacer,
    SerialTiming,
)


def test_pacer_queues_bytes_behind_the_line() -> None:
    pacer = ReceivePacer(SerialTiming(9600))
    char = 10 / 9600
    assert pacer.delay(96, now=100.0) == pytest.approx(96 * char)
    # Written at the same instant: queued behind the first 96 bytes.
    assert pacer.delay(4, now=100.0) == pytest.approx(100 * char)
    # The line has long been free: only its own time.
    assert pacer.delay(1, now=200.0) == pytest.approx(char)
    assert ReceivePacer(None).delay(10_000, now=0.0) == 0.0


class Echo(PtyDevice):
    """Answers every chunk upper-cased; b"boom" is a bug in the device."""

    def __init__(self, link: PtyLink) -> None:
        super().__init__(link, idle_seconds=0.02)
        self.idles = 0

    def _on_bytes(self, data: bytes) -> bytes:
        if b"boom" in data:
            raise ZeroDivisionError("bug in a simulator")
        return data.upper()

    def _on_idle(self) -> bytes:
        self.idles += 1
        return b"."


class PtyDeviceWithIdle(PtyDevice):
    def __init__(self, link: PtyLink, idle: float) -> None:
        super().__init__(link, idle_seconds=idle)

    def _on_bytes(self, data: bytes) -> bytes:
        return b""


def test_answers_idle_and_clean_stop() -> None:
    with (
        PtyLink() as link,
        Echo(link) as device,
        serial.Serial(device.port, timeout=1.0) as port,
    ):
        port.write(b"abc")
        assert port.read(4) == b"ABC."  # the answer, then the idle notice once
        device.wait_until(lambda: device.idles == 1, 1.0)
        assert device.running
    assert not device.running


def test_a_bug_in_the_thread_surfaces_in_the_test() -> None:
    with PtyLink() as link, serial.Serial(link.port_name, timeout=1.0) as port:
        device = Echo(link)
        device.start()
        port.write(b"boom")
        with pytest.raises(RuntimeError, match="thread failed") as info:
            device.wait_until(lambda: False, 2.0)
        assert isinstance(info.value.__cause__, ZeroDivisionError)
        with pytest.raises(RuntimeError, match="thread failed"):
            device.stop()


def test_wait_until_times_out() -> None:
    with PtyLink() as link, Echo(link) as device, pytest.raises(TimeoutError):
        device.wait_until(lambda: False, 0.1)


def test_idle_seconds_must_be_positive() -> None:
    with PtyLink() as link, pytest.raises(ValueError, match="idle_seconds"):
        PtyDeviceWithIdle(link, 0)


def test_link_closed_under_a_running_device_ends_it_quietly() -> None:
    link = PtyLink()
    device = Echo(link)
    device.start()
    link.close()
    device.wait_until(lambda: not device.running, 2.0)
    device.stop()  # no failure to report


def test_a_quiet_device_sleeps_until_bytes_come_and_stop_wakes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No wake-ups every ``idle_seconds`` on a quiet line (a city of simulators in a few
    processes paid for those); stop() still ends the thread at once, through its pipe."""
    monkeypatch.setattr(serial_link, "QUIET_WAIT_S", 3600.0)  # stop() must not wait for it
    with PtyLink() as link, serial.Serial(link.port_name, timeout=10.0) as port:
        timeouts: list[float | None] = []
        read = link.read

        def recording_read(timeout: float | None = 0.1, max_bytes: int = 4096,
                           *, wake_fd: int | None = None) -> bytes:
            timeouts.append(timeout)
            return read(timeout, max_bytes, wake_fd=wake_fd)

        monkeypatch.setattr(link, "read", recording_read)
        device = Echo(link)
        device.start()
        port.write(b"abc")
        assert port.read(4) == b"ABC."
        device.wait_until(lambda: device.idles == 1, 10.0)  # generous: a loaded machine
        device.stop()  # raises "did not stop" if only the hour-long wait could end it
        # Quiet at start, short waits only while bytes were flowing, quiet again after.
        assert timeouts[0] == 3600.0
        assert timeouts[-1] == 3600.0
        assert set(timeouts) == {3600.0, 0.02}
