"""AsyncSerial over a pty: one reader registration per open port, bytes buffered."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from edge.devices.serial_port import AsyncSerial, SerialPortError, exchange
from firmware_protocols import led
from firmware_protocols.line import SerialTiming
from firmware_protocols.simulators.led_screens import VirtualLedScreens
from firmware_protocols.simulators.serial_link import PtyLink


def test_exchanges_reuse_one_reader_registration_and_keep_early_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A terminal poll is ten exchanges a second per terminal: registering and dropping
    the port with the event loop for each read cost real CPU in a city of sites."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        registrations: list[int] = []
        add_reader = loop.add_reader

        def counting_add_reader(fd: int, callback: object, *args: object) -> None:
            registrations.append(fd)
            add_reader(fd, callback, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(loop, "add_reader", counting_add_reader)
        with PtyLink() as link:
            async with AsyncSerial(link.port_name, SerialTiming(9600)) as port:
                for n in range(5):
                    await port.write(b"?", 1.0)
                    assert link.read(1.0) == b"?"
                    link.write(b"ok%d" % n)
                    assert await port.read(1.0, max_bytes=2) == b"ok"
                    assert await port.read(1.0) == b"%d" % n  # the rest, kept
                assert registrations == [registrations[0]]  # once for the port's life
                link.write(b"late")  # an answer nobody waits for any more
                await asyncio.sleep(0.05)  # the reader takes it into the buffer
                port.discard_input()
                assert await port.read(0.05) == b""
                link.write(b"next")
                assert await port.read(1.0) == b"next"

    asyncio.run(main())


async def read_until_lost(port: AsyncSerial) -> None:
    for _ in range(50):
        await port.read(0.1)


def test_a_vanished_device_is_reported_by_the_next_read() -> None:
    async def main() -> None:
        link = PtyLink()
        port = AsyncSerial(link.port_name, SerialTiming(9600))
        port.open_now()
        try:
            link.write(b"x")
            assert await port.read(1.0) == b"x"
            os.close(link.fileno())  # the adapter is unplugged: the line hangs up
            link.closed = True
            with pytest.raises(SerialPortError):
                await read_until_lost(port)
            assert not port.is_open
        finally:
            port.close()
            os.close(link._slave)

    asyncio.run(main())


@pytest.mark.parametrize("mode", ["kernel", "rts"])
def test_a_port_that_cannot_switch_rs485_direction_says_so_at_open(mode: str) -> None:
    """A pty has neither TIOCSRS485 nor an RTS line: the error names the way out."""
    with PtyLink() as link:
        port = AsyncSerial(link.port_name, SerialTiming(9600), rs485=mode)  # type: ignore[arg-type]
        with pytest.raises(SerialPortError, match="cannot do RS485 direction control"):
            port.open_now()
        assert not port.is_open


def test_rts_is_held_while_the_frame_is_on_the_wire_and_dropped_before_the_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rs485 = "rts": RTS high from the first byte until the frame has left the UART, low
    before the screen answers. A pty has no RTS line, so the modem-control ioctl is replaced
    by a recorder (a stand-in, named as such); the wire timing and the answer are real."""
    levels: list[tuple[float, bool]] = []

    def record_rts(self: AsyncSerial, level: bool) -> None:  # stand-in for TIOCMBIS/TIOCMBIC
        levels.append((time.monotonic(), level))

    monkeypatch.setattr(AsyncSerial, "_set_rts", record_rts)
    line = SerialTiming(9600)
    frame = led.encode(led.ShowText(1, 7, "请A012号到3号窗口"))

    async def main() -> object:
        port = AsyncSerial(screens.port, line, rs485="rts")
        await port.open()
        try:
            sent_at = time.monotonic()
            answer = await exchange(port, frame, led.LedDecoder(), reply_bytes=9, timeout=0.3)
        finally:
            port.close()
        return answer, sent_at

    with (
        PtyLink(line, half_duplex=True) as link,
        VirtualLedScreens(link, [1]) as screens,
    ):
        answer, sent_at = asyncio.run(main())
        assert answer == led.Ack(1, 7)
        assert link.collisions == 0
    assert [level for _, level in levels] == [False, True, False]  # listen, send, listen
    (_, _), (raised, _), (dropped, _) = levels
    assert raised <= sent_at + 0.05
    assert dropped - raised >= line.transmit_seconds(len(frame)) - 0.002  # the whole frame
