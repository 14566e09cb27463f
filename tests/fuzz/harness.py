"""What the fuzz harnesses share: budgets, bounded stream drivers, resync oracles, seeds.

Both the hypothesis tests (``tests/fuzz/test_*.py``) and the atheris targets
(``tests/fuzz/atheris_targets.py``) call the functions here, so a property is
written once. The properties (docs/reliability/bad_input.md):

* only the codec's own errors escape: subclasses of
  :class:`~firmware_protocols.errors.ProtocolError` for the codecs and the MQTT
  contract, :class:`~edge.errors.ConfigInvalid` for the edge config;
* no hang: every ``next_event()`` call must consume input or return, so a
  stream decoder gets at most :func:`call_budget` calls for an input (a decoder
  that spins fails with :class:`WorkBoundExceeded`, not with a timeout);
* resynchronisation: valid frames after garbage are still decoded.

Budgets: the hypothesis profile comes from ``ONEDOOR_FUZZ_PROFILE`` (``ci``,
the default, small and derandomised; ``fuzz``, long and random). The profiles
are registered by ``tests/fuzz/conftest.py`` through :func:`register_profiles`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from hypothesis import HealthCheck, settings

from firmware_protocols.crc import crc16_modbus, sum8
from firmware_protocols.errors import ProtocolError

PROFILE_ENV: Final = "ONEDOOR_FUZZ_PROFILE"
CI_PROFILE: Final = "ci"
LONG_PROFILE: Final = "fuzz"

# Examples per test in each profile; a test may scale them (slow targets take fewer).
_EXAMPLES: Final = {CI_PROFILE: 150, LONG_PROFILE: 20_000}
# pytest-timeout per fuzz test: a hang fails the test instead of stalling CI.
_TEST_TIMEOUT_S: Final = {CI_PROFILE: 120, LONG_PROFILE: 6 * 3600}


def register_profiles() -> None:
    """Register the ``ci`` and ``fuzz`` hypothesis profiles (idempotent; loads neither).

    The profiles are applied per test through :func:`fuzz_settings`, never
    loaded globally, so the rest of the suite keeps its own settings.
    """
    quiet = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    settings.register_profile(
        CI_PROFILE,
        max_examples=_EXAMPLES[CI_PROFILE],
        deadline=None,
        derandomize=True,  # the same examples on every CI run: a red run is a real finding
        database=None,
        print_blob=True,
        suppress_health_check=quiet,
    )
    settings.register_profile(
        LONG_PROFILE,
        max_examples=_EXAMPLES[LONG_PROFILE],
        deadline=None,
        print_blob=True,
        suppress_health_check=quiet,
    )


def active_profile() -> str:
    name = os.environ.get(PROFILE_ENV, CI_PROFILE)
    if name not in _EXAMPLES:
        raise ValueError(f"{PROFILE_ENV}={name!r}: expected one of {sorted(_EXAMPLES)}")
    return name


def fuzz_settings(scale: float = 1.0) -> settings:
    """The active profile, with ``scale`` times its examples (slow targets use < 1)."""
    register_profiles()
    base = settings.get_profile(active_profile())
    return settings(base, max_examples=max(20, int(base.max_examples * scale)))


def test_timeout() -> int:
    """Seconds for ``pytest.mark.timeout`` on a fuzz test in the active profile."""
    return _TEST_TIMEOUT_S[active_profile()]


test_timeout.__test__ = False  # type: ignore[attr-defined]  # not a test despite the name


# --------------------------------------------------------------------------- stream driving


class StreamDecoder(Protocol):
    def receive_data(self, data: bytes) -> None: ...

    def next_event(self) -> object: ...


class WorkBoundExceeded(AssertionError):
    """A decoder was called more often than its input can justify: it spins."""


def call_budget(total_bytes: int, chunks: int) -> int:
    """Most ``next_event()`` calls an input may take.

    Every call returns an event, raises after dropping at least one byte, or
    returns NEED_DATA (once per chunk, plus once after a line-idle). A command
    can yield at most two events (a pending text line, then the command), so
    three calls per byte is generous and still linear.
    """
    return 3 * total_bytes + 2 * chunks + 8


@dataclass(slots=True)
class Drained:
    events: list[object] = field(default_factory=list)
    errors: list[ProtocolError] = field(default_factory=list)
    calls: int = 0


def drain(
    decoder: StreamDecoder,
    need_data: object,
    chunks: Sequence[bytes],
    *,
    after: Callable[[], None] | None = None,
) -> Drained:
    """Feed ``chunks`` one at a time and take every event, counting the allowed errors.

    ``after`` runs once all chunks are in (e.g. ``LedDecoder.line_idle``) and the
    decoder is drained again. Any exception but a ``ProtocolError`` propagates:
    that is the finding. Raises :class:`WorkBoundExceeded` if the decoder spins.
    """
    out = Drained()
    budget = call_budget(sum(len(c) for c in chunks), len(chunks))

    def pump() -> None:
        while True:
            out.calls += 1
            if out.calls > budget:
                raise WorkBoundExceeded(
                    f"{type(decoder).__name__}: {out.calls} next_event() calls for "
                    f"{sum(len(c) for c in chunks)} bytes in {len(chunks)} chunks"
                )
            try:
                event = decoder.next_event()
            except ProtocolError as exc:
                out.errors.append(exc)
                continue
            if event is need_data:
                return
            out.events.append(event)

    for chunk in chunks:
        decoder.receive_data(chunk)
        pump()
    if after is not None:
        after()
        pump()
    return out


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length, sorted, deduplicated)."""
    if not data:
        return [b""]
    points = sorted({c % len(data) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# --------------------------------------------------------------------------- resync oracles
# A frame after garbage can only be lost when garbage plus the frame's first bytes form
# another frame whose check value happens to match (sum8 on the vendor bus: 1 in 256
# after the end byte matched). The oracles find such a span so a test can discard that
# example: it is the check value's strength, not a decoder bug.


def vendor_swallowing_frame(data: bytes, boundary: int) -> bool:
    """Whether a checksum-valid vendor frame starts before ``boundary`` and ends after it."""
    for pos in range(boundary):
        if data[pos] != 0x68 or pos + 4 > len(data):
            continue
        length = data[pos + 1]
        if data[pos + 2] != length or data[pos + 3] != 0x68 or not 2 <= length <= 162:
            continue
        total = 4 + length + 2
        end = pos + total
        if end <= boundary or end > len(data) or data[end - 1] != 0x16:
            continue
        if sum8(data[pos + 4 : pos + 4 + length]) == data[end - 2]:
            return True
    return False


def led_swallowing_frame(data: bytes, boundary: int) -> bool:
    """Whether a CRC-valid LED frame starts before ``boundary`` and ends after it."""
    pos = data.find(b"\xaa\x55")
    while 0 <= pos < boundary:
        if pos + 7 <= len(data):
            length = data[pos + 5] << 8 | data[pos + 6]
            end = pos + 7 + length + 2
            if length <= 1024 and boundary < end <= len(data):
                body = data[pos + 2 : pos + 7 + length]
                if crc16_modbus(body) == data[end - 2] | data[end - 1] << 8:
                    return True
        pos = data.find(b"\xaa\x55", pos + 1)
    return False


def escpos_garbage_is_closed(garbage: bytes) -> bool:
    """Whether an ``ESC @`` sent after ``garbage`` is still read as a command.

    ESC/POS has no frame sync: a command cut short by the end of the garbage
    swallows the bytes after it, on a real printer too (``GS ( k`` may claim
    65,535 bytes). Resynchronisation can only be asked of garbage that leaves
    no command open.
    """
    from firmware_protocols import escpos

    probe = escpos.EscPosDecoder()
    drain(probe, escpos.NEED_DATA, [garbage])
    probed = drain(probe, escpos.NEED_DATA, [escpos.encode(escpos.Init())])
    return probed.events[-1:] == [escpos.Init()] and probe.pending_bytes == 0


# --------------------------------------------------------------------------- seeds


def golden_seeds() -> dict[str, list[bytes]]:
    """Wire bytes of the golden fixtures in ``tests/protocols``, per target family."""
    from edge.devices.ticket import LARGE_PRINT_LAYOUT, ticket_bytes
    from tests.protocols import test_escpos, test_led, test_modbus_terminal, test_vendor_frame

    escpos_seeds = [bytes.fromhex(wire) for _, wire in test_escpos.GOLDEN]
    escpos_seeds.append(ticket_bytes(test_escpos.TICKET))
    escpos_seeds.append(ticket_bytes(test_escpos.TICKET, LARGE_PRINT_LAYOUT))
    return {
        "escpos": escpos_seeds,
        "escpos_status": [
            bytes([request, reply]) for request, reply, _ in test_escpos.STATUS_GOLDEN
        ],
        "led": [bytes.fromhex(wire) for _, wire in test_led.GOLDEN],
        "vendor": [bytes.fromhex(wire) for _, wire in test_vendor_frame.GOLDEN],
        "modbus": [
            test_modbus_terminal.GOLDEN_POLL_ANSWER,
            *(bytes.fromhex(wire) for _, _, wire in test_modbus_terminal.GOLDEN_REQUESTS),
        ],
    }


def golden_mqtt() -> list[tuple[str, bytes]]:
    """(topic, payload) of every message in the MQTT golden table."""
    from firmware_protocols import mqtt_messages as mm
    from tests.protocols import test_mqtt_messages

    pairs = []
    for message, wire in test_mqtt_messages.MESSAGE_TABLE:
        publish = mm.to_publish(message)
        pairs.append((publish.topic, wire.encode("utf-8")))
    return pairs


EDGE_EXAMPLES: Final = ("hall33.toml", "village.toml")
BASE_CONFIG: Final = Path(__file__).with_name("site_base.toml")


def base_config_text() -> str:
    """The fixed valid config that the bad-config tests edit (``site_base.toml``)."""
    return BASE_CONFIG.read_text(encoding="utf-8")


def edge_example_texts() -> list[str]:
    """The shipped example configs (fuzz seeds: they follow the daemon as it evolves)."""
    root = Path(__file__).resolve().parents[2] / "edge" / "examples"
    return [(root / name).read_text(encoding="utf-8") for name in EDGE_EXAMPLES]


# --------------------------------------------------------------------------- known findings
# A crash the fuzzers found in another module is pinned by a strict-xfail test in
# tests/fuzz/test_regressions.py and listed here, so the fuzz tests keep hunting for NEW
# crashes instead of failing on the same one every run. When the owner fixes it, the
# regression test XPASSes (strict: it fails) and the entry here goes. ONEDOOR_FUZZ_KNOWN=fail
# turns the tolerance off.

KNOWN_ENV: Final = "ONEDOOR_FUZZ_KNOWN"


@dataclass(frozen=True, slots=True)
class KnownFinding:
    id: str
    summary: str
    exception: type[BaseException]
    module: str  # the file (relative to the repo) whose frame raised or called the raiser
    functions: frozenset[str]  # where in ``module``


KNOWN_FINDINGS: Final[tuple[KnownFinding, ...]] = ()
"""Open findings. F1-F4 (docs/reliability/bad_input.md) are fixed; their reproductions
stay in tests/fuzz/test_regressions.py as plain regression tests."""


def known_finding(exc: BaseException) -> KnownFinding | None:
    """The known finding ``exc`` is an instance of, if any."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    for finding in KNOWN_FINDINGS:
        if not isinstance(exc, finding.exception):
            continue
        if any(f.filename.endswith(finding.module) and f.name in finding.functions for f in frames):
            return finding
    return None


@contextmanager
def known_findings_rejected() -> Iterator[None]:
    """Turn an exception of a known finding into ``hypothesis.reject()`` (see above)."""
    try:
        yield
    except Exception as exc:
        if os.environ.get(KNOWN_ENV) != "fail" and known_finding(exc) is not None:
            from hypothesis import reject

            reject()
        raise
