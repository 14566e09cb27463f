"""好差评 through the real daemon: the business system's hook over HTTP, the keypad's 办件 key
and the rating pad's follow-up reasons over a Modbus terminal bank on a pty, and the events
that reach the broker."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from edge.config import EdgeConfig
from edge.daemon import EdgeDaemon
from edge.device_set import Drivers
from edge.devices.base import InputQueue
from edge.devices_factory import build_devices
from edge.simhall import SimulatedHall, simulated_hall
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.terminal_events import Key
from tests.edge.central_probe import CentralProbe
from tests.edge.sites import free_port, http, keys, until
from tests.servers import MosquittoBroker

TOKEN = "business-system-token-01"


def test_cases_ratings_and_reasons_through_the_daemon(tmp_path: Path, clips_dir: Path,
                                                      mqtt_broker: MosquittoBroker) -> None:
    http_port = free_port()
    pins = MockFactory()

    def factory(config: EdgeConfig, inputs: InputQueue) -> Drivers:
        return build_devices(config, inputs, pin_factory=pins)

    with simulated_hall(tmp_path, clips_dir=clips_dir, http_port=http_port,
                        mqtt_port=mqtt_broker.port) as sim:
        text = sim.config_path.read_text(encoding="utf-8")
        text = text.replace("window_api = true\n", f'window_api = true\ncase_hook = true\n'
                                                   f'case_token = "{TOKEN}"\n')
        text = text.replace('name_en = "Social insurance"\n', 'name_en = "Social insurance"\n'
                            'item_code = "11442000MB2C92107F4442115001000"\n')
        sim.config_path.write_text(text + "\n[ratings]\npad_seconds = 20\n", encoding="utf-8")
        probe = CentralProbe(mqtt_broker.host, mqtt_broker.port, "sim-hall")
        try:
            asyncio.run(_scenario(sim, factory, http_port, probe))
        finally:
            probe.close()


async def _scenario(sim: SimulatedHall, factory: object, http_port: int,
                    probe: CentralProbe) -> None:
    daemon = EdgeDaemon(sim.config_path, device_factory=factory,  # type: ignore[arg-type]
                        install_signals=False)
    task = asyncio.create_task(daemon.run())
    base = f"http://127.0.0.1:{http_port}"
    try:
        await daemon.ready.wait()
        hall = daemon.hall
        assert hall is not None
        await keys(sim, 1, Key.DIGIT_1, Key.DIGIT_0, Key.DIGIT_1, Key.SIGN_IN)
        await keys(sim, 2, Key.DIGIT_2, Key.DIGIT_0, Key.DIGIT_2, Key.SIGN_IN)
        await until(lambda: hall.staff_at(1) == "101" and hall.staff_at(2) == "202", "sign in")
        for _ in range(2):
            hall.issue("shebao")
        await keys(sim, 1, Key.NEXT)
        await keys(sim, 2, Key.NEXT)
        await until(lambda: hall.dispatcher.window(2).current == "A002", "both called")

        # Window 1: staff type the 办件编号 on the keypad, then 办结; the citizen gives a
        # 差评 and presses two of the pad's follow-up reasons.
        await keys(sim, 1, *(Key(Key.DIGIT_0 + int(d)) for d in "2026000456"), Key.CASE)
        await until(lambda: hall.case_at(1) is not None, "case typed")
        await keys(sim, 1, Key.FINISH)
        await until(lambda: sim.terminals.rating_requested(1), "pad lit")
        sim.terminals.rate(1, 2)
        await until(lambda: hall.pending_rating(1) is None, "rated")
        sim.terminals.choose_reason(1, 2)
        sim.terminals.choose_reason(1, 5)

        # Window 2: the business system's hook opens and closes its 办件; the pad lights.
        headers = {"Authorization": f"Bearer {TOKEN}"}
        status, opened = await asyncio.to_thread(
            http, "POST", f"{base}/cases/open",
            {"window": 2, "case_no": "442000-2026-000789", "item_code": "ITEM-9",
             "item_name": "户口迁移", "department": "DEPT-1", "department_name": "公安分局"},
            headers=headers)
        assert (status, opened["opened"], opened["ticket"]) == (200, True, "A002")
        status, closed = await asyncio.to_thread(
            http, "POST", f"{base}/cases/close", {"window": 2, "case_no": "442000-2026-000789"},
            headers=headers)
        assert (status, closed["rating_offered"]) == (200, True)
        await until(lambda: sim.terminals.rating_requested(2), "pad 2 lit")
        sim.terminals.rate(2, 5)

        def journaled() -> list[mm.EventBody]:
            return [e.body for e in hall.journal.events()
                    if isinstance(e.body, mm.RatingGiven | mm.RatingReason)]

        await until(lambda: len(journaled()) == 4, "ratings and reasons journaled")
        bad, first, second, good = journaled()
        keypad_case = mm.CaseInfo(no="2026000456", item_code="11442000MB2C92107F4442115001000",
                                  item_name="社保医保", department=None, department_name=None,
                                  source="keypad")
        assert bad == mm.RatingGiven(ticket="A001", window=1, staff="101", value=2,
                                     case=keypad_case)
        assert (first, second) == (
            mm.RatingReason(ticket="A001", window=1, case_no="2026000456", reason="slow"),
            mm.RatingReason(ticket="A001", window=1, case_no="2026000456", reason="rules"))
        assert isinstance(good, mm.RatingGiven)
        assert good.case == mm.CaseInfo(no="442000-2026-000789", item_code="ITEM-9",
                                        item_name="户口迁移", department="DEPT-1",
                                        department_name="公安分局", source="hook")
        assert (good.ticket, good.staff, good.value, good.channel) == ("A002", "202", 5, "pad")

        # Every one reached the broker, in order (the two windows interleave).
        await until(lambda: hall.journal.acked_seq == hall.journal.last_seq, "all acked", 20)

        def sent(window: int) -> list[str]:
            return [e.type for e in probe.events if e.type.startswith(("case.", "rating."))
                    and getattr(e.body, "window", None) == window]

        assert sent(1) == ["case.opened", "case.closed", "rating.given", "rating.reason",
                           "rating.reason"]
        assert sent(2) == ["case.opened", "case.closed", "rating.given"]
    finally:
        daemon.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)
