"""The throughput chart: one stacked bar per minute, hour or day (succeeded below, failed above),
drawn as SVG on the server, so it needs no script and no charting library."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from core.engine.stats import MinutePoint

WIDTH, HEIGHT = 720, 160
#: Room at the left for the scale and at the bottom for the time labels.
LEFT, BOTTOM = 40, 18
#: A time label every this many minutes.
LABEL_EVERY = 15

Unit = Literal["minute", "hour", "day"]
#: Per unit: how a bar's time is written in its tooltip and under the axis, and which bars get a label.
_STAMPS = {"minute": "%H:%M", "hour": "%d %b %H:00", "day": "%d %b"}
_LABELS = {"minute": "%H:%M", "hour": "%H:00", "day": "%d %b"}


def _labelled(unit: Unit, moment: datetime) -> bool:
    if unit == "minute":
        return moment.minute % LABEL_EVERY == 0
    if unit == "hour":
        return moment.hour % 6 == 0
    return moment.day % 5 == 1


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    ok_y: float
    ok_height: float
    failed_y: float
    failed_height: float
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    left: int
    plot_height: int
    bars: list[Bar]
    #: (y, text) of the scale lines.
    scale: list[tuple[float, str]]
    #: (x, text) of the time labels.
    labels: list[tuple[float, str]]
    succeeded: int
    failed: int
    dead: int


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at least ``value``, so the scale reads well."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= value:
                return step * m
        step *= 10


def chart(points: list[MinutePoint], unit: Unit = "minute") -> Chart:
    plot_h = HEIGHT - BOTTOM
    top = _nice_ceiling(max([p.succeeded + p.failed for p in points] + [1]))
    slot = (WIDTH - LEFT) / max(len(points), 1)
    bars, labels = [], []
    for i, p in enumerate(points):
        x = LEFT + i * slot
        ok_h = plot_h * p.succeeded / top
        failed_h = plot_h * p.failed / top
        stamp = p.minute.strftime(_STAMPS[unit])
        bars.append(
            Bar(
                x=round(x + 1, 1),
                width=round(max(slot - 2, 1), 1),
                ok_y=round(plot_h - ok_h, 1),
                ok_height=round(ok_h, 1),
                failed_y=round(plot_h - ok_h - failed_h, 1),
                failed_height=round(failed_h, 1),
                title=f"{stamp} UTC: {p.succeeded} succeeded, {p.failed} failed, {p.dead} dead",
            )
        )
        if _labelled(unit, p.minute):
            labels.append((round(x, 1), p.minute.strftime(_LABELS[unit])))
    scale = [(0.0, str(top)), (plot_h / 2, str(top // 2) if top > 1 else ""), (float(plot_h), "0")]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        plot_height=plot_h,
        bars=bars,
        scale=scale,
        labels=labels,
        succeeded=sum(p.succeeded for p in points),
        failed=sum(p.failed for p in points),
        dead=sum(p.dead for p in points),
    )
