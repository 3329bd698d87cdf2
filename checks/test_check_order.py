"""The order ``checks/conftest.py`` gives the collected checks: reordering keeps every check."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from checks.conftest import _run_after_what_they_reuse


def collected(name: str, reuses: str | None = None) -> SimpleNamespace:
    """What the ordering reads of a collected test: its node id and its ``reuses`` marker."""
    marker = pytest.mark.reuses(reuses).mark if reuses else None
    return SimpleNamespace(
        nodeid=f"checks/test_x.py::{name}", get_closest_marker=lambda _name: marker
    )


def test_a_follower_that_leads_in_turn_follows_its_leader_and_is_followed() -> None:
    items = [
        collected("test_c", reuses="test_b"),
        collected("test_b", reuses="test_a"),
        collected("test_a"),
        collected("test_z", reuses="test_not_collected"),
    ]
    _run_after_what_they_reuse(items)
    order = [item.nodeid.split("::")[1] for item in items]
    assert order == ["test_a", "test_b", "test_c", "test_z"]
