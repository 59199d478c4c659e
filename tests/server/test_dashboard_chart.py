"""The usage chart's geometry: one bar per day of the period, heights to scale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloud_server.dashboard.chart import HEIGHT, daily_chart


def test_one_bar_per_day_of_the_period_scaled_to_the_busiest_day() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    end = datetime(2026, 12, 1, tzinfo=UTC)
    chart = daily_chart(start, end, {start.date(): 2, (start + timedelta(days=3)).date(): 4})
    assert len(chart.bars) == 30
    assert chart.bars[0].day == start.date() and chart.bars[-1].day.day == 30
    assert chart.peak == 4
    tallest, half = chart.bars[3], chart.bars[0]
    assert abs(half.height * 2 - tallest.height) < 1e-9
    assert chart.bars[1].height == 0
    assert all(0 <= b.y <= HEIGHT and b.x + b.width <= chart.width for b in chart.bars)
    # Labels stay readable: at most about eight along the axis.
    assert 4 <= sum(b.label is not None for b in chart.bars) <= 8
