"""The reports' charts, drawn here as inline SVG (no script, no library): stacked bars of the answer
codes per operation, a latency histogram with its p50 and p99, and lines of counts over time.

Each function returns the SVG as Markup for the templates; ElementTree escapes every label.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence

from markupsafe import Markup

__all__ = ["ANSWER_CLASSES", "answer_bars", "latency_histogram", "lines_over_time", "percentile"]

# The answer classes in the order they are stacked, with their colours: success first, then the
# document's codes, then what is outside the envelope.
ANSWER_CLASSES: tuple[tuple[str, str], ...] = (
    ("0", "#2e7d32"),
    ("-1", "#f2a900"),
    ("-2", "#0072b2"),
    ("-3", "#56b4e9"),
    ("-4", "#cc79a7"),
    ("-5", "#a05195"),
    ("-6", "#009e73"),
    ("-7", "#8f9c2b"),
    ("-8", "#d55e00"),
    ("-9", "#7f7f7f"),
    ("unmapped code", "#5e35b1"),
    ("no response code", "#9575cd"),
    ("not JSON / truncated", "#e377c2"),
    ("HTTP 4xx", "#8d6e63"),
    ("HTTP 5xx", "#c62828"),
    ("no answer", "#212121"),
)
_WIDTH = 720
_FONT = 12


def _svg(width: float, height: float, title: str) -> ET.Element:
    svg = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "viewBox": f"0 0 {width:g} {height:g}",
            "width": f"{width:g}",
            "height": f"{height:g}",
            "role": "img",
            "class": "chart",
            "font-size": str(_FONT),
        },
    )
    ET.SubElement(svg, "title").text = title
    return svg


def _markup(svg: ET.Element) -> Markup:
    return Markup(ET.tostring(svg, encoding="unicode", short_empty_elements=True))  # escaped by ElementTree


def _text(parent: ET.Element, x: float, y: float, text: str, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, "text", {"x": f"{x:.1f}", "y": f"{y:.1f}", **attributes})
    element.text = text
    return element


def _rect(parent: ET.Element, x: float, y: float, width: float, height: float, fill: str) -> ET.Element:
    return ET.SubElement(
        parent,
        "rect",
        {"x": f"{x:.1f}", "y": f"{y:.1f}", "width": f"{width:.1f}", "height": f"{height:.1f}", "fill": fill},
    )


def _line(parent: ET.Element, x1: float, y1: float, x2: float, y2: float, **attributes: str) -> None:
    ET.SubElement(
        parent,
        "line",
        {"x1": f"{x1:.1f}", "y1": f"{y1:.1f}", "x2": f"{x2:.1f}", "y2": f"{y2:.1f}", **attributes},
    )


def _nice_step(upper: float, ticks: int = 4) -> float:
    """A round step (1, 2 or 5 times a power of ten) that cuts 0..upper in about `ticks` parts."""
    if upper <= 0:
        return 1.0
    raw = upper / ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return float(factor * power)
    return float(10 * power)


def _ticks(upper: float) -> list[float]:
    step = _nice_step(upper)
    count = math.ceil(upper / step - 1e-9)
    return [step * i for i in range(count + 1)]


def _number(value: float) -> str:
    return f"{value:g}" if value >= 10 or value == int(value) else f"{value:.2g}"


def _legend(svg: ET.Element, y: float, items: Sequence[tuple[str, str]], left: float = 0) -> float:
    """Swatches and names, wrapped to the chart's width; returns the y below the legend."""
    x = left
    for name, colour in items:
        width = 18 + 7 * len(name) + 14
        if x + width > _WIDTH:
            x, y = left, y + 18
        _rect(svg, x, y - 10, 12, 12, colour)
        _text(svg, x + 16, y, name)
        x += width
    return y + 18


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (`fraction` in 0..1); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def answer_bars(rows: Mapping[str, Mapping[str, int]], *, title: str) -> Markup:
    """One horizontal bar per operation, stacked by answer class (ANSWER_CLASSES), counts on hover
    and the total at the end; a legend of the classes present."""
    label_width, bar_left, row_height = 200, 210, 28
    present = [(name, colour) for name, colour in ANSWER_CLASSES if any(r.get(name) for r in rows.values())]
    most = max((sum(counts.values()) for counts in rows.values()), default=0) or 1
    span = _WIDTH - bar_left - 60
    height = 20 + row_height * max(1, len(rows)) + 18 * (1 + len(present) // 6) + 16
    svg = _svg(_WIDTH, height, title)
    y = 14.0
    if not rows:
        _text(svg, 0, y + 10, "no answers")
    for operation, counts in rows.items():
        _text(svg, label_width, y + 15, operation, **{"text-anchor": "end", "class": "label"})
        x = float(bar_left)
        for name, colour in ANSWER_CLASSES:
            count = counts.get(name, 0)
            if not count:
                continue
            width = span * count / most
            segment = _rect(svg, x, y, width, row_height - 8, colour)
            segment.set("data-class", name)
            ET.SubElement(segment, "title").text = f"{operation}: {count} answered {name}"
            x += width
        _text(svg, x + 6, y + 15, str(sum(counts.values())))
        y += row_height
    _legend(svg, y + 16, present, left=bar_left)
    return _markup(svg)


def latency_histogram(milliseconds: Sequence[float], *, title: str, bins: int = 30) -> Markup:
    """How long answers took: a histogram (the slowest 1 % folded into the last bar when they are far
    out), with lines at p50 and p99."""
    left, right, top, bottom = 48, 16, 34, 40
    height = 240
    svg = _svg(_WIDTH, height, title)
    plot_width, plot_height = _WIDTH - left - right, height - top - bottom
    if not milliseconds:
        _text(svg, left, top + 20, "no answers")
        return _markup(svg)
    p50, p99 = percentile(milliseconds, 0.50), percentile(milliseconds, 0.99)
    slowest = max(milliseconds)
    upper = slowest if slowest <= 2 * p99 else 1.5 * p99
    upper = max(upper, 1e-3)
    width = upper / bins
    counts = [0] * bins
    for value in milliseconds:
        counts[min(bins - 1, int(value / width))] += 1
    tallest = max(counts)
    y_ticks = _ticks(tallest)
    y_top = y_ticks[-1] or 1

    def x_of(value: float) -> float:
        return left + plot_width * min(value, upper) / upper

    def y_of(count: float) -> float:
        return top + plot_height * (1 - count / y_top)

    for tick in y_ticks:
        _line(svg, left, y_of(tick), left + plot_width, y_of(tick), **{"class": "grid"})
        _text(svg, left - 6, y_of(tick) + 4, _number(tick), **{"text-anchor": "end"})
    for index, count in enumerate(counts):
        if count:
            bar = _rect(
                svg,
                x_of(index * width) + 0.5,
                y_of(count),
                plot_width / bins - 1,
                top + plot_height - y_of(count),
                "#5b7fa6",
            )
            low, high = index * width, (index + 1) * width
            last = " or more" if index == bins - 1 and slowest > upper else ""
            ET.SubElement(bar, "title").text = f"{count} answers in {low:.1f}-{high:.1f} ms{last}"
    for tick in _ticks(upper):
        if tick <= upper:
            _text(svg, x_of(tick), top + plot_height + 16, _number(tick), **{"text-anchor": "middle"})
    _text(svg, left + plot_width / 2, height - 6, "milliseconds", **{"text-anchor": "middle"})
    # The p50 label on the first row above the plot, the p99 one on the second, each on the side of
    # its line that has room.
    for row, (name, value, colour) in enumerate((("p50", p50, "#1b5e20"), ("p99", p99, "#b71c1c"))):
        x = x_of(value)
        _line(
            svg,
            x,
            14 + 12 * row,
            x,
            top + plot_height,
            stroke=colour,
            **{"stroke-dasharray": "4 3", "stroke-width": "1.5"},
        )
        right_side = x < left + plot_width * 0.7
        label = _text(
            svg, x + (4 if right_side else -4), 12 + 12 * row, f"{name} {value:.1f} ms", fill=colour
        )
        label.set("text-anchor", "start" if right_side else "end")
        label.set("class", f"mark {name}")
    return _markup(svg)


def lines_over_time(
    series: Mapping[str, Sequence[tuple[float, float]]], *, title: str, duration: float
) -> Markup:
    """Cumulative counts (one line per series, e.g. cases and requests) against seconds since the start."""
    left, right, top, bottom = 48, 16, 12, 58
    height = 230
    colours = ("#0072b2", "#d55e00", "#009e73", "#7f7f7f")
    svg = _svg(_WIDTH, height, title)
    plot_width, plot_height = _WIDTH - left - right, height - top - bottom
    tallest = max((points[-1][1] for points in series.values() if points), default=0)
    y_ticks = _ticks(max(tallest, 1))
    x_ticks = _ticks(max(duration, 1e-3))
    x_top, y_top = x_ticks[-1], y_ticks[-1]

    def x_of(seconds: float) -> float:
        return left + plot_width * seconds / x_top

    def y_of(count: float) -> float:
        return top + plot_height * (1 - count / y_top)

    for tick in y_ticks:
        _line(svg, left, y_of(tick), left + plot_width, y_of(tick), **{"class": "grid"})
        _text(svg, left - 6, y_of(tick) + 4, _number(tick), **{"text-anchor": "end"})
    for tick in x_ticks:
        _text(svg, x_of(tick), top + plot_height + 16, _number(tick), **{"text-anchor": "middle"})
    _text(
        svg,
        left + plot_width / 2,
        top + plot_height + 32,
        "seconds since the start",
        **{"text-anchor": "middle"},
    )
    legend = []
    for (name, points), colour in zip(series.items(), colours, strict=False):
        if not points:
            continue
        # Steps: a count holds until the next event.
        path = [(0.0, 0.0)]
        for seconds, count in points:
            path += [(seconds, path[-1][1]), (seconds, count)]
        path.append((duration, path[-1][1]))
        ET.SubElement(
            svg,
            "polyline",
            {
                "points": " ".join(f"{x_of(s):.1f},{y_of(c):.1f}" for s, c in path),
                "fill": "none",
                "stroke": colour,
                "stroke-width": "2",
                "class": "series",
                "data-series": name,
            },
        )
        legend.append((f"{name} ({points[-1][1]:g})", colour))
    _legend(svg, height - 6, legend, left=left)
    return _markup(svg)
