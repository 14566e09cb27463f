"""What a config needs of this machine, checked before the daemon runs on it.

``onedoor edge check-config FILE`` runs :func:`check_machine` after the config
itself passed (``--skip-files`` skips both this and the TLS/password files, to
check a site's file on another machine). Errors are what ``onedoor edge run``
would stop on; warnings are what it runs without (a driver it reports offline):

* error: the journal's folder cannot be created or written, or the journal
  file cannot be written (the daemon cannot journal a single ticket);
* warning: a voice clip folder missing or incomplete (the voice stays silent
  until ``onedoor edge make-clips``), the folder for WAV announcements cannot be
  made, a serial port that does not exist (yet: a USB adapter unplugged);
* warning, though ``run`` stops on it with the same message: the gpiozero pin
  factory's Python module is not installed here. A control node checks a Pi's
  file without the Pi's GPIO module, so this does not refuse the file; on the
  Pi (Ansible validates there) the ``onedoor[pi]`` extra brings it.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from edge.config import EdgeConfig

# gpiozero pin factory -> the module it needs (gpiozero imports it when the factory starts)
_PIN_FACTORY_MODULES = {"lgpio": "lgpio", "rpigpio": "RPi.GPIO", "pigpio": "pigpio"}


@dataclass(slots=True)
class Findings:
    """``"key.path: message"`` strings, as :class:`~edge.errors.ConfigInvalid` gives."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _first_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _creatable_dir(path: Path) -> str | None:
    """None when ``path`` is (or can be made) a folder this process may write in."""
    try:
        if path.exists():
            if not path.is_dir():
                return f"{path} is not a folder"
            if not os.access(path, os.W_OK | os.X_OK):
                return f"cannot write in {path}"
            return None
        base = _first_existing(path)
        if not base.is_dir():
            return f"cannot create {path}: {base} is not a folder"
        if not os.access(base, os.W_OK | os.X_OK):
            return f"cannot create {path}: cannot write in {base}"
    except (OSError, ValueError) as exc:
        return f"cannot use {path}: {exc}"
    return None


def _journal(config: EdgeConfig, findings: Findings) -> None:
    journal = Path(config.paths.journal)
    problem = _creatable_dir(journal.parent)
    if problem is None and journal.exists() and not os.access(journal, os.R_OK | os.W_OK):
        problem = f"cannot write {journal}"
    if problem is not None:
        findings.errors.append(f"paths.journal: {problem}")


def _clips(config: EdgeConfig, findings: Findings) -> None:
    from edge.devices.voice import CLIP_NAMES  # the voice module is heavy; only when needed

    audio = config.devices.audio
    if audio is None:
        return
    clips = Path(audio.clips_dir)
    override = None if config.paths.clips is None else Path(config.paths.clips)
    if override is not None and not override.is_dir():
        findings.warnings.append(f"paths.clips: no folder {override}: the voice stays silent")
    if not clips.is_dir():
        findings.warnings.append(f"devices.audio.clips_dir: no folder {clips}: the voice stays "
                                 f"silent until `onedoor edge make-clips {clips}`")
    else:
        folders = [clips] if override is None else [override, clips]
        missing = [name for name in CLIP_NAMES
                   if not any((folder / f"{name}.wav").is_file() for folder in folders)]
        if missing:
            findings.warnings.append(
                f"devices.audio.clips_dir: {len(missing)} clip(s) missing in {clips} "
                f"({', '.join(missing[:5])}...): the voice stays silent until "
                f"`onedoor edge make-clips {clips}`")
    if audio.output == "wav" and audio.wav_dir is not None:
        problem = _creatable_dir(Path(audio.wav_dir))
        if problem is not None:
            findings.warnings.append(f"devices.audio.wav_dir: {problem}")


def _ports(config: EdgeConfig, findings: Findings) -> None:
    devices = config.devices
    for name, bus in (("printer", devices.printer), ("screens", devices.screens),
                      ("terminals", devices.terminals), ("id_card", devices.id_card)):
        if bus is None or "://" in bus.port:  # pyserial URLs (socket://...) are not files
            continue
        try:
            present = Path(bus.port).exists()
        except (OSError, ValueError):
            present = False
        if not present:
            findings.warnings.append(f"devices.{name}.port: {bus.port} does not exist (yet): "
                                     "the driver reports it offline and retries")


def _pin_factory(config: EdgeConfig, findings: Findings) -> None:
    gpio = config.devices.gpio
    if gpio is None or gpio.pin_factory in ("mock", "native"):
        return
    if os.environ.get("ONEDOOR_GPIO_MOCK") == "1":
        return
    module = _PIN_FACTORY_MODULES[gpio.pin_factory]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        findings.warnings.append(
            f"devices.gpio.pin_factory: {gpio.pin_factory} needs the Python module {module}, "
            "not installed here: `onedoor edge run` stops on this machine")


def check_machine(config: EdgeConfig) -> Findings:
    """What ``config`` needs of this machine (module docstring)."""
    findings = Findings()
    _journal(config, findings)
    _clips(config, findings)
    _ports(config, findings)
    _pin_factory(config, findings)
    return findings


__all__ = ["Findings", "check_machine"]
