"""Voice: clips made by the real espeak-ng, announcements rendered to WAV and played by aplay."""

from __future__ import annotations

import array
import asyncio
import math
import shutil
import wave
from pathlib import Path
from typing import Any

import pytest

from edge.devices.base import DeviceInput, DeviceStatusChanged, HealthState
from edge.devices.voice import (
    CHIME,
    CLIP_NAMES,
    MAX_WAITING_CALLS,
    MAX_WAITING_TEXTS,
    SAMPLE_RATE,
    AplaySink,
    ClipSet,
    VoiceDriver,
    VoiceError,
    WavDirectorySink,
    announcement_plan,
    make_clips,
    phrase_clips,
    window_number_clips,
)

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("clips")
    make_clips(directory)
    return directory


@pytest.fixture(scope="module")
def clips(clip_dir: Path) -> ClipSet:
    return ClipSet.load(clip_dir)


def read_wav(path: Path) -> tuple[tuple[int, int, int], bytes]:
    with wave.open(str(path), "rb") as wav:
        params = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
        return params, wav.readframes(wav.getnframes())


# --- the plan ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("window", "spoken"),
    [
        (3, "三"),
        (10, "十"),
        (12, "十二"),
        (20, "二十"),
        (47, "四十七"),
        (100, "一百"),
        (105, "一百零五"),
        (110, "一百一十"),
        (220, "二百二十"),
    ],
)
def test_window_numbers_read_as_chinese_numbers(window: int, spoken: str) -> None:
    names = {
        "shi": "十",
        "bai": "百",
        **{f"digit_{d}": "零一二三四五六七八九"[d] for d in range(10)},
    }
    assert "".join(names[c] for c in window_number_clips(window)) == spoken


def test_the_phrase_reads_the_ticket_digit_by_digit() -> None:
    assert phrase_clips("A012", 3) == [
        "qing",
        "letter_a",
        "digit_0",
        "digit_1",
        "digit_2",
        "hao",
        "dao",
        "digit_3",
        "hao_chuangkou_banli",
    ]


def test_the_announcement_is_a_chime_then_the_phrase_twice() -> None:
    phrase = phrase_clips("BC7", 12)
    assert announcement_plan("BC7", 12) == ["chime", *phrase, "pause", *phrase]
    assert announcement_plan("BC7", 12, repeat=1) == ["chime", *phrase]


@pytest.mark.parametrize("number", ["a012", "A", "012", "ABC1", "A12345", "A-12", ""])
def test_a_bad_ticket_number_is_refused(number: str) -> None:
    with pytest.raises(ValueError, match="ticket number"):
        phrase_clips(number, 1)


@pytest.mark.parametrize("window", [0, -1, 1000])
def test_a_bad_window_is_refused(window: int) -> None:
    with pytest.raises(ValueError, match="window number"):
        window_number_clips(window)


# --- clips ---------------------------------------------------------------------------------------
def test_make_clips_writes_every_clip_as_short_mono_wav(clip_dir: Path) -> None:
    for name in CLIP_NAMES:
        params, frames = read_wav(clip_dir / f"{name}.wav")
        assert params == (1, 2, SAMPLE_RATE)
        seconds = len(frames) / 2 / SAMPLE_RATE
        assert 0.05 < seconds < 2.5, (name, seconds)
    # Spoken clips are not silence: espeak-ng really said something.
    samples = array.array("h", read_wav(clip_dir / "qing.wav")[1])
    assert max(abs(s) for s in samples) > 3000
    # Existing clips are kept unless asked to overwrite.
    assert make_clips(clip_dir) == []


def test_a_missing_clip_is_named(clip_dir: Path, tmp_path: Path) -> None:
    for name in CLIP_NAMES:
        if name != "letter_q":
            shutil.copy(clip_dir / f"{name}.wav", tmp_path)
    with pytest.raises(VoiceError, match="clips missing: letter_q"):
        ClipSet.load(tmp_path)


def test_a_broken_clip_is_refused(clip_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "qing.wav").write_bytes(b"RIFF not really")
    with pytest.raises(VoiceError, match=r"qing\.wav is not a readable WAV"):
        ClipSet.load(clip_dir, override_dir=tmp_path)


def test_a_recorded_clip_in_another_format_overrides_and_is_converted(
    clip_dir: Path, tmp_path: Path
) -> None:
    # A hall's recording: 44.1 kHz stereo, 0.5 s of a 440 Hz tone.
    recorded = tmp_path / "qing.wav"
    n = 44100 // 2
    tone = array.array("h", (int(8000 * math.sin(2 * math.pi * 440 * i / 44100)) for i in range(n)))
    stereo = array.array("h", (s for sample in tone for s in (sample, sample)))
    with wave.open(str(recorded), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44100)
        out.writeframes(stereo.tobytes())
    clips = ClipSet.load(clip_dir, override_dir=tmp_path)
    assert clips["qing"].source == recorded
    assert clips["qing"].seconds == pytest.approx(0.5, abs=0.01)
    assert clips["hao"].source == clip_dir / "hao.wav"


# --- the driver ----------------------------------------------------------------------------------
def test_announcements_render_to_wav_in_order_and_in_full(clips: ClipSet, tmp_path: Path) -> None:
    async def main() -> list[Path]:
        inputs: asyncio.Queue[DeviceInput] = asyncio.Queue()
        sink = WavDirectorySink(tmp_path)
        driver = VoiceDriver(clips, sink, inputs)
        task = asyncio.create_task(driver.run())
        driver.announce("A012", 3)
        driver.announce("B105", 12)
        await asyncio.wait_for(driver.drain(), timeout=10)
        task.cancel()
        assert driver.health().state is HealthState.OK
        return sink.written

    written = asyncio.run(main())
    assert [p.name for p in written] == ["0001-A012-w3.wav", "0002-B105-w12.wav"]
    for path, (number, window) in zip(written, [("A012", 3), ("B105", 12)], strict=True):
        plan = announcement_plan(number, window)
        params, frames = read_wav(path)
        assert params == (1, 2, SAMPLE_RATE)
        # The duration is the sum of the clips and the bytes are the clips in plan order.
        assert len(frames) / 2 / SAMPLE_RATE == pytest.approx(clips.seconds(plan), abs=1e-9)
        assert frames == b"".join(clips[name].frames for name in plan)


class SlowSink:
    """Takes real time to 'play', and records overlaps (a cut-off would show as one)."""

    def __init__(self) -> None:
        self.playing = 0
        self.overlaps = 0
        self.labels: list[str] = []

    async def play(self, wav: bytes, label: str) -> None:
        self.playing += 1
        self.overlaps += self.playing > 1
        await asyncio.sleep(0.02)
        self.labels.append(label)
        self.playing -= 1


def test_announcements_queue_and_never_cut_each_other_off(clips: ClipSet) -> None:
    async def main() -> SlowSink:
        sink = SlowSink()
        driver = VoiceDriver(clips, sink, asyncio.Queue())
        task = asyncio.create_task(driver.run())
        for window in range(1, 6):
            driver.announce(f"A{window:03d}", window)
            await asyncio.sleep(0.005)  # calls arrive while the previous one still plays
        await asyncio.wait_for(driver.drain(), timeout=10)
        task.cancel()
        return sink

    sink = asyncio.run(main())
    assert sink.labels == [f"A{w:03d}-w{w}" for w in range(1, 6)]
    assert sink.overlaps == 0


def test_a_bad_call_is_refused_before_it_is_queued(clips: ClipSet) -> None:
    async def main() -> None:
        driver = VoiceDriver(clips, SlowSink(), asyncio.Queue())
        with pytest.raises(ValueError, match="window number"):
            driver.announce("A001", 0)
        assert driver.pending == 0

    asyncio.run(main())


@pytest.mark.skipif(shutil.which("aplay") is None, reason="needs alsa-utils")
def test_aplay_plays_and_a_broken_device_is_reported(clips: ClipSet) -> None:
    async def main() -> None:
        inputs: asyncio.Queue[DeviceInput] = asyncio.Queue()
        broken = VoiceDriver(clips, AplaySink(device="onedoor-no-such-pcm"), inputs, repeat=1)
        task = asyncio.create_task(broken.run())
        broken.announce("A001", 1)
        await asyncio.wait_for(broken.drain(), timeout=10)
        task.cancel()
        assert broken.health().state is HealthState.OFFLINE
        assert "aplay exited" in broken.health().detail
        changed = inputs.get_nowait()
        assert isinstance(changed, DeviceStatusChanged)
        assert changed.health.device_id == "voice"

        # ALSA's null device really runs aplay end to end.
        working = VoiceDriver(clips, AplaySink(device="null"), inputs, repeat=1)
        task = asyncio.create_task(working.run())
        working.announce("A002", 2)
        await asyncio.wait_for(working.drain(), timeout=20)
        task.cancel()
        assert working.played == 1
        assert working.health().state is HealthState.OK

    asyncio.run(main())


def test_free_text_is_spoken_after_the_chime_and_after_waiting_calls(
        clips: ClipSet, tmp_path: Path) -> None:
    async def main() -> list[Path]:
        sink = WavDirectorySink(tmp_path)
        driver = VoiceDriver(clips, sink, asyncio.Queue())
        task = asyncio.create_task(driver.run())
        driver.announce_text("今日十六点三十分停止取号")
        driver.announce("A001", 1)  # queued after the text, called before it
        await asyncio.wait_for(driver.drain(), timeout=20)
        task.cancel()
        return sink.written

    written = asyncio.run(main())
    assert [p.name for p in written] == ["0001-A001-w1.wav", "0002-text.wav"]
    _, frames = read_wav(written[1])
    chime = clips["chime"].frames
    assert frames.startswith(chime)
    speech = array.array("h", frames[len(chime) :])
    assert len(speech) / SAMPLE_RATE > 1.0  # twelve syllables take more than a second
    assert max(abs(s) for s in speech) > 3000


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("   ", "empty"), ("很" * 201, "at most 200"), ("第一行\n第二行", "control")],
)
def test_bad_free_text_is_refused(clips: ClipSet, text: str, message: str) -> None:
    async def main() -> None:
        driver = VoiceDriver(clips, SlowSink(), asyncio.Queue())
        with pytest.raises(ValueError, match=message):
            driver.announce_text(text)
        assert driver.pending == 0

    asyncio.run(main())


class TimedSink:
    """Plays each announcement for a set time (free text longer than a call) and keeps
    what was played to the end, what was cut off, and any overlap."""

    def __init__(self, text_s: float = 0.3, call_s: float = 0.01) -> None:
        self.text_s, self.call_s = text_s, call_s
        self.playing = 0
        self.overlaps = 0
        self.finished: list[str] = []
        self.cut: list[str] = []
        self.started = asyncio.Event()

    async def play(self, wav: bytes, label: str) -> None:
        self.playing += 1
        self.overlaps += self.playing > 1
        self.started.set()
        try:
            await asyncio.sleep(self.text_s if label == "text" else self.call_s)
        except asyncio.CancelledError:
            self.cut.append(label)
            raise
        finally:
            self.playing -= 1
        self.finished.append(label)


def _rendered(driver: VoiceDriver, clips: ClipSet) -> None:
    """Free text without espeak-ng's second or two per text: the chime stands for it."""
    async def render(call: Any) -> bytes:
        return clips.render([CHIME])
    driver._render = render  # type: ignore[method-assign]


def test_a_ticket_call_cuts_free_text_off_and_the_text_is_said_again_in_full(
        clips: ClipSet) -> None:
    async def main() -> tuple[TimedSink, VoiceDriver]:
        sink = TimedSink()
        driver = VoiceDriver(clips, sink, asyncio.Queue())
        _rendered(driver, clips)
        task = asyncio.create_task(driver.run())
        driver.announce_text("系统维护，今日十六点停止取号", repeat=2)
        await asyncio.wait_for(sink.started.wait(), 5)
        driver.announce("A001", 1)  # while the text is being said
        driver.announce("A002", 2)
        await asyncio.wait_for(driver.drain(), timeout=10)
        task.cancel()
        return sink, driver

    sink, driver = asyncio.run(main())
    assert sink.cut == ["text"]
    assert sink.finished == ["A001-w1", "A002-w2", "text", "text"]
    assert sink.overlaps == 0
    assert driver.interrupted_texts == 1


def test_queued_calls_go_before_queued_text(clips: ClipSet) -> None:
    async def main() -> TimedSink:
        sink = TimedSink(text_s=0.01)
        driver = VoiceDriver(clips, sink, asyncio.Queue())
        _rendered(driver, clips)
        for _ in range(3):
            driver.announce_text("请各位办事群众保管好随身物品", repeat=5)
        for window in range(1, 4):
            driver.announce(f"A00{window}", window)
        task = asyncio.create_task(driver.run())
        await asyncio.wait_for(driver.drain(), timeout=10)
        task.cancel()
        return sink

    sink = asyncio.run(main())
    assert sink.finished == ["A001-w1", "A002-w2", "A003-w3", *["text"] * 15]


def test_the_voice_queues_are_bounded(clips: ClipSet) -> None:
    """Twenty announcements of 198 characters said five times once put over two hours of
    speech ahead of the next call: at most MAX_WAITING_TEXTS wait, the rest are refused;
    calls past MAX_WAITING_CALLS push out the oldest call."""
    async def main() -> None:
        driver = VoiceDriver(clips, SlowSink(), asyncio.Queue())
        for _ in range(MAX_WAITING_TEXTS):
            driver.announce_text("很" * 198, repeat=5)
        for _ in range(20 - MAX_WAITING_TEXTS):
            with pytest.raises(ValueError, match="voice queue"):
                driver.announce_text("很" * 198, repeat=5)
        assert driver.pending == MAX_WAITING_TEXTS
        for number in range(1, MAX_WAITING_CALLS + 6):
            driver.announce(f"A{number:03d}", 1)
        assert driver.pending == MAX_WAITING_TEXTS + MAX_WAITING_CALLS
        assert driver.dropped_calls == 5
        assert driver._calls[0].label == "A006-w1"  # the five oldest calls went
        with pytest.raises(ValueError, match="repeat"):
            driver.announce_text("好", repeat=6)

    asyncio.run(main())


def test_a_call_by_name_is_a_ticket_call(clips: ClipSet) -> None:
    """请张女士，A001号… is said from text but queued as a call: before waiting free text,
    never cut off by the next call."""
    async def main() -> TimedSink:
        sink = TimedSink(text_s=0.2, call_s=0.01)
        driver = VoiceDriver(clips, sink, asyncio.Queue())
        _rendered(driver, clips)
        driver.announce_text("请各位办事群众保管好随身物品")
        driver.announce("A001", 1, spoken="请张女士，A001号，到1号窗口办理")
        task = asyncio.create_task(driver.run())
        await asyncio.wait_for(sink.started.wait(), 5)
        driver.announce("A002", 2)  # while the call by name is said
        await asyncio.wait_for(driver.drain(), timeout=10)
        task.cancel()
        return sink

    sink = asyncio.run(main())
    assert sink.finished == ["A001-w1", "A002-w2", "text"]
    assert sink.cut == []


def test_a_call_by_name_is_refused_like_free_text(clips: ClipSet) -> None:
    async def main() -> None:
        driver = VoiceDriver(clips, SlowSink(), asyncio.Queue())
        with pytest.raises(ValueError, match="control"):
            driver.announce("A001", 1, spoken="请张\n女士")
        with pytest.raises(ValueError, match="window number"):
            driver.announce("A001", 0, spoken="请张女士")
        assert driver.pending == 0

    asyncio.run(main())
