"""AsyncSerial over a pty: one reader registration per open port, bytes buffered."""

from __future__ import annotations

import asyncio
import os

import pytest

from edge.devices.serial_port import AsyncSerial, SerialPortError
from firmware_protocols.line import SerialTiming
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
