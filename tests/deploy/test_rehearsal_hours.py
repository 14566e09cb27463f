"""The opening hours the rehearsal pushes are valid at every time of day.

The rehearsal runs whenever CI does; at 23:40 in the hall's time zone its "open now"
hours became 00:00–23:59 with the reset at 03:00, which the edge rightly refuses (the
reset inside opening hours), and every playbook run failed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.config import load_config
from tests.deploy.releases import hours_around
from tests.edge.sites import site_toml

MIDNIGHT = datetime(2026, 12, 7, tzinfo=ZoneInfo("Asia/Shanghai"))


def _hours_table(hours: dict[str, str]) -> str:
    return "[hours]\n" + "".join(f'{key} = "{value}"\n' for key, value in hours.items())


@pytest.mark.parametrize("minute", range(0, 24 * 60, 10))
def test_the_rehearsals_hours_at_any_time(tmp_path: Path, minute: int) -> None:
    now = MIDNIGHT + timedelta(minutes=minute)
    opened, closed = hours_around(now, open_now=True), hours_around(now, open_now=False)
    assert opened["reset"] == closed["reset"], "one business day for the whole rehearsal"
    for hours, open_now in ((opened, True), (closed, False)):
        config = load_config(site_toml(tmp_path, hours=_hours_table(hours)), check_files=False)
        start, end = config.hours.open_minute, config.hours.close_minute
        assert (start <= minute < end) == open_now, hours
    # A new day (numbers restart) is not due within the rehearsal's hour.
    assert (config.hours.reset_minute - minute) % (24 * 60) > 60
