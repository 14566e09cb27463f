"""A kiosk and window terminals driving a real edge daemon over its HTTP APIs."""

from __future__ import annotations

import random
import urllib.error
from dataclasses import dataclass, field
from http.client import HTTPException

from edge.config import load_config
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import http

# A request cut by kill -9 (or refused while the daemon restarts) was not acknowledged.
CUT = (OSError, urllib.error.URLError, HTTPException, ValueError)


@dataclass
class Kiosk:
    """What the citizens were told: ticket number -> (seq, service), and acked calls."""

    base: str
    rng: random.Random
    acknowledged: dict[str, tuple[int, str]] = field(default_factory=dict)
    calls: int = 0

    def sign_in(self) -> bool:
        for window in (1, 2):
            try:
                http("POST", f"{self.base}/windows/{window}/sign_in", {"staff": f"s{window}"})
            except CUT:
                return False
        return True

    def step(self) -> bool:
        """One citizen or one call; False when the daemon did not answer."""
        try:
            if self.rng.random() < 0.3:
                status, body = http("POST", f"{self.base}/windows/{self.rng.choice([1, 2])}/next",
                                    timeout=2)
                self.calls += status == 200
                return True
            service = self.rng.choice(["shebao", "shebao", "huji"])
            status, body = http("POST", f"{self.base}/tickets", {"service": service}, timeout=2)
        except CUT:
            return False
        assert status == 201, body
        assert body["number"] not in self.acknowledged, f"{body['number']} issued twice"
        self.acknowledged[body["number"]] = (body["seq"], service)
        return True


def assert_no_ticket_lost(kiosk: Kiosk, events: list[mm.Event]) -> None:
    """Acknowledged tickets are journaled with the same number and seq; no duplicate, no gap."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "gap in journal seq"
    issued = {e.body.ticket: (e.seq, e.body.service) for e in events
              if isinstance(e.body, mm.TicketIssued)}
    numbers = [e.body.ticket for e in events if isinstance(e.body, mm.TicketIssued)]
    assert len(numbers) == len(set(numbers)), "a ticket number was issued twice"
    for number, (seq, service) in kiosk.acknowledged.items():
        assert issued.get(number) == (seq, service), f"{number} lost or renumbered"
    for prefix in {n[0] for n in numbers}:
        counters = sorted(int(n[1:]) for n in numbers if n.startswith(prefix))
        assert counters == list(range(1, len(counters) + 1)), f"gap in {prefix} numbers"


__all__ = ["CUT", "Kiosk", "assert_no_ticket_lost", "load_config"]
