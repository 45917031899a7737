"""Geometry for the review page's server-drawn SVG charts (no JavaScript chart library).

Pure: values in, rectangles and ticks out; ``templates/macros/charts.html`` draws them
with a <title>, labelled axes and a table of the same numbers beside every chart.
Colours are classes (``series-0`` …) styled in static/pages.css: the CSP allows no
inline styles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 44
SERIES = 6  # distinct colour classes; more series reuse them


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    series: int
    value: int
    label: str  # what the bar is, for its tooltip <title>
    href: str


@dataclass(frozen=True, slots=True)
class Tick:
    at: float
    text: str


@dataclass(frozen=True, slots=True)
class Chart:
    rects: list[Rect]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM
    right: int = WIDTH - RIGHT


@dataclass(frozen=True, slots=True)
class Column:
    """One x position: its label and stacked (series, value, label, href) parts."""

    label: str
    parts: Sequence[tuple[int, int, str, str]]


def nice_max(value: int) -> int:
    """A round top for the axis: 1, 2, 5 × 10ⁿ at or above ``value``."""
    if value <= 0:
        return 1
    power: int = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def tick_values(top: int) -> list[int]:
    """Whole, evenly spaced axis values from 0 to ``top`` (a ``nice_max``)."""
    for parts in (5, 4, 2):
        if top >= parts and top % parts == 0:
            return list(range(0, top + 1, top // parts))
    return [0, top]


def columns(cols: Sequence[Column], *, every: int = 1) -> Chart:
    """Vertical (stacked) bars, one column per x position; every ``every``-th label shown."""
    inner_w = WIDTH - LEFT - RIGHT
    inner_h = HEIGHT - TOP - BOTTOM
    top = nice_max(max((sum(p[1] for p in c.parts) for c in cols), default=0))
    slot = inner_w / max(1, len(cols))
    bar_w = max(1.0, slot * 0.7)
    rects: list[Rect] = []
    x_ticks: list[Tick] = []
    for i, c in enumerate(cols):
        x = LEFT + i * slot + (slot - bar_w) / 2
        base: float = HEIGHT - BOTTOM
        for series, value, label, href in c.parts:
            if value <= 0:
                continue
            h = inner_h * value / top
            base -= h
            rects.append(Rect(x, base, bar_w, h, series % SERIES, value, label, href))
        if i % every == 0:
            x_ticks.append(Tick(LEFT + i * slot + slot / 2, c.label))
    y_ticks = [Tick(HEIGHT - BOTTOM - inner_h * v / top, f"{v:,}") for v in tick_values(top)]
    return Chart(rects, x_ticks, y_ticks)


def bars(rows: Sequence[tuple[str, int, str]]) -> Chart:
    """Horizontal bars, one row each (label, value, href), largest scale on the x axis."""
    height = TOP + BOTTOM + 26 * max(1, len(rows))
    left = 150
    inner_w = WIDTH - left - RIGHT
    top = nice_max(max((v for _l, v, _h in rows), default=0))
    rects = [
        Rect(left, TOP + 26 * i + 4, inner_w * value / top, 18, 0, value, label, href)
        for i, (label, value, href) in enumerate(rows)
    ]
    y_ticks = [Tick(TOP + 26 * i + 17, label) for i, (label, _v, _h) in enumerate(rows)]
    x_ticks = [Tick(left + inner_w * v / top, f"{v:,}") for v in tick_values(top)]
    return Chart(rects, x_ticks, y_ticks, height=height, left=left, bottom=height - BOTTOM)
