"""The 二代身份证 reader at the kiosk: the SAM frame (:mod:`firmware_protocols.id_card`)
over a serial line (115200 8N1 by default; most readers are a USB-serial bridge).

One task (:meth:`IdCardReaderDriver.run`) owns the port. At open it asks the
SAM's status (a reader that does not answer is *offline*), then every
``poll_interval_s`` it looks for a card (FIND). When one is in the field it
selects it and reads its base information, and hands an
:class:`~edge.devices.base.IdCardRead` to the daemon's queue. The same card is
not read again while it stays on the reader: only after a FIND has found the
field empty (the citizen took the card back) is the next card read.

What goes wrong at a kiosk, and what the driver does:

* the card is pulled away during the read (``41``) or an answer is cut short or
  garbled (a checksum error): that read is dropped (logged, counted) and the
  card is read again at the next poll if it is still there;
* no answer twice in a row: *offline* ('读卡器无响应'); it is asked again at
  every poll, and *ok* once it answers;
* the reader is unplugged: *offline* with the port's error; the port (a stable
  ``/dev/serial/by-id/...`` name) is opened again every ``reopen_interval_s``.

Exchanges wait for the request and the answer on the wire (a base-information
answer is 1,295 bytes: 112 ms at 115200 baud) plus the module's turnaround,
``reply_timeout_s`` (``read_timeout_s`` for the read, which takes the card
itself a few hundred milliseconds). The ID number and name are never logged.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from firmware_protocols import id_card
from firmware_protocols.decoding import Decoder
from firmware_protocols.errors import ProtocolError
from firmware_protocols.id_card import Command, IdCardEvent, Response, Status
from firmware_protocols.line import SerialTiming

from .base import (
    DeviceConfigError,
    DeviceHealth,
    DeviceKind,
    DeviceTimeout,
    HealthState,
    HealthTracker,
    IdCardRead,
    InputQueue,
)
from .serial_port import AsyncSerial, ByteLink, exchange, serve_link

log = structlog.get_logger(__name__)

_SHORT_ANSWER = 64  # bytes: any answer but the base information
_BASE_INFO_ANSWER = (len(id_card.PREAMBLE) + 2 + 3 + 4 + id_card.TEXT_SIZE + id_card.PHOTO_SIZE
                     + 1)  # 1,295


@dataclass(frozen=True, slots=True)
class IdCardSettings:
    port: str
    baudrate: int = id_card.BAUD
    poll_interval_s: float = 0.5
    reply_timeout_s: float = 0.3
    read_timeout_s: float = 1.5  # reading the card takes the card itself a few 100 ms
    reopen_interval_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("poll_interval_s", "reply_timeout_s", "read_timeout_s",
                     "reopen_interval_s"):
            if getattr(self, name) <= 0:
                raise DeviceConfigError(f"id card reader {name} must be > 0")
        if self.baudrate <= 0:
            raise DeviceConfigError(f"id card reader baudrate must be > 0, got {self.baudrate}")


class _Silent(Exception):
    """The reader did not answer (internal)."""


class IdCardReaderDriver:
    """A :class:`~edge.devices.base.Device` that posts :class:`IdCardRead` inputs."""

    def __init__(
        self,
        settings: IdCardSettings,
        inputs: InputQueue,
        *,
        device_id: str = "id_card",
        port: ByteLink | None = None,
    ) -> None:
        self._settings = settings
        self._inputs = inputs
        self._device_id = device_id
        self._port = port if port is not None else AsyncSerial(
            settings.port, SerialTiming(settings.baudrate)
        )
        self._health = HealthTracker(
            device_id, DeviceKind.ID_CARD, inputs, initial=HealthState.OFFLINE,
            detail="not started",
        )
        self._card_on_reader = False  # read already: wait until the field is empty
        self._silent = 0
        self.reads = 0
        self.failed_reads = 0

    def health(self) -> DeviceHealth:
        return self._health.current

    async def run(self) -> None:
        await serve_link(self._port, self._health, self._poll,
                         reopen_interval_s=self._settings.reopen_interval_s,
                         on_open=self._opened)

    def _opened(self) -> None:
        self._card_on_reader = False  # whatever lay there before, read it anew

    async def _poll(self) -> None:
        await self._step()
        await asyncio.sleep(self._settings.poll_interval_s)

    async def _ask(self, command: Command, *, reply_bytes: int = _SHORT_ANSWER,
                   timeout: float | None = None) -> Response:
        decoder: Decoder[IdCardEvent] = id_card.IdCardDecoder()

        def noise(exc: ProtocolError) -> None:
            log.warning("id_card.bad_answer", command=command.name, error=str(exc))

        try:
            answer = await exchange(
                self._port, id_card.encode_request(command), decoder,
                lambda event: isinstance(event, Response), reply_bytes=reply_bytes,
                timeout=self._settings.reply_timeout_s if timeout is None else timeout,
                on_error=noise,
            )
        except DeviceTimeout:
            raise _Silent from None
        if not isinstance(answer, Response):
            raise _Silent
        return answer

    async def _step(self) -> None:
        """One poll: the module's status while it is not known good, then FIND, and a read
        when a new card is in the field."""
        try:
            if self._health.current.state is not HealthState.OK:
                status = await self._ask(Command.SAM_STATUS)
                if status.status is not Status.OK:
                    self._health.set(HealthState.OFFLINE, f"安全模块故障 SAM {status.status.name}")
                    return
            found = await self._ask(Command.FIND_CARD)
        except _Silent:
            self._silent += 1
            if self._silent >= 2:
                self._health.set(HealthState.OFFLINE, "读卡器无响应 no answer")
            return
        self._silent = 0
        self._health.set(HealthState.OK)
        if found.status is not Status.FOUND:
            self._card_on_reader = False
            return
        if not self._card_on_reader:
            await self._read()

    async def _read(self) -> None:
        s = self._settings
        try:
            selected = await self._ask(Command.SELECT_CARD)
            if selected.status is not Status.OK:
                return  # the card left between FIND and SELECT
            answer = await self._ask(Command.READ_BASE_INFO, reply_bytes=_BASE_INFO_ANSWER,
                                     timeout=s.read_timeout_s)
        except _Silent:
            self.failed_reads += 1
            log.warning("id_card.read_unanswered")
            return
        if answer.status is not Status.OK:
            self.failed_reads += 1
            log.warning("id_card.read_failed", status=answer.status.name)  # e.g. card pulled
            return
        try:
            info = id_card.parse_base_info(answer.data)
        except ProtocolError as exc:
            self.failed_reads += 1
            log.warning("id_card.unreadable", error=str(exc))
            return
        self._card_on_reader = True
        self.reads += 1
        log.info("id_card.read", reader=self._device_id)  # what it says stays off the log
        self._inputs.put_nowait(IdCardRead(self._device_id, info.text))


__all__ = ["IdCardReaderDriver", "IdCardSettings"]
