"""Fuzz budgets: hypothesis profiles ``ci`` (default) and ``fuzz`` (ONEDOOR_FUZZ_PROFILE=fuzz).

Registered here, for this folder only; each fuzz test applies the active one
with ``tests.fuzz.harness.fuzz_settings`` so no other test's settings change.
"""

from __future__ import annotations

from tests.fuzz.harness import register_profiles

register_profiles()
