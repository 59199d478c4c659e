"""The usage bar chart as plain SVG geometry (rendered by the template; no JavaScript)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

WIDTH = 640
HEIGHT = 180
TOP = 16
BOTTOM = 24
MAX_DAYS = 62
MAX_BAR_WIDTH = 28.0


@dataclass(frozen=True, slots=True)
class Bar:
    day: date
    messages: int
    x: float
    y: float
    width: float
    height: float
    label: str | None


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar]
    peak: int
    width: int = WIDTH
    height: int = HEIGHT
    baseline: int = HEIGHT - BOTTOM


def daily_chart(start: datetime, end: datetime, per_day: dict[date, int]) -> Chart:
    """One bar per day of the whole period (days without messages, or still to come, are
    empty), so the scale is the period's from its first day on."""
    first = start.astimezone(UTC).date()
    last = max(first, (end - timedelta(microseconds=1)).astimezone(UTC).date())
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)][:MAX_DAYS]
    peak = max([per_day.get(d, 0) for d in days] + [1])
    slot = WIDTH / max(len(days), 1)
    usable = HEIGHT - TOP - BOTTOM
    bars = []
    for index, day in enumerate(days):
        count = per_day.get(day, 0)
        height = usable * count / peak
        every = max(1, math.ceil(len(days) / 8))
        width = min(slot * 0.7, MAX_BAR_WIDTH)
        bars.append(
            Bar(
                day=day,
                messages=count,
                x=index * slot + (slot - width) / 2,
                y=TOP + usable - height,
                width=width,
                height=height,
                label=day.strftime("%d %b") if index % every == 0 else None,
            )
        )
    return Chart(bars=bars, peak=peak)
