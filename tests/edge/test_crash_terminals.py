"""Crash test: kill the daemon between a keypad press's journaled effect and its ack.

A real daemon subprocess polls a simulated terminal bank on a pty. The test
fault injection ``ONEDOOR_TEST_FAULT_EXIT_AFTER_TERMINAL_INPUT`` makes it die
(``os._exit``, as abrupt as kill -9: no cleanup, no ack) right after the
effect of a terminal input (NEXT -> ``ticket.called``) is committed. The
terminal still holds the press; the restarted daemon must acknowledge it
without calling a second ticket, and handle the next press normally.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.config import load_config
from edge.inputs import TEST_FAULT_EXIT_AFTER_INPUT_ENV
from edge.journal import Journal
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.simulators.modbus_bank import ModbusTerminalBank
from firmware_protocols.simulators.serial_link import PtyLink
from firmware_protocols.simulators.vendor_bank import VendorTerminalBank
from firmware_protocols.terminal_events import Key
from tests.edge.sites import (
    BASE_WINDOWS,
    http,
    site_toml,
    start_daemon,
    stop_daemon,
    wait_http,
)

WINDOWS = BASE_WINDOWS.replace("ratio_cap = 2\n", "ratio_cap = 2\nterminal = 1\n").replace(
    "services = { huji = 2, shebao = 1 }\n", "services = { huji = 2, shebao = 1 }\nterminal = 2\n"
)


def quiet_port() -> int:
    """A free port below the ephemeral range that ``free_port`` (bind to 0) draws from.

    Tests of other suites running at the same time kill and restart daemons on their
    ``free_port`` ports; one of those, free for a moment, would be handed out again.
    """
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(20_000, 30_000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000..29999")


def called(config_path: Path) -> list[tuple[str, int]]:
    config = load_config(config_path)
    with Journal(config.paths.journal, config.site.id, read_only=True) as journal:
        return [
            (e.body.ticket, e.body.window)
            for e in journal.events()
            if isinstance(e.body, mm.TicketCalled)
        ]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("kind", ["modbus", "vendor"])
def test_a_press_journaled_but_not_acknowledged_is_not_handled_again(
    tmp_path: Path, kind: str
) -> None:
    port = quiet_port()
    with PtyLink() as link:
        bank: ModbusTerminalBank | VendorTerminalBank
        if kind == "modbus":
            bank = ModbusTerminalBank(link, [1, 2])
        else:
            bank = VendorTerminalBank(link, [1, 2])
        with bank:

            def pending() -> int:
                if isinstance(bank, ModbusTerminalBank):
                    return bank.pending_inputs(1)
                return bank.pending_reports(1)

            config_path = site_toml(
                tmp_path,
                http_port=port,
                windows=WINDOWS,
                extra=(
                    f'[devices.terminals]\nkind = "{kind}"\nport = "{link.port_name}"\n'
                    "poll_ms = 20\ntimeout_ms = 100\n"
                    # A pty keeps no parity, and a daemon in another process that reopens
                    # it at 8E1 is refused by the kernel (serial_link explains): 8N1 here.
                    'parity = "N"\n'
                ),
            )
            log_path = tmp_path / "daemon.log"
            base = f"http://127.0.0.1:{port}"
            process = start_daemon(
                config_path, env={TEST_FAULT_EXIT_AFTER_INPUT_ENV: "1"}, log_path=log_path
            )
            try:
                wait_http(port, process)
                assert http("POST", f"{base}/windows/1/sign_in", {"staff": "s1"})[0] == 200
                for _ in range(2):
                    assert http("POST", f"{base}/tickets", {"service": "shebao"})[0] == 201
                bank.press(1, Key.NEXT)
                assert process.wait(timeout=15) == 86  # died right after the commit
            finally:
                stop_daemon(process)
            assert called(config_path) == [("A001", 1)]
            # The ack rides on the terminal's next poll, which never came: still latched.
            assert pending() == 1

            process = start_daemon(config_path, log_path=log_path)
            try:
                wait_http(port, process)
                wait_for(lambda: pending() == 0, "the press acknowledged after the restart")
                time.sleep(0.5)  # a few more polls: nothing else may happen
                assert called(config_path) == [("A001", 1)], "the press was handled twice"

                bank.press(1, Key.NEXT)  # the bus goes on normally
                wait_for(lambda: len(called(config_path)) == 2, "the next press handled")
                time.sleep(0.3)
                assert called(config_path) == [("A001", 1), ("A002", 1)]
                assert pending() == 0
            finally:
                assert stop_daemon(process) == 0
