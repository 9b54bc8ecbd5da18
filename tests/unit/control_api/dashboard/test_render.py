"""The dashboard's wording (control_api/dashboard/render.py): durations as people say them."""

from __future__ import annotations

from control_api.dashboard.render import seconds


def test_durations_read_like_people_say_them() -> None:
    assert [seconds(v) for v in (None, 0.0123, 12.34, 200, 7500)] == [
        "—",
        "12 ms",
        "12.3 s",
        "3 min 20 s",
        "2 h 5 min",
    ]
