"""What the hall shows, says and prints: hall events turned into screens, voice and tickets.

:class:`HallOutputs` listens to the hall (every durable event, in order) and owns
the notices of the hall screen (呼叫帮办, an unprinted ticket's number, 今日取号已结束,
the central's notices and announcements) with their expiry.

Each output is its own try: a device that fails or refuses never undoes or
blocks a journaled event, nor the other outputs. The hall screen is rendered
part by part: a notice its font cannot show is refused when it is posted
(:class:`~edge.errors.OutputRefused`, so a remote command reports it); a call
line it cannot show is left out alone; notices that do not fit the notice line
together wait, newest first, until others expire. The call lines and the day's
counts always go.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import structlog

from edge.device_set import DeviceSet
from edge.devices.base import HallCounts, TicketPrint
from edge.devices.ticket import TicketContent
from edge.errors import OutputRefused
from edge.hall import Hall, IssuedTicket
from fastpath.types import TicketClass, WindowState
from firmware_protocols import mqtt_messages as mm

log = structlog.get_logger(__name__)

HELP_BUZZ_MS = 800
UNPRINTED_NOTICE_S = 600

# Events after which the hall screen's calls, counts or notices may have changed.
_HALL_SCREEN_EVENTS = (mm.TicketCalled, mm.TicketRecalled, mm.TicketDone, mm.TicketNoShow,
                       mm.HelpRequested, mm.HelpResolved, mm.DayReset, mm.TicketIssued,
                       mm.IssuingStopped, mm.IssuingResumed)


def call_line(ticket: str, window: int) -> str:
    """One call on the hall screen: 请A012号到3号窗口 (``ticket`` may carry a masked name)."""
    return f"请{ticket}号到{window}号窗口"


class CallNames(Protocol):
    """Calls by name (:class:`edge.id_card_kiosk.IdCardKiosk` with ``call_by_name``)."""

    def called_as(self, number: str) -> str:
        """The number as the hall screen calls it: 张*女士 A012, or just A012."""
        ...

    def spoken_call(self, number: str, window: int) -> str | None:
        """The sentence the voice says instead of the clips' call, or None."""
        ...


class HallOutputs:
    """The hall's screens, window LEDs, voice, buzzer, LEDs and tickets (module docstring)."""

    def __init__(self, hall: Hall, devices: DeviceSet, *, names: CallNames | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._hall = hall
        self._devices = devices
        self._names = names
        self._monotonic = monotonic
        self._notices: dict[str, tuple[str, float]] = {}  # key -> (text, until), oldest first
        self._held: tuple[str, ...] = ()  # notices left off the last hall screen (logged once)

    # -- hall events ---------------------------------------------------------

    def on_event(self, event: mm.Event) -> None:
        """After each durable event (a hall listener)."""
        body = event.body
        devices = self._devices
        match body:
            case mm.TicketCalled() | mm.TicketRecalled():
                self.show_window(body.window, body.ticket)
                if devices.announcer is not None:
                    by_name = (None if self._names is None
                               else self._names.spoken_call(body.ticket, body.window))
                    self._safely("announce", devices.announcer.announce, body.ticket,
                                 body.window, by_name)
            case mm.TicketDone():
                self.show_window(body.window, "")
                self._offer_rating(event.seq, body.window)
            case mm.CaseClosed():
                self._offer_rating(event.seq, body.window)
            case mm.TicketNoShow() | mm.TicketTransferred():
                self.show_window(body.window, "")
            case mm.WindowPaused():
                self.show_window(body.window, "暂停")
            case mm.WindowResumed() | mm.WindowSignedIn():
                self.show_window(body.window, "")
            case mm.WindowSignedOut():
                self.show_window(body.window, "暂停服务")
            case mm.HelpRequested():
                self._set_led(f"help.{body.button}", True)
                if devices.gpio is not None:
                    self._safely("buzz", devices.gpio.buzz, HELP_BUZZ_MS)
                self._help_notice(body.button, body.location)
            case mm.HelpEscalated():
                if devices.gpio is not None:
                    self._safely("buzz", devices.gpio.buzz, HELP_BUZZ_MS * 2)
            case mm.HelpResolved():
                self._set_led(f"help.{body.button}", False)
                self._notices.pop(f"help:{body.button}", None)
            case mm.DeviceStatus() if body.kind == "printer":
                self._set_led("paper", body.status != "ok")
            case mm.DayReset():
                self._notices.clear()
                self._stop_notice()
            case mm.IssuingStopped() | mm.IssuingResumed():
                self._stop_notice()
            case _:
                pass
        if isinstance(body, _HALL_SCREEN_EVENTS):
            self.refresh_hall_screen()

    def refresh(self) -> None:
        """After a (re)start or new drivers: show what the journal says the hall holds."""
        for status in self._hall.dispatcher.windows():
            text = status.current or ("暂停" if status.state is WindowState.PAUSED else "")
            self.show_window(status.number, text)
        for request in self._hall.open_help():
            self._set_led(f"help.{request.button}", True)
            self._help_notice(request.button, request.location, refresh=False)
        self._stop_notice(refresh=False)
        self.refresh_hall_screen()

    # -- notices -------------------------------------------------------------

    def notice(self, key: str, text: str, seconds: float | None) -> None:
        """Show ``text`` on the hall screen for ``seconds`` (None: until dropped).

        Raises :class:`OutputRefused` when the hall screen cannot show it (not in its
        font, too long): nothing else changes. Without LED screens it is kept and
        shown once screens come (a reload).
        """
        problem = self._unshowable(text)
        if problem is not None:
            log.warning("hall_screen.notice_refused", notice=key, error=problem)
            raise OutputRefused(f"the hall screen cannot show it: {problem}")
        until = math.inf if seconds is None else self._monotonic() + seconds
        self._notices[key] = (text, until)
        self.refresh_hall_screen()

    def drop_notice(self, key: str) -> None:
        """Take a notice off the hall screen before its time (nothing if it is not there)."""
        if self._notices.pop(key, None) is not None:
            self.refresh_hall_screen()

    def _help_notice(self, button: str, location: str, *, refresh: bool = True) -> None:
        """呼叫帮办 and where; a location the screen cannot show gives the button's id."""
        text = f"呼叫帮办 {location}"
        problem = self._unshowable(text)
        if problem is not None:
            log.warning("hall_screen.location_refused", button=button, error=problem)
            text = f"呼叫帮办 {button}"
        self._notices[f"help:{button}"] = (text, math.inf)
        if refresh:
            self.refresh_hall_screen()

    def _stop_notice(self, *, refresh: bool = True) -> None:
        """暂停取号 and why on the hall screen for as long as an emergency stop lasts."""
        stop = self._hall.stop
        if stop is None:
            self._notices.pop("stop", None)
        else:
            text = f"暂停取号 {stop[1]}"
            if self._unshowable(text) is not None:  # the central checks the font; still
                text = "暂停取号"
            self._notices["stop"] = (text, math.inf)
        if refresh:
            self.refresh_hall_screen()

    def _unshowable(self, text: str) -> str | None:
        """Why the hall screen cannot show ``text`` on a line, or None (also without screens)."""
        screens = self._devices.screens
        if screens is None:
            return None
        try:
            screens.check_text(text)
        except ValueError as exc:
            return str(exc)
        return None

    def expire_notices(self) -> None:
        now = self._monotonic()
        expired = [key for key, (_, until) in self._notices.items() if until <= now]
        for key in expired:
            del self._notices[key]
        if expired:
            self.refresh_hall_screen()

    def notices(self) -> list[str]:
        """The notices in force: 呼叫帮办 first, then the others, oldest first."""
        ordered = sorted(self._notices.items(), key=lambda item: not item[0].startswith("help:"))
        return [text for _, (text, _) in ordered]

    # -- screens and LEDs ----------------------------------------------------

    def refresh_hall_screen(self) -> None:
        """Calls, counts and notices, each part on its own (module docstring)."""
        screens = self._devices.screens
        if screens is None:
            return
        lines = []
        called = str if self._names is None else self._names.called_as
        for ticket, window in reversed(self._hall.recent_calls()):
            line = call_line(called(ticket), window)
            problem = self._unshowable(line)
            if problem is not None:
                log.error("hall_screen.line_refused", line=line, error=problem)
                continue
            lines.append(line)
        cases, done = self._hall.counts()
        counts = HallCounts(cases, done)
        notices = self.notices()
        for shown in range(len(notices), -1, -1):  # as many notices as fit the line
            try:
                screens.show_hall(lines, counts, notices[:shown])
            except ValueError as exc:
                if shown == 0:  # not the notices: nothing to leave out
                    log.error("device.output_failed", output="hall_screen", error=repr(exc))
                    return
                continue
            except Exception as exc:
                log.error("device.output_failed", output="hall_screen", error=repr(exc))
                return
            held = tuple(notices[shown:])
            if held and held != self._held:
                log.warning("hall_screen.notices_held", held=len(held),
                            detail="the notice line cannot take them together; shown later")
            self._held = held
            return

    def show_window(self, window: int, text: str) -> None:
        """``text`` on the window's LED bar and on its terminal's LED, each on its own."""
        config_window = next((w for w in self._hall.config.windows if w.number == window), None)
        if config_window is None:
            return
        screens, terminals = self._devices.screens, self._devices.terminals
        if screens is not None and config_window.screen is not None:
            self._safely("screen", screens.show_window, window, text)
        if terminals is not None and config_window.terminal is not None:
            self._safely("terminal", terminals.set_window_text, window, text)

    def _offer_rating(self, seq: int, window: int) -> None:
        """Light the window's rating pad when this event made the hall's rating offer."""
        offer = self._hall.pending_rating(window)
        terminals = self._devices.terminals
        if offer is None or offer.seq != seq or terminals is None:
            return
        if self._has_terminal(window):
            self._safely("rating_request", terminals.request_rating, window,
                         self._hall.config.ratings.pad_seconds)

    def _has_terminal(self, window: int) -> bool:
        return any(w.number == window and w.terminal is not None
                   for w in self._hall.config.windows)

    def _set_led(self, name: str, on: bool) -> None:
        gpio = self._hall.config.devices.gpio
        known = gpio is not None and (name in gpio.leds or any(
            f"help.{b.id}" == name and b.led_pin is not None for b in gpio.help_buttons))
        if self._devices.gpio is not None and known:
            self._safely("led", self._devices.gpio.set_led, name, on)

    @staticmethod
    def _safely(what: str, call: Callable[..., object], *args: object) -> None:
        """Device output must never undo or block a journaled event."""
        try:
            call(*args)
        except Exception as exc:
            log.error("device.output_failed", output=what, error=repr(exc))

    # -- tickets -------------------------------------------------------------

    def ticket_print(self, number: str) -> TicketPrint:
        """What the printer gets for a ticket issued today (also for ``reprint``)."""
        hall = self._hall
        ticket = hall.dispatcher.ticket(number)
        service = hall.config.service(ticket.service_id)
        wait = hall.issued_wait(ticket.number)
        content = TicketContent(
            hall_name=hall.config.site.name, service_name=service.name_zh,
            ticket_number=ticket.number,
            people_ahead=hall.dispatcher.people_ahead(number, hall.clock.now_ms()),
            wait_p50_minutes=None if wait is None else math.ceil(wait.p50_s / 60),
            wait_p90_minutes=None if wait is None else math.ceil(wait.p90_s / 60),
            issued_at=datetime.fromtimestamp(ticket.issued_ms / 1000, hall.config.site.tz),
            qr_payload=hall.progress_url(ticket.number),
            footer_lines=("请留意叫号，过号请重新取号",),
        )
        return TicketPrint(content, large_print=ticket.klass is TicketClass.PRIORITY)

    async def print_ticket(self, number: str) -> bool:
        """Print a ticket; False (logged) without a printer or when it could not."""
        printer = self._devices.printer
        if printer is None:
            return False
        try:
            return await printer.print_ticket(self.ticket_print(number))
        except Exception as exc:
            log.error("printer.failed", ticket=number, error=repr(exc))
            return False

    async def print_issued(self, issued: IssuedTicket) -> bool:
        """Print a new ticket; one that did not print is shown on the hall screen."""
        number = issued.ticket.number
        if await self.print_ticket(number):
            return True
        log.warning("ticket.unprinted", ticket=number)
        with contextlib.suppress(OutputRefused):  # logged; a ticket number always fits
            self.notice(f"unprinted:{number}", f"{number} 号 取号成功 请记住号码",
                        UNPRINTED_NOTICE_S)
        return False


__all__ = ["HELP_BUZZ_MS", "UNPRINTED_NOTICE_S", "HallOutputs", "call_line"]
