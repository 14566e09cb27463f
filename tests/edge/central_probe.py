"""A minimal stand-in for the central service over the real broker (tests only).

It subscribes to one site's edge->central topics, decodes every payload with
the contract codec, records what arrived, and acknowledges the highest
contiguous event seq, as the real central does after committing. Like the real
central for a site it knows nothing of, it grants a device that waits for its
epoch epoch 0 with an empty restore (``grant=False``: it never does).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from firmware_protocols import mqtt_messages as mm
from firmware_protocols import mqtt_topics as topics


class CentralProbe:
    def __init__(self, host: str, port: int, site_id: str, *, ack: bool = True,
                 grant: bool = True) -> None:
        self.site_id = site_id
        self.ack_enabled = ack
        self.grant_enabled = grant
        self.diagnostics: list[mm.Diagnostics] = []
        self.events: list[mm.Event] = []
        self.states: list[mm.State] = []
        self.telemetry: list[mm.Telemetry] = []
        self.results: list[mm.CmdResult] = []
        self.advice: list[mm.Advice] = []
        self.invalid: list[str] = []
        self._lock = threading.Lock()
        self._committed: set[int] = set()
        self._acked = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"central-probe-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.connect(host, port, 30)
        for kind in ("state", "event", "telemetry", "cmd_result", "diag", "advice"):
            self.client.subscribe(f"{topics.ROOT}/{site_id}/{kind}", qos=1)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, _c: object, _u: object, message: paho.MQTTMessage) -> None:
        try:
            incoming = mm.decode_publish(message.topic, message.payload)
        except topics.InvalidMessage as exc:
            with self._lock:
                self.invalid.append(str(exc))
            return
        body = incoming.message
        with self._lock:
            if isinstance(body, mm.Event):
                self.events.append(body)
                self._committed.add(body.seq)
                while self._acked + 1 in self._committed:
                    self._acked += 1
                ack = self._acked
            elif isinstance(body, mm.State):
                self.states.append(body)
            elif isinstance(body, mm.Telemetry):
                self.telemetry.append(body)
            elif isinstance(body, mm.CmdResult):
                self.results.append(body)
            elif isinstance(body, mm.Diagnostics):
                self.diagnostics.append(body)
            elif isinstance(body, mm.Advice):
                self.advice.append(body)
        if isinstance(body, mm.Event) and self.ack_enabled:
            self.client.publish(topics.ack_topic(self.site_id),
                                mm.encode(mm.Ack(site=self.site_id, seq=ack)), qos=1)
        if (isinstance(body, mm.State) and body.status == "online" and self.grant_enabled
                and body.device is not None and body.epoch is None):
            now = int(time.time() * 1000)
            for message in (
                    mm.Lease(site=self.site_id, device=body.device, epoch=0, ts=now),
                    mm.Restore(site=self.site_id, device=body.device, epoch=0, day=None, part=1,
                               parts=1, counters=[], skipped=0, tickets=[], windows=[],
                               ts=now)):
                publish = mm.to_publish(message)
                self.client.publish(publish.topic, publish.payload, qos=1)  # not retained

    def publish_raw(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def command(self, args: mm.CommandArgs, *, ttl_ms: int = 60_000,
                issued_ms: int | None = None) -> uuid.UUID:
        now = issued_ms if issued_ms is not None else int(time.time() * 1000)
        cmd = mm.Cmd(site=self.site_id, id=uuid.uuid4(), issued_ts=now,
                      expires_ts=now + ttl_ms, args=args)
        publish = mm.to_publish(cmd)
        self.publish_raw(publish.topic, publish.payload)
        return cmd.id

    def seqs(self) -> list[int]:
        with self._lock:
            return [e.seq for e in self.events]

    def result(self, command_id: uuid.UUID) -> mm.CmdResult | None:
        with self._lock:
            return next((r for r in self.results if r.id == command_id), None)


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)
