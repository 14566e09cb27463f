"""A virtual 二代身份证 reader (SAM module) on a pty, speaking :mod:`firmware_protocols.id_card`.

Usage (tests, demos)::

    with PtyLink(SerialTiming(115200)) as link, VirtualIdCardReader(link) as reader:
        reader.place_card(card_text)          # a citizen puts a card on the reader
        ...                                   # the driver finds, selects, reads it
        reader.remove_card()

What it models: FIND (``9F`` with a card in the field, ``80`` without), SELECT
(``90``, or ``81`` without a card), READ BASE INFO (``90`` and the 1,295-byte
answer, after ``read_seconds`` of card work; only after a SELECT), SAM status
and id; a frame with a bad checksum is answered ``10``, an unknown command
``21``, as the module does. Scripting for the failures a kiosk meets:
:meth:`~VirtualIdCardReader.leave_during_next_read` (the card is pulled away:
``41``), :meth:`~VirtualIdCardReader.corrupt_next_answer` (its checksum is
wrong), :meth:`~VirtualIdCardReader.cut_next_answer` (only half of it comes).
Unplugging is closing the link.
"""

from __future__ import annotations

from collections import Counter

import structlog

from firmware_protocols import id_card
from firmware_protocols.decoding import NEED_DATA
from firmware_protocols.errors import ChecksumError, ProtocolError
from firmware_protocols.id_card import (
    Command,
    Direction,
    IdCardDecoder,
    IdCardText,
    Request,
    Response,
    Status,
)

from .serial_link import DeviceLink, PtyDevice

log = structlog.get_logger(__name__)

SAM_ID: bytes = bytes.fromhex("0501000020101010001234567890abcd")


class VirtualIdCardReader(PtyDevice):
    """A reader with its SAM on ``link`` (see the module docstring)."""

    def __init__(
        self, link: DeviceLink, *, read_seconds: float = 0.1, idle_seconds: float = 0.05
    ) -> None:
        super().__init__(link, idle_seconds=idle_seconds)
        self.read_seconds = read_seconds
        self._decoder = IdCardDecoder(Direction.TO_READER)
        self._card: tuple[IdCardText, bytes] | None = None
        self._selected = False
        self._leave_during_read = False
        self._corrupt: Command | None = None  # the next answer to it has a bad checksum
        self._cut: Command | None = None  # the next answer to it is cut in half
        self.commands: Counter[Command] = Counter()
        self.bad_frames = 0

    # --- device thread -------------------------------------------------------------------------
    def _on_bytes(self, data: bytes) -> bytes:
        self._decoder.receive_data(data)
        answer = bytearray()
        self.reply_delay = 0.0
        while True:
            try:
                event = self._decoder.next_event()
            except ChecksumError:
                self.bad_frames += 1
                answer += id_card.encode(Response(Status.BAD_CHECKSUM))
                continue
            except ProtocolError as exc:
                self.bad_frames += 1
                log.warning("id_card_reader.bad_frame", port=self.port, error=str(exc))
                answer += id_card.encode(Response(Status.BAD_COMMAND))
                continue
            if event is NEED_DATA:
                break
            if isinstance(event, Request):
                answer += self._damaged(event.command, self._answer(event))
        return bytes(answer)

    def _answer(self, request: Request) -> bytes:
        self.commands[request.command] += 1
        match request.command:
            case Command.FIND_CARD:
                if self._card is None:
                    return id_card.encode(Response(Status.NOT_FOUND))
                return id_card.encode(Response(Status.FOUND, id_card.FIND_DATA))
            case Command.SELECT_CARD:
                self._selected = self._card is not None
                if not self._selected:
                    return id_card.encode(Response(Status.SELECT_FAILED))
                return id_card.encode(Response(Status.OK, id_card.SELECT_DATA))
            case Command.READ_BASE_INFO:
                self.reply_delay = self.read_seconds  # the card's own work takes time
                selected, self._selected = self._selected, False
                if self._leave_during_read:
                    self._leave_during_read = False
                    self._card = None
                if self._card is None or not selected:
                    return id_card.encode(Response(Status.READ_FAILED))
                text, photo = self._card
                return id_card.encode(Response(Status.OK, id_card.encode_base_info(text, photo)))
            case Command.READ_SAM_ID:
                return id_card.encode(Response(Status.OK, SAM_ID))
            case Command.SAM_STATUS | Command.RESET_SAM:
                return id_card.encode(Response(Status.OK))
        raise AssertionError(request.command)  # pragma: no cover

    def _damaged(self, command: Command, answer: bytes) -> bytes:
        if command is self._corrupt:
            self._corrupt = None
            answer = answer[:-1] + bytes([answer[-1] ^ 0xFF])
        if command is self._cut:
            self._cut = None
            answer = answer[: len(answer) // 2]
        return answer

    # --- scripting (any thread) ----------------------------------------------------------------
    def place_card(self, text: IdCardText, photo: bytes = bytes(id_card.PHOTO_SIZE)) -> None:
        id_card.encode_text(text)  # a card the codec cannot carry is the test's mistake
        with self._cond:
            self._card = (text, photo)
            self._selected = False

    def remove_card(self) -> None:
        with self._cond:
            self._card = None
            self._selected = False

    def leave_during_next_read(self) -> None:
        """The citizen pulls the card away while it is being read."""
        with self._cond:
            self._leave_during_read = True

    def corrupt_next_answer(self, to: Command = Command.READ_BASE_INFO) -> None:
        """The next answer to ``to`` arrives with a wrong checksum (line noise)."""
        with self._cond:
            self._corrupt = to

    def cut_next_answer(self, to: Command = Command.READ_BASE_INFO) -> None:
        """Only the first half of the next answer to ``to`` reaches the host (a loose cable)."""
        with self._cond:
            self._cut = to

    @property
    def card_present(self) -> bool:
        with self._cond:
            return self._card is not None

    def count(self, command: Command) -> int:
        with self._cond:
            return self.commands[command]


__all__ = ["SAM_ID", "VirtualIdCardReader"]
