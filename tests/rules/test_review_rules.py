"""The review's definitions (web/rules/review.py) and chart axes (web/services/charts.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from web.rules import review as rules
from web.services import charts

T = datetime(2026, 3, 1, tzinfo=UTC)


def test_percentiles_by_nearest_rank_and_the_median() -> None:
    assert rules.percentile(list(range(1, 11)), 0.9) == 9
    assert rules.percentile(list(range(1, 21)), 0.9) == 18
    assert rules.percentile([5.0], 0.9) == 5.0
    assert rules.percentile([], 0.9) is None
    assert rules.median([1, 2, 3, 10]) == 2.5


def test_success_rate_counts_only_answered_refunds() -> None:
    assert rules.success_rate(2, 1, 1) == 0.5
    assert rules.success_rate(0, 0, 0) is None


def test_far_above_means_more_than_twice_the_others_median() -> None:
    assert rules.far_above(10, [2, 3, 4])  # 10 > 2 × 3
    assert not rules.far_above(6, [2, 3, 4])  # 6 is exactly 2 × 3
    assert not rules.far_above(100, [3])  # one other agent is no team to compare with


def test_final_moment_per_status() -> None:
    later = datetime(2026, 3, 2, tzinfo=UTC)
    assert (
        rules.final_at("processing", refunded_at=later, decided_at=None, updated_at=later) is None
    )
    assert rules.final_at("succeeded", refunded_at=later, decided_at=T, updated_at=T) == later
    assert rules.final_at("rejected", refunded_at=None, decided_at=later, updated_at=T) == later
    assert rules.final_at("failed", refunded_at=None, decided_at=None, updated_at=later) == later


def test_axis_ticks_are_whole_and_match_the_scale() -> None:
    assert charts.nice_max(0) == 1 and charts.nice_max(7) == 10 and charts.nice_max(3) == 5
    assert charts.tick_values(5) == [0, 1, 2, 3, 4, 5]
    assert charts.tick_values(10) == [0, 2, 4, 6, 8, 10]
    assert charts.tick_values(1) == [0, 1]
    chart = charts.columns([charts.Column("a", [(0, 3, "a", "/x")])])
    (bar,) = chart.rects
    three = next(t for t in chart.y_ticks if t.text == "3")
    assert abs(bar.y - three.at) < 1e-6  # a bar of 3 ends exactly at the "3" grid line
