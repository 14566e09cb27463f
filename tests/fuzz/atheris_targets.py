"""Coverage-guided fuzzing with atheris (libFuzzer), one target per decoder.

The properties are the hypothesis ones (``tests/fuzz/harness.py``): only the
codec's own errors escape, a stream decoder never spins, valid frames are
found after garbage. atheris adds coverage feedback, so it digs into branches
random generation rarely reaches. Seed corpora come from the golden fixtures
in ``tests/protocols`` and the example configs in ``edge/examples``.

Usage (from the repository root)::

    python -m tests.fuzz.atheris_targets --list
    python -m tests.fuzz.atheris_targets led --seconds 60
    python -m tests.fuzz.atheris_targets all --seconds 600     # every target, 600 s each
    python -m tests.fuzz.atheris_targets mqtt,ingest --seconds 120

Each target keeps its corpus in ``WORKDIR/TARGET/corpus`` (default workdir
``build/fuzz``, git-ignored), so later runs start where earlier ones stopped;
crashes are written as ``WORKDIR/TARGET/crash-*`` and replayed with
``python -m tests.fuzz.atheris_targets TARGET --replay FILE``. The runner
prints one summary line per target (executions, exec/s, new coverage units,
crash or not) and exits 1 if any target crashed.

Crashes already pinned in ``tests/fuzz/test_regressions.py`` are tolerated
(``harness.KNOWN_FINDINGS``) so a run hunts for new ones; set
``ONEDOOR_FUZZ_KNOWN=fail`` to stop at them too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WORKDIR = REPO / "build" / "fuzz"
INSTRUMENTED = ["firmware_protocols", "edge", "central", "fastpath"]
MAX_LEN = 8192  # bytes per input; the largest payload limit below is 8 KiB for events
PER_INPUT_TIMEOUT_S = 10  # libFuzzer reports a slower input as a hang ("timeout-*")

OneInput = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    summary: str
    make: Callable[[], OneInput]  # imports the code under test: call inside instrumentation
    seeds: Callable[[], list[bytes]]


# --------------------------------------------------------------------------- helpers


def _tolerating_known(one_input: OneInput, keep: Path | None = None) -> OneInput:
    """Let a known finding pass (see the module docstring); anything else crashes.

    The first input that hits each known finding is kept as ``keep/known-F<n>``
    (the summary line counts them), so a run still shows what it ran into.
    """
    from tests.fuzz.harness import KNOWN_ENV, known_finding

    strict = os.environ.get(KNOWN_ENV) == "fail"
    seen: set[str] = set()

    def run(data: bytes) -> None:
        try:
            one_input(data)
        except Exception as exc:
            finding = None if strict else known_finding(exc)
            if finding is None:
                raise
            if keep is not None and finding.id not in seen:
                seen.add(finding.id)
                (keep / f"known-{finding.id}").write_bytes(data)

    return run


def _chunked(data: bytes) -> tuple[list[bytes], bytes]:
    """The first byte picks the chunk size (0: all at once), the rest is the wire."""
    if not data:
        return [b""], b""
    size, wire = data[0] % 17, data[1:]
    if not size:
        return [wire], wire
    return [wire[i : i + size] for i in range(0, len(wire), size)] or [b""], wire


def _with_chunking(wires: list[bytes]) -> list[bytes]:
    return [bytes([mode]) + wire for wire in wires for mode in (0, 1, 7)]


def _seeds(family: str) -> Callable[[], list[bytes]]:
    def load() -> list[bytes]:
        from tests.fuzz.harness import golden_seeds

        return golden_seeds()[family]

    return load


# --------------------------------------------------------------------------- codecs


def _escpos() -> OneInput:
    from firmware_protocols import escpos
    from tests.fuzz.harness import drain

    def one(data: bytes) -> None:
        chunks, wire = _chunked(data)
        decoder = escpos.EscPosDecoder(chinese_mode_at_power_on=len(wire) % 2 == 1)
        drain(decoder, escpos.NEED_DATA, chunks)
        assert decoder.pending_bytes <= 5 + 0xFFFF + escpos.MAX_LINE_BYTES

    return one


def _escpos_status() -> OneInput:
    from firmware_protocols import escpos
    from firmware_protocols.errors import RemoteProtocolError

    def one(data: bytes) -> None:
        if not data:
            return
        request = escpos.StatusRequest(data[0] % 4 + 1)
        reply: bytes | int = data[1:] if len(data) != 3 else int.from_bytes(data[1:], "big") - 300
        with contextlib.suppress(RemoteProtocolError):
            escpos.parse_status_reply(request, reply)

    return one


def _led() -> OneInput:
    from firmware_protocols import led
    from tests.fuzz.harness import drain, led_swallowing_frame

    def one(data: bytes) -> None:
        chunks, wire = _chunked(data)
        decoder = led.LedDecoder()
        drain(decoder, led.NEED_DATA, chunks, after=decoder.line_idle)
        assert decoder.pending_bytes == 0
        # Resynchronisation: a valid frame after this input is always found.
        frame = led.Ping(1, len(wire) & 0xFF)
        tail = led.encode(frame)
        if not led_swallowing_frame(wire + tail, len(wire)):
            decoder = led.LedDecoder()
            result = drain(decoder, led.NEED_DATA, [*chunks, tail], after=decoder.line_idle)
            assert result.events[-1:] == [frame], result.events[-3:]

    return one


def _vendor() -> OneInput:
    from firmware_protocols import vendor_frame as vf
    from tests.fuzz.harness import drain, vendor_swallowing_frame

    def one(data: bytes) -> None:
        chunks, wire = _chunked(data)
        decoder = vf.VendorDecoder()
        drain(decoder, vf.NEED_DATA, chunks)
        assert decoder.buffered < vf.MAX_FRAME
        frame = vf.Poll(3, len(wire) & 0xFF)
        tail = vf.encode(frame)
        if not vendor_swallowing_frame(wire + tail, len(wire)):
            result = drain(vf.VendorDecoder(), vf.NEED_DATA, [*chunks, tail])
            assert result.events[-1:] == [frame], result.events[-3:]

    return one


def _modbus_response() -> OneInput:
    from firmware_protocols import modbus_terminal as mt
    from firmware_protocols.errors import RemoteProtocolError

    def one(data: bytes) -> None:
        try:
            size = mt.response_size(data)
        except RemoteProtocolError:
            return
        for frame in (data, data[:size] if size is not None else data):
            with contextlib.suppress(RemoteProtocolError):
                mt.decode_response(frame)

    return one


def _modbus_registers() -> OneInput:
    from firmware_protocols import modbus_terminal as mt
    from firmware_protocols.errors import RemoteProtocolError

    def one(data: bytes) -> None:
        if len(data) < 8:
            return
        address = data[0] % 247 + 1
        cursor = None
        if data[1] & 1:
            words = [int.from_bytes(data[i : i + 2], "big") for i in (2, 4, 6)]
            cursor = mt.PollCursor(*words)
        registers = [int.from_bytes(data[i : i + 2], "big") for i in range(8, len(data) - 1, 2)]
        try:
            result = mt.decode_poll_block(address, registers[: mt.POLL_BLOCK_COUNT], cursor)
        except RemoteProtocolError:
            pass
        else:
            assert not mt.decode_poll_block(address, registers[:16], result.cursor).events
        for call in (
            lambda: mt.decode_led_text(registers),
            lambda: mt.decode_input(address, data[2], registers[0] if registers else 0),
        ):
            with contextlib.suppress(RemoteProtocolError):
                call()

    return one


def _modbus_register_seeds() -> list[bytes]:
    from tests.protocols.test_modbus_terminal import GOLDEN_POLL_BLOCK

    block = b"".join(value.to_bytes(2, "big") for value in GOLDEN_POLL_BLOCK)
    return [bytes([2, 0]) + bytes(6) + block, bytes([2, 1, 0xA1, 0x7E, 0, 1, 0, 0]) + block]


# --------------------------------------------------------------------------- MQTT, config, ingest


def _split_publish(data: bytes) -> tuple[str, bytes]:
    topic, _, payload = data.partition(b"\n")
    return topic.decode("utf-8", "replace"), payload


def _mqtt_seeds() -> list[bytes]:
    from tests.fuzz.harness import golden_mqtt

    return [topic.encode() + b"\n" + payload for topic, payload in golden_mqtt()]


def _mqtt() -> OneInput:
    from firmware_protocols import mqtt_messages as mm
    from firmware_protocols.mqtt_topics import InvalidMessage

    def one(data: bytes) -> None:
        topic, payload = _split_publish(data)
        try:
            incoming = mm.decode_publish(topic, payload)
        except InvalidMessage:
            return
        again = mm.decode(incoming.kind, mm.encode(incoming.message), site_id=incoming.site_id)
        assert again == incoming.message

    return one


def _edge_config() -> OneInput:
    from edge.config import parse_config
    from edge.errors import ConfigInvalid

    examples = REPO / "edge" / "examples"

    def one(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        problems: tuple[str, ...] = ("ok: loaded",)
        try:
            parse_config(text, source="fuzz.toml", base_dir=examples,
                         check_files=len(data) % 2 == 0)  # fmt: skip
        except ConfigInvalid as exc:
            problems = exc.errors
        assert problems  # a refusal names at least one problem, each with its key path
        assert all(": " in problem for problem in problems)

    return one


def _edge_config_seeds() -> list[bytes]:
    from tests.fuzz.harness import base_config_text, edge_example_texts

    return [text.encode("utf-8") for text in (*edge_example_texts(), base_config_text())]


def _ingest() -> OneInput:
    from datetime import UTC, datetime

    from central.ingest import Received
    from tests.fuzz.test_ingest import _processor

    workdir = Path(tempfile.mkdtemp(prefix="onedoor-fuzz-ingest-"))
    processor, _ = _processor(f"sqlite:///{workdir}/central.db", workdir)
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def one(data: bytes) -> None:
        # Up to three publishes, separated by a NUL line: one bad publish in a batch
        # must not break the batch.
        batch = [Received(*_split_publish(part), now) for part in data.split(b"\n\x00\n")[:3]]
        processor.process(batch, now)

    return one


def _ingest_seeds() -> list[bytes]:
    seeds = _mqtt_seeds()
    uplink = [s for s in seeds if not s.split(b"\n", 1)[0].endswith((b"/ack", b"/cmd/announce"))]
    return [*uplink, b"\n\x00\n".join(uplink[:3])]


def _quiet_logs() -> None:
    """The ingest logs every reject: at tens of thousands of execs/s that is the bottleneck."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    logging.disable(logging.CRITICAL)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("escpos", "EscPosDecoder stream (bounded work)", _escpos, _seeds("escpos")),
        Target("escpos_status", "parse_status_reply", _escpos_status, _seeds("escpos_status")),
        Target("led", "LedDecoder stream + resync", _led, _seeds("led")),
        Target("vendor", "VendorDecoder stream + resync", _vendor, _seeds("vendor")),
        Target("modbus_response", "response_size + decode_response", _modbus_response,
               _seeds("modbus")),
        Target("modbus_registers", "decode_poll_block, decode_led_text, decode_input",
               _modbus_registers, _modbus_register_seeds),
        Target("mqtt", "mqtt_messages.decode_publish", _mqtt, _mqtt_seeds),
        Target("edge_config", "edge.config.parse_config", _edge_config, _edge_config_seeds),
        Target("ingest", "central IngestProcessor.process on SQLite", _ingest, _ingest_seeds),
    )
}  # fmt: skip

_CHUNKED = {"escpos", "led", "vendor"}


# --------------------------------------------------------------------------- running


def _prepare(target: Target, workdir: Path) -> tuple[Path, Path]:
    home = workdir / target.name
    corpus, seeds = home / "corpus", home / "seeds"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds.mkdir(parents=True, exist_ok=True)
    wires = target.seeds()
    if target.name in _CHUNKED:
        wires = _with_chunking(wires)
    for index, seed in enumerate(wires):
        (seeds / f"golden-{index:03d}").write_bytes(seed)
    return corpus, seeds


def fuzz_one(name: str, seconds: int, workdir: Path, extra: list[str]) -> None:
    """Run one target in this process (libFuzzer exits the process when done)."""
    import atheris  # type: ignore[import-untyped,unused-ignore]

    target = TARGETS[name]
    _quiet_logs()
    # Instrument before anything imports the code under test (the seeds import it too).
    with atheris.instrument_imports(include=INSTRUMENTED):
        one_input = _tolerating_known(target.make(), keep=workdir / name)
    corpus, seeds = _prepare(target, workdir)
    argv = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-timeout={PER_INPUT_TIMEOUT_S}",
        f"-max_len={MAX_LEN}",
        "-rss_limit_mb=3072",
        "-print_final_stats=1",
        f"-artifact_prefix={workdir / name}/",
        *extra,
        str(corpus),
        str(seeds),
    ]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def replay(name: str, files: list[str]) -> None:
    """Run inputs through a target once, without libFuzzer (a crash shows its traceback)."""
    _quiet_logs()
    one_input = _tolerating_known(TARGETS[name].make())
    for file in files:
        one_input(Path(file).read_bytes())
        print(f"{file}: ok")


_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.MULTILINE)


def fuzz_all(seconds: int, workdir: Path, names: list[str]) -> int:
    """Each target in a fresh process, ``seconds`` each; a summary line per target."""
    failed = 0
    print(f"{'target':18} {'seconds':>7} {'execs':>10} {'exec/s':>8} {'new units':>9}  result")
    for name in names:
        log_path = workdir / name / "fuzz.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        for stale in log_path.parent.glob("known-F*"):  # the summary reports this run only
            stale.unlink()
        with log_path.open("w") as log:
            done = subprocess.run(
                [sys.executable, "-m", "tests.fuzz.atheris_targets", name,
                 "--seconds", str(seconds), "--workdir", str(workdir)],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False,
                timeout=seconds + 600,
            )  # fmt: skip
        text = log_path.read_text(errors="replace")
        stats = {key: int(value) for key, value in _STAT.findall(text)}
        crashed = done.returncode != 0
        failed += crashed
        artifacts = [line.split("Test unit written to ")[-1] for line in text.splitlines()
                     if "Test unit written to" in line]  # fmt: skip
        result = f"CRASH (exit {done.returncode}) {' '.join(artifacts)}" if crashed else "ok"
        known = sorted(p.name for p in (workdir / name).glob("known-F*"))
        if known:
            result += f" (known: {', '.join(known)})"
        print(f"{name:18} {seconds:>7} {stats.get('number_of_executed_units', 0):>10} "
              f"{stats.get('average_exec_per_sec', 0):>8} {stats.get('new_units_added', 0):>9}  "
              f"{result}  (log {log_path})", flush=True)  # fmt: skip
    return 1 if failed else 0


def _have_atheris() -> bool:
    try:
        import atheris  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
    except ImportError:
        print("atheris is not installed: .venv/bin/pip install 'atheris>=3.0,<4'", file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz.atheris_targets", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("target", nargs="?", help="a target, several joined by commas, or 'all'")
    parser.add_argument("--seconds", type=int, default=60, help="fuzzing time per target")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="run these inputs once")
    args, extra = parser.parse_known_args(argv)
    if args.list or not args.target:
        for target in TARGETS.values():
            print(f"{target.name:18} {target.summary}")
        return 0
    if args.target == "all" or "," in args.target:
        if not _have_atheris():
            return 2
        names = list(TARGETS) if args.target == "all" else args.target.split(",")
        unknown = [name for name in names if name not in TARGETS]
        if unknown:
            parser.error(f"unknown targets {unknown}; see --list")
        return fuzz_all(args.seconds, args.workdir, names)
    if args.target not in TARGETS:
        parser.error(f"unknown target {args.target!r}; see --list")
    if args.replay:
        replay(args.target, args.replay)
        return 0
    if not _have_atheris():
        return 2
    fuzz_one(args.target, args.seconds, args.workdir, extra)
    return 0  # pragma: no cover - libFuzzer exits the process


if __name__ == "__main__":
    sys.exit(main())
