"""Dashboard pieces that need no services: the chart's geometry, the login's redirect target, the
patch diff, and the duration wording."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from control_api.dashboard.chart import BOTTOM, HEIGHT, chart
from control_api.dashboard.deadletters import payload_diff
from control_api.dashboard.render import seconds
from control_api.dashboard.session import safe_next
from core.engine.stats import MinutePoint

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_the_chart_stacks_failures_on_successes_on_a_readable_scale() -> None:
    points = [MinutePoint(T0 + timedelta(minutes=i), 0, 0, 0) for i in range(60)]
    points[59] = MinutePoint(T0 + timedelta(minutes=59), 30, 7, 2)
    c = chart(points)
    assert len(c.bars) == 60
    assert c.scale[0][1] == "50"  # 37 rounds up to 50
    last = c.bars[-1]
    plot = HEIGHT - BOTTOM
    assert last.ok_height == round(plot * 30 / 50, 1)
    assert last.failed_y + last.failed_height == last.ok_y  # failures sit on top of successes
    assert last.title == "09:59 UTC: 30 succeeded, 7 failed, 2 dead"
    assert [text for _, text in c.labels] == ["09:00", "09:15", "09:30", "09:45"]
    assert (c.succeeded, c.failed, c.dead) == (30, 7, 2)
    idle = chart([MinutePoint(T0, 0, 0, 0)])
    assert idle.bars[0].ok_height == 0 and idle.scale[0][1] == "1"


def test_after_login_only_a_dashboard_path() -> None:
    assert safe_next("/dashboard/dead-letters?type=x") == "/dashboard/dead-letters?type=x"
    for bad in (None, "", "https://evil.example/dashboard", "//evil.example", "/v1/jobs", "/dashboard/login"):
        assert safe_next(bad) == "/dashboard"


def test_the_patch_diff_marks_removed_and_added_lines() -> None:
    lines = payload_diff({"chat_id": "c1", "by": 2}, {"chat_id": "c2"})
    assert ("del", '-  "by": 2,') in lines
    assert ("del", '-  "chat_id": "c1"') in lines
    assert ("add", '+  "chat_id": "c2"') in lines
    assert ("same", " {") in lines


def test_durations_read_like_people_say_them() -> None:
    assert [seconds(v) for v in (None, 0.0123, 12.34, 200, 7500)] == [
        "—",
        "12 ms",
        "12.3 s",
        "3 min 20 s",
        "2 h 5 min",
    ]
