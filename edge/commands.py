"""The central's commands (``cmd/{name}``), run against the hall.

:class:`RemoteCommands` is the uplink's command handler: it returns when the
command was carried out and raises :class:`~edge.errors.CommandFailed` with a
reason otherwise; the uplink answers ``cmd_result`` either way.

* ``announce``: the text is said ``repeat`` times after any ticket call waiting,
  and shown on the hall screen for two minutes; whatever part cannot be done
  (no voice, text the LED font lacks, the voice queue full) is the error.
* ``reprint``: a waiting ticket of today, on the hall's printer.
* ``screen_notice``: a notice on the hall screen for ``duration_s``.
* ``reload_config``: the config file, as on SIGHUP, optionally only at a version.
* ``diagnostics``: the device's status and its last log lines, answered on ``diag``
  (:mod:`edge.diagnostics`); the handler returns that message for the uplink to send.
* ``issuing``: an emergency stop (台风, an outage) and its lifting: no ticket is issued
  meanwhile, the tickets issued are served; the reason goes on the hall screen, to
  the kiosk and to the progress pages (:meth:`edge.hall.Hall.stop_issuing`).
* ``calendar``: the city calendar's dated days over the site's own
  (:meth:`edge.hall.Hall.set_calendar`); a calendar with a bad date is refused whole.
* ``bookings``: the site's bookings (预约) of the day, checked in at the kiosk by code
  (:meth:`edge.hall.Hall.set_bookings`); each version replaces the one before.
"""

from __future__ import annotations

from collections.abc import Callable

from edge.device_set import DeviceSet
from edge.errors import CommandFailed, CommandRejected, OutputRefused
from edge.hall import Hall
from edge.outputs import HallOutputs
from fastpath.types import TicketState
from firmware_protocols import mqtt_messages as mm

ANNOUNCE_NOTICE_S = 120

Reloader = Callable[[str | None], mm.Event]
"""Reloads the config file expecting a version (or any); the applied/rejected event."""
Diagnose = Callable[[mm.Cmd, mm.DiagnosticsArgs], mm.Diagnostics]
"""The ``diag`` answer to a ``cmd/diagnostics``."""


class RemoteCommands:
    """Runs one command at a time against the hall (module docstring)."""

    def __init__(self, hall: Hall, devices: DeviceSet, outputs: HallOutputs,
                 reload: Reloader, diagnose: Diagnose) -> None:
        self._hall = hall
        self._devices = devices
        self._outputs = outputs
        self._reload = reload
        self._diagnose = diagnose

    async def __call__(self, cmd: mm.Cmd) -> mm.Message | None:
        args = cmd.args
        if self._hall.journal.numbering == "replaced" and not isinstance(args,
                                                                         mm.DiagnosticsArgs):
            # The site's devices share one broker session: this one may be handed a command
            # meant for the device that replaced it.
            raise CommandFailed("本机已被替换，指令未执行 / this device was replaced; the "
                                "command was not run")
        match args:
            case mm.AnnounceArgs():
                self._announce(cmd, args)
            case mm.ReprintArgs():
                await self._reprint(args.ticket)
            case mm.ScreenNoticeArgs():
                if self._devices.screens is None:
                    raise CommandFailed("this site has no LED screens")
                if args.screen not in (None, "screen.hall", "hall"):
                    raise CommandFailed(f"unknown screen {args.screen!r}; notices go to the "
                                        "hall screen")
                try:
                    self._outputs.notice(f"notice:{cmd.id}", args.text, args.duration_s)
                except OutputRefused as exc:
                    raise CommandFailed(str(exc)) from None
            case mm.ReloadConfigArgs():
                event = self._reload(args.version)
                if isinstance(event.body, mm.ConfigRejected):
                    raise CommandFailed("; ".join(event.body.errors))
            case mm.DiagnosticsArgs():
                return self._diagnose(cmd, args)
            case mm.IssuingArgs():
                try:
                    if args.reason is not None:
                        self._hall.stop_issuing(args.stop, args.reason)
                    else:
                        self._hall.resume_issuing(args.stop)
                except CommandRejected as exc:
                    raise CommandFailed(str(exc)) from None
            case mm.BookingsArgs():
                try:
                    self._hall.set_bookings(args.version, args.day, list(args.bookings))
                except CommandRejected as exc:
                    raise CommandFailed(str(exc)) from None
            case mm.CalendarArgs():
                try:
                    self._hall.set_calendar(args.version, list(args.holidays),
                                            list(args.workdays), list(args.special))
                except CommandRejected as exc:
                    raise CommandFailed(str(exc)) from None
        return None

    def _announce(self, cmd: mm.Cmd, args: mm.AnnounceArgs) -> None:
        announcer, screens = self._devices.announcer, self._devices.screens
        if announcer is None and screens is None:
            raise CommandFailed("no voice driver and no hall screen")
        problems = []
        if announcer is not None:
            try:
                announcer.announce_text(args.text, args.repeat)
            except ValueError as exc:
                problems.append(f"not said: {exc}")
        if screens is not None:
            try:
                self._outputs.notice(f"announce:{cmd.id}", args.text, ANNOUNCE_NOTICE_S)
            except OutputRefused as exc:
                problems.append(f"not shown: {exc}")
        if announcer is None:
            problems.append("shown on the hall screen; this site has no voice driver")
        if problems:
            raise CommandFailed("; ".join(problems))

    async def _reprint(self, number: str) -> None:
        try:
            ticket = self._hall.dispatcher.ticket(number)
        except ValueError:
            raise CommandFailed(f"unknown ticket {number} today") from None
        if ticket.state is not TicketState.WAITING:
            raise CommandFailed(f"ticket {number} is {ticket.state.value}")
        if self._devices.printer is None:
            raise CommandFailed("this site has no printer")
        if not await self._outputs.print_ticket(number):
            raise CommandFailed(f"printer could not print {number}")


__all__ = ["ANNOUNCE_NOTICE_S", "RemoteCommands"]
