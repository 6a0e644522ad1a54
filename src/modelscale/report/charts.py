"""Charts as plain data, drawn by plotly.js in the HTML report and by matplotlib for Markdown.

A section builds ``Chart`` values; the renderers turn them into a plotly figure (``to_plotly``)
or a PNG (``modelscale.report.markdown``). Only what both can draw is allowed: lines, markers,
bars, error bars and log axes, which is also all the basic plotly.js bundle (scatter, bar, pie)
carries. Numbers are rounded to 4 significant digits before they are written: a report is read,
not recomputed, and it keeps the file small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Chart", "Trace", "to_plotly"]

Mode = Literal["lines+markers", "markers", "lines", "bar"]


def _round(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, float | int):
        return v
    f = float(v)
    if not math.isfinite(f):
        return None
    if f == 0.0 or isinstance(v, int):
        return v
    return float(f"{f:.4g}")


@dataclass(frozen=True)
class Trace:
    """One series.

    Attributes:
        name: Its legend entry.
        x: X values (numbers or category labels).
        y: Y values (None: no value there).
        mode: How it is drawn.
        error_low: Distance from y down to the lower end of its interval, per point.
        error_high: Distance from y up to the upper end.
        text: Hover text per point.
    """

    name: str
    x: Sequence[Any]
    y: Sequence[float | None]
    mode: Mode = "lines+markers"
    error_low: Sequence[float] | None = None
    error_high: Sequence[float] | None = None
    text: Sequence[str] | None = None


@dataclass(frozen=True)
class Chart:
    """One chart of a section.

    Attributes:
        key: A stable id within the report (the element's id in HTML, the PNG's file name).
        title: What it shows.
        x_title: The x axis.
        y_title: The y axis.
        traces: Its series.
        x_log: Log scale on x.
        y_log: Log scale on y.
        hline: A horizontal reference line (an objective) and its label.
    """

    key: str
    title: str
    x_title: str
    y_title: str
    traces: tuple[Trace, ...]
    x_log: bool = False
    y_log: bool = False
    hline: tuple[float, str] | None = None

    @property
    def points(self) -> int:
        """How many values it draws."""
        return sum(sum(v is not None for v in t.y) for t in self.traces)


def _trace(t: Trace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": t.name,
        "x": [_round(v) for v in t.x],
        "y": [_round(v) for v in t.y],
    }
    if t.mode == "bar":
        out["type"] = "bar"
    else:
        out["type"] = "scatter"
        out["mode"] = t.mode
    if t.error_low is not None or t.error_high is not None:
        high = [_round(v) for v in (t.error_high or t.error_low or [])]
        low = [_round(v) for v in (t.error_low or t.error_high or [])]
        out["error_y"] = {"type": "data", "symmetric": False, "array": high, "arrayminus": low}
    if t.text is not None:
        out["text"] = list(t.text)
        out["hoverinfo"] = "text+name"
    return out


def to_plotly(chart: Chart) -> dict[str, Any]:
    """The chart as a plotly figure: ``{"data": [...], "layout": {...}}``."""
    layout: dict[str, Any] = {
        "title": {"text": chart.title, "font": {"size": 14}},
        "xaxis": {"title": {"text": chart.x_title}, "type": "log" if chart.x_log else "-"},
        "yaxis": {"title": {"text": chart.y_title}, "type": "log" if chart.y_log else "-"},
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "height": 320,
        "legend": {"orientation": "h", "y": -0.25},
        "barmode": "group",
    }
    data = [_trace(t) for t in chart.traces]
    if chart.hline is not None:
        # A line trace rather than a layout shape: shapes on a log axis take log10 values.
        value, label = chart.hline
        xs: list[Any] = []
        for t in chart.traces:
            xs += [x for x in t.x if x not in xs]
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": label,
                "x": [_round(x) for x in xs],
                "y": [_round(value)] * len(xs),
                "line": {"dash": "dash", "color": "#c0392b", "width": 1},
            }
        )
    return {"data": data, "layout": layout}
