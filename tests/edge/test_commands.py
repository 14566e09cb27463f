"""The central's commands against a hall with a real voice driver (WAV files) and no
LED screens: what cannot be done is the command's error, never a silent ok."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from edge.clock import ManualClock
from edge.commands import RemoteCommands
from edge.config import load_config
from edge.device_set import DeviceSet
from edge.devices.voice import MAX_WAITING_TEXTS, VoiceDriver
from edge.devices_factory import build_devices
from edge.errors import CommandFailed
from edge.hall import open_hall
from edge.outputs import HallOutputs
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import site_toml
from tests.edge.test_hall import OPENING


def cmd(args: mm.CommandArgs) -> mm.Cmd:
    return mm.Cmd(site="test-site", id=uuid.uuid4(), issued_ts=OPENING,
                  expires_ts=OPENING + 60_000, args=args)


def _no_diagnostics(_cmd: mm.Cmd, _args: mm.DiagnosticsArgs) -> mm.Diagnostics:
    raise AssertionError("not asked for here")


def test_announcements_are_said_until_the_voice_queue_is_full_then_refused(
        tmp_path: Path, clips_dir: Path) -> None:
    (tmp_path / "calls").mkdir()
    config = load_config(site_toml(tmp_path, extra=(
        f'[devices.audio]\noutput = "wav"\nwav_dir = "calls"\nclips_dir = "{clips_dir}"\n')))
    hall = open_hall(config, ManualClock(OPENING))

    async def scenario() -> None:
        devices = DeviceSet(build_devices, asyncio.Queue())
        devices.build(config, [], hall.device_status)
        commands = RemoteCommands(hall, devices, HallOutputs(hall, devices),
                                  lambda version: hall.reject_config("v", ["unused"]),
                                  _no_diagnostics)
        announce = mm.AnnounceArgs(text="今日十六点停止取号", repeat=2)
        for _ in range(MAX_WAITING_TEXTS):
            await commands(cmd(announce))  # queued: said after any ticket call
        with pytest.raises(CommandFailed, match="voice queue"):
            await commands(cmd(announce))
        assert devices.announcer is not None
        assert isinstance(devices.announcer, VoiceDriver)
        assert devices.announcer.pending == MAX_WAITING_TEXTS
        with pytest.raises(CommandFailed, match="no LED screens"):
            await commands(cmd(mm.ScreenNoticeArgs(text="系统维护", screen=None,
                                                   duration_s=60)))
        hall.issue("shebao")
        with pytest.raises(CommandFailed, match="no printer"):
            await commands(cmd(mm.ReprintArgs(ticket="A001")))
        with pytest.raises(CommandFailed, match="unknown ticket B009"):
            await commands(cmd(mm.ReprintArgs(ticket="B009")))

    try:
        asyncio.run(scenario())
    finally:
        hall.journal.close()
