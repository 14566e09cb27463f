"""Voice calls: "请 A012 号 到 3 号窗口 办理", twice, in Mandarin, from short clips.

An announcement is a *plan* of clip names (:func:`announcement_plan`, pure),
rendered by concatenating the clips' PCM frames (:class:`ClipSet`), then
played by a sink: ALSA through ``aplay`` (:class:`AplaySink`) or WAV files
(:class:`WavDirectorySink`, for tests and for halls that record calls).

Clips: ``chime``, ``qing`` 请, ``letter_a`` … ``letter_z``, ``digit_0`` …
``digit_9``, ``shi`` 十, ``bai`` 百, ``hao`` 号, ``dao`` 到,
``hao_chuangkou_banli`` 号窗口办理 and ``pause`` (silence between the two
repetitions). :func:`make_clips` generates the default set offline with
espeak-ng (``-v cmn``) and a chime synthesised here in pure Python; a hall
drops recorded clips with the same names into an override directory, and a
clip in another format is converted with sox when loaded.

The ticket number is read digit by digit (A012: A 零 一 二), the way halls
call numbers; the window number is read as a number (12: 十二, 105: 一百零五).

Announcements queue in :class:`VoiceDriver` and play one after another, so
one call never cuts another off; ticket calls go before free text (which they
cut off), and both queues are bounded.
"""

from __future__ import annotations

import array
import asyncio
import collections
import io
import math
import re
import shutil
import subprocess
import sys
import tempfile
import wave
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import structlog

from .base import (
    DeviceConfigError,
    DeviceError,
    DeviceHealth,
    DeviceKind,
    HealthState,
    HealthTracker,
    InputQueue,
)

log = structlog.get_logger(__name__)

SAMPLE_RATE: Final = 22050  # espeak-ng's native rate; every clip is converted to it
SAMPLE_WIDTH: Final = 2  # 16-bit signed
CHANNELS: Final = 1

CHIME: Final = "chime"
PLEASE: Final = "qing"  # 请
NUMBER_SUFFIX: Final = "hao"  # 号
TO: Final = "dao"  # 到
WINDOW_SUFFIX: Final = "hao_chuangkou_banli"  # 号窗口办理
TEN: Final = "shi"  # 十
HUNDRED: Final = "bai"  # 百
PAUSE: Final = "pause"

_DIGITS_ZH: Final = "零一二三四五六七八九"
_SPOKEN_TEXT: Final[dict[str, str]] = {
    PLEASE: "请",
    NUMBER_SUFFIX: "号",
    TO: "到",
    WINDOW_SUFFIX: "号窗口办理",
    TEN: "十",
    HUNDRED: "百",
    **{f"digit_{d}": _DIGITS_ZH[d] for d in range(10)},
    # The cmn voice reads Latin letters the English way ("ei", "bi"), as halls do.
    **{f"letter_{c.lower()}": c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
}
"""What espeak-ng says for each spoken clip."""

CLIP_NAMES: Final = (CHIME, PAUSE, *_SPOKEN_TEXT)
TICKET_NUMBER_RE: Final = re.compile(r"^([A-Z]{1,2})([0-9]{1,4})$")
WINDOW_MAX: Final = 999
PAUSE_SECONDS: Final = 0.6
ESPEAK_SPEED_WPM: Final = 150  # a little slower than espeak's 175: a hall echoes


class VoiceError(DeviceError):
    """Clips cannot be made, loaded or played."""


# --- the plan (pure) -----------------------------------------------------------------------------
def _digit(d: int) -> str:
    return f"digit_{d}"


def window_number_clips(window: int) -> list[str]:
    """Clips reading ``window`` as a Chinese number: 3 三, 10 十, 12 十二, 20 二十, 105 一百零五."""
    if not 1 <= window <= WINDOW_MAX:
        raise ValueError(f"window number must be 1..{WINDOW_MAX}, got {window}")
    hundreds, rest = divmod(window, 100)
    tens, ones = divmod(rest, 10)
    clips: list[str] = []
    if hundreds:
        clips += [_digit(hundreds), HUNDRED]
        if rest == 0:
            return clips
        if tens == 0:
            return [*clips, _digit(0), _digit(ones)]
        clips += [_digit(tens), TEN]  # 一百一十, not 一百十
    elif tens:
        clips += [TEN] if tens == 1 else [_digit(tens), TEN]
    if ones or not clips:
        clips.append(_digit(ones))
    return clips


def phrase_clips(number: str, window: int) -> list[str]:
    """One reading of "请 A012 号 到 3 号窗口办理"."""
    match = TICKET_NUMBER_RE.match(number)
    if match is None:
        raise ValueError(
            f"ticket number must be 1-2 capital letters and 1-4 digits (A012), got {number!r}"
        )
    letters, digits = match.groups()
    return [
        PLEASE,
        *(f"letter_{c.lower()}" for c in letters),
        *(_digit(int(d)) for d in digits),
        NUMBER_SUFFIX,
        TO,
        *window_number_clips(window),
        WINDOW_SUFFIX,
    ]


def announcement_plan(number: str, window: int, repeat: int = 2) -> list[str]:
    """Chime, then the phrase ``repeat`` times with a pause between."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    phrase = phrase_clips(number, window)
    plan = [CHIME, *phrase]
    for _ in range(repeat - 1):
        plan += [PAUSE, *phrase]
    return plan


# --- clips ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Clip:
    name: str
    frames: bytes  # 16-bit mono PCM at SAMPLE_RATE
    source: Path | None

    @property
    def seconds(self) -> float:
        return len(self.frames) / (SAMPLE_WIDTH * CHANNELS * SAMPLE_RATE)


def _wav_bytes(frames: bytes) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(CHANNELS)
        out.setsampwidth(SAMPLE_WIDTH)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(frames)
    return buffer.getvalue()


def _read_native(path: Path) -> bytes | None:
    """The frames of ``path`` if it already is 16-bit mono at SAMPLE_RATE, else None."""
    try:
        with wave.open(str(path), "rb") as wav:
            if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (
                CHANNELS,
                SAMPLE_WIDTH,
                SAMPLE_RATE,
            ) or wav.getcomptype() != "NONE":
                return None
            return wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise VoiceError(f"clip {path} is not a readable WAV file: {exc}") from exc


def _convert_with_sox(path: Path) -> bytes:
    sox = shutil.which("sox")
    if sox is None:
        raise VoiceError(
            f"clip {path} is not 16-bit mono {SAMPLE_RATE} Hz and sox is not installed "
            "to convert it"
        )
    with tempfile.TemporaryDirectory(prefix="onedoor-clip-") as tmp:
        out = Path(tmp) / "converted.wav"
        command = [sox, str(path), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16"]
        command += ["-e", "signed-integer", str(out)]
        done = subprocess.run(command, capture_output=True, check=False)
        if done.returncode != 0:
            stderr = done.stderr.decode(errors="replace").strip()
            raise VoiceError(f"sox could not convert clip {path}: {stderr}")
        frames = _read_native(out)
    if frames is None:  # pragma: no cover - sox honours -r/-c/-b
        raise VoiceError(f"sox returned an unexpected format for {path}")
    return frames


class ClipSet:
    """Every clip an announcement needs, in one format, ready to concatenate."""

    def __init__(self, clips: Mapping[str, Clip]) -> None:
        missing = [name for name in CLIP_NAMES if name not in clips]
        if missing:
            raise VoiceError(f"clips missing: {', '.join(missing)} (run `onedoor edge make-clips`)")
        self._clips = dict(clips)

    @classmethod
    def load(cls, default_dir: Path, override_dir: Path | None = None) -> ClipSet:
        """Clips from ``default_dir``, each replaced by a same-named one in ``override_dir``."""
        if not default_dir.is_dir():
            raise DeviceConfigError(f"clip directory {default_dir} does not exist")
        if override_dir is not None and not override_dir.is_dir():
            raise DeviceConfigError(f"clip override directory {override_dir} does not exist")
        clips: dict[str, Clip] = {}
        for name in CLIP_NAMES:
            path = default_dir / f"{name}.wav"
            if override_dir is not None and (override_dir / f"{name}.wav").is_file():
                path = override_dir / f"{name}.wav"
            if not path.is_file():
                continue  # reported all together by __init__
            frames = _read_native(path)
            if frames is None:
                frames = _convert_with_sox(path)
                log.info("voice.clip_converted", clip=name, path=str(path))
            if not frames:
                raise VoiceError(f"clip {path} is empty")
            clips[name] = Clip(name, frames, path)
        return cls(clips)

    def __getitem__(self, name: str) -> Clip:
        return self._clips[name]

    def render(self, plan: Iterable[str]) -> bytes:
        """The WAV bytes of the clips of ``plan``, back to back."""
        return _wav_bytes(b"".join(self._clips[name].frames for name in plan))

    def seconds(self, plan: Iterable[str]) -> float:
        return sum(self._clips[name].seconds for name in plan)


# --- generating the default clips ----------------------------------------------------------------
def chime_frames(seconds: float = 0.8) -> bytes:
    """A two-note "ding-dong" (E5 then C5), decaying sines, in pure Python."""
    samples = array.array("h")
    half = int(seconds * SAMPLE_RATE / 2)
    for frequency in (659.25, 523.25):
        for i in range(half):
            t = i / SAMPLE_RATE
            envelope = math.exp(-5.0 * t) * min(1.0, i / 200)  # 9 ms attack: no click
            tone = math.sin(2 * math.pi * frequency * t) + 0.3 * math.sin(
                4 * math.pi * frequency * t
            )
            samples.append(int(12000 * envelope * tone))
    if sys.byteorder != "little":  # pragma: no cover - WAV is little-endian
        samples.byteswap()
    return samples.tobytes()


def trim_silence(frames: bytes, threshold: int = 300, margin_s: float = 0.02) -> bytes:
    """Drop the leading and trailing near-silence espeak-ng adds, keeping a short margin."""
    samples = array.array("h", frames)
    if sys.byteorder != "little":  # pragma: no cover
        samples.byteswap()
    loud = [i for i, s in enumerate(samples) if abs(s) > threshold]
    if not loud:
        return frames
    margin = int(margin_s * SAMPLE_RATE)
    start, end = max(0, loud[0] - margin), min(len(samples), loud[-1] + margin + 1)
    return frames[start * SAMPLE_WIDTH : end * SAMPLE_WIDTH]


def _espeak(text: str, espeak: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="onedoor-clip-") as tmp:
        out = Path(tmp) / "clip.wav"
        command = [espeak, "-v", "cmn", "-s", str(ESPEAK_SPEED_WPM), "-w", str(out), text]
        done = subprocess.run(command, capture_output=True, check=False)
        if done.returncode != 0 or not out.is_file():
            raise VoiceError(
                f"espeak-ng failed for {text!r}: {done.stderr.decode(errors='replace').strip()}"
            )
        frames = _read_native(out)
        if frames is None:
            frames = _convert_with_sox(out)
    return trim_silence(frames)


def make_clips(directory: Path | str, *, overwrite: bool = False) -> list[Path]:
    """Write the default clip set into ``directory`` (``onedoor edge make-clips DIR``).

    Existing clips are kept unless ``overwrite``; returns the paths written.
    """
    directory = Path(directory)
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise VoiceError("espeak-ng is not installed (Debian package espeak-ng)")
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in CLIP_NAMES:
        path = directory / f"{name}.wav"
        if path.exists() and not overwrite:
            continue
        if name == CHIME:
            frames = chime_frames()
        elif name == PAUSE:
            frames = bytes(int(PAUSE_SECONDS * SAMPLE_RATE) * SAMPLE_WIDTH)
        else:
            frames = _espeak(_SPOKEN_TEXT[name], espeak)
        partial = path.with_suffix(".wav.part")
        partial.write_bytes(_wav_bytes(frames))
        partial.replace(path)  # a half-written clip never looks like a clip
        written.append(path)
    log.info("voice.clips_made", directory=str(directory), written=len(written))
    return written


# --- sinks ---------------------------------------------------------------------------------------
class AudioSink(Protocol):
    async def play(self, wav: bytes, label: str) -> None:
        """Play one rendered announcement to the end; raise :class:`VoiceError` on failure."""
        ...


class AplaySink:
    """ALSA through ``aplay`` reading the WAV from stdin."""

    def __init__(self, device: str | None = None, aplay: str = "aplay") -> None:
        self._command = [aplay, "-q", *(["-D", device] if device else []), "-"]

    async def play(self, wav: bytes, label: str) -> None:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise VoiceError(f"cannot start {self._command[0]}: {exc}") from exc
        try:
            _, stderr = await process.communicate(wav)
        except asyncio.CancelledError:
            process.kill()
            await process.wait()
            raise
        if process.returncode != 0:
            raise VoiceError(
                f"aplay exited with {process.returncode}: "
                f"{stderr.decode(errors='replace').strip()[-200:]}"
            )


class WavDirectorySink:
    """Writes each announcement to ``NNNN-label.wav`` in a directory (tests, archives)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.written: list[Path] = []

    async def play(self, wav: bytes, label: str) -> None:
        path = self.directory / f"{len(self.written) + 1:04d}-{label}.wav"
        try:
            await asyncio.to_thread(path.write_bytes, wav)
        except OSError as exc:
            raise VoiceError(f"cannot write {path}: {exc}") from exc
        self.written.append(path)


# --- the driver ----------------------------------------------------------------------------------
@dataclass(slots=True)
class _Call:
    """One queued announcement: a ticket call (clip plan) or free text (spoken by espeak-ng)."""

    label: str  # for logs and WAV file names: "A012-w3", "text"
    plan: tuple[str, ...] = ()
    text: str | None = None
    repeat: int = 1  # free text: times still to say it
    wav: bytes | None = None  # free text: rendered once, played ``repeat`` times
    is_call: bool = False  # a ticket call said from text (by name): a call's priority


FREE_TEXT_MAX_CHARS: Final = 200


def _checked_text(text: str) -> str:
    """Text espeak-ng may say: stripped; empty, over-long, control characters refused."""
    spoken = text.strip()
    if not spoken:
        raise ValueError("announcement text is empty")
    if len(spoken) > FREE_TEXT_MAX_CHARS:
        raise ValueError(
            f"announcement text is {len(spoken)} characters, at most {FREE_TEXT_MAX_CHARS}"
        )
    if any(ord(char) < 0x20 for char in spoken):
        raise ValueError("announcement text contains control characters")
    return spoken
MAX_WAITING_CALLS: Final = 20
"""Ticket calls queued at most; past it the oldest waiting call is dropped (its number is
on the screens, and a call minutes late only confuses)."""
MAX_WAITING_TEXTS: Final = 4
"""Free-text announcements queued at most; more are refused (the central says why)."""


class VoiceDriver:
    """Queues announcements and plays them one by one. Implements ``base.Announcer``.

    Ticket calls always go first: queued free text waits until no call does, and
    a call that comes while free text is being said cuts it off; the text is said
    again in full once the calls are done. Both queues are bounded
    (:data:`MAX_WAITING_CALLS`, :data:`MAX_WAITING_TEXTS`).
    """

    def __init__(
        self,
        clips: ClipSet,
        sink: AudioSink,
        inputs: InputQueue,
        *,
        device_id: str = "voice",
        repeat: int = 2,
    ) -> None:
        if repeat < 1:
            raise DeviceConfigError(f"repeat must be >= 1, got {repeat}")
        self._clips = clips
        self._sink = sink
        self._repeat = repeat
        self._calls: collections.deque[_Call] = collections.deque()
        self._texts: collections.deque[_Call] = collections.deque()
        self._queued = asyncio.Event()  # something was queued
        self._call_queued = asyncio.Event()  # a ticket call was queued
        self._idle = asyncio.Event()  # nothing queued, nothing playing
        self._idle.set()
        self._health = HealthTracker(device_id, DeviceKind.VOICE, inputs)
        self.played = 0
        self.dropped_calls = 0
        self.interrupted_texts = 0

    def announce(self, number: str, window: int, spoken: str | None = None) -> None:
        """Queue a call; a bad number or window raises ``ValueError`` here, not later.

        ``spoken``: the sentence to say instead of the clips' phrase (a call by name,
        请张女士，A012号，到3号窗口办理), spoken by espeak-ng after the chime; it is a
        ticket call all the same (never after free text, never cut off).
        """
        plan = tuple(announcement_plan(number, window, self._repeat))
        call = _Call(f"{number}-w{window}", plan=plan)
        if spoken is not None:
            call = _Call(f"{number}-w{window}", text=_checked_text(spoken), is_call=True)
        if len(self._calls) >= MAX_WAITING_CALLS:
            stale = self._calls.popleft()
            self.dropped_calls += 1
            log.warning("voice.call_dropped", call=stale.label, waiting=len(self._calls))
        self._calls.append(call)
        self._call_queued.set()
        self._wake()
        if spoken is None:
            log.info("voice.queued", number=number, window=window, pending=self.pending)
        else:  # the words name a citizen: not logged
            log.info("voice.queued_text", call=True, window=window, pending=self.pending)

    def announce_text(self, text: str, repeat: int = 1) -> None:
        """Queue free text (a notice from the central), said ``repeat`` times after the chime.

        There are no clips for arbitrary words, so espeak-ng speaks it when its
        turn comes. Empty, over-long or control-character text, a ``repeat`` outside
        1..5 and a full text queue raise ``ValueError``.
        """
        spoken = _checked_text(text)
        if not 1 <= repeat <= 5:
            raise ValueError(f"repeat must be 1..5, got {repeat}")
        if len(self._texts) >= MAX_WAITING_TEXTS:
            raise ValueError(f"the voice queue already holds {len(self._texts)} announcements; "
                             "try again once they are said")
        self._texts.append(_Call("text", text=spoken, repeat=repeat))
        self._wake()
        log.info("voice.queued_text", chars=len(spoken), repeat=repeat, pending=self.pending)

    def _wake(self) -> None:
        self._idle.clear()
        self._queued.set()

    @property
    def pending(self) -> int:
        return len(self._calls) + len(self._texts)

    async def drain(self) -> None:
        """Wait until every queued announcement has played (or failed)."""
        await self._idle.wait()

    def health(self) -> DeviceHealth:
        return self._health.current

    async def _render(self, call: _Call) -> bytes:
        if call.text is None:
            return self._clips.render(call.plan)
        if call.wav is None:
            espeak = shutil.which("espeak-ng")
            if espeak is None:
                raise VoiceError("espeak-ng is not installed: free text cannot be spoken")
            speech = await asyncio.to_thread(_espeak, call.text, espeak)
            call.wav = _wav_bytes(self._clips[CHIME].frames + speech)
        return call.wav

    async def _play_text(self, call: _Call, wav: bytes) -> None:
        """Say the text ``call.repeat`` times unless a ticket call comes: then stop and
        queue the text again, first among the texts, for the times not yet said."""
        while call.repeat > 0:
            if self._calls:
                self._texts.appendleft(call)
                return
            self._call_queued.clear()
            playing = asyncio.ensure_future(self._sink.play(wav, call.label))
            called = asyncio.ensure_future(self._call_queued.wait())
            try:
                await asyncio.wait({playing, called}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                playing.cancel()
                called.cancel()
                raise
            called.cancel()
            if not playing.done():  # a ticket call came: it goes first
                playing.cancel()
                await asyncio.wait({playing})  # ended (the sink stops aplay); never raises
                self.interrupted_texts += 1
                log.info("voice.text_interrupted", waiting_calls=len(self._calls))
                self._texts.appendleft(call)
                return
            playing.result()  # a VoiceError of the sink
            call.repeat -= 1
            self.played += 1
            log.info("voice.played", call=call.label)

    async def run(self) -> None:
        while True:
            if not self._calls and not self._texts:
                self._idle.set()
                self._queued.clear()
                await self._queued.wait()
                continue
            call = self._calls.popleft() if self._calls else self._texts.popleft()
            try:
                wav = await self._render(call)
                if call.text is None or call.is_call:
                    await self._sink.play(wav, call.label)
                    self.played += 1
                    log.info("voice.played", call=call.label)
                else:
                    await self._play_text(call, wav)
            except VoiceError as exc:
                log.warning("voice.failed", call=call.label, error=str(exc))
                self._health.set(HealthState.OFFLINE, str(exc)[:200])
            else:
                self._health.set(HealthState.OK)


__all__ = [
    "CLIP_NAMES",
    "MAX_WAITING_CALLS",
    "MAX_WAITING_TEXTS",
    "AplaySink",
    "AudioSink",
    "Clip",
    "ClipSet",
    "VoiceDriver",
    "VoiceError",
    "WavDirectorySink",
    "announcement_plan",
    "chime_frames",
    "make_clips",
    "phrase_clips",
    "trim_silence",
    "window_number_clips",
]
