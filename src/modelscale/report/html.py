"""The report as one self-contained HTML file: plotly.js (the basic bundle) inlined once.

The file opens offline: no CDN, no fonts, no request to anything. Chart data travels as one
JSON document in the page, read by a few lines of script that draw each chart into its element.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import jinja2

from modelscale.machine import machine_info
from modelscale.report.api import Report
from modelscale.report.charts import to_plotly

__all__ = ["PLOTLY_BUNDLE", "render_html"]

_HERE = pathlib.Path(__file__).parent
PLOTLY_BUNDLE = _HERE / "assets" / "plotly-basic.min.js"


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@functools.cache
def _plotly_js() -> str:
    # Read once per process: 1.2 MB, the same for every report.
    return PLOTLY_BUNDLE.read_text(encoding="utf-8").replace("</script", "<\\/script")


def _script_json(value: Any) -> str:
    # "</" would end the <script> element early; "<\/" is the same string to JSON.
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def render_html(report: Report) -> str:
    """The report as an HTML document."""
    charts = {c.key: to_plotly(c) for s in report.sections for c in s.charts}
    template = _environment().get_template("report.html.j2")
    return template.render(
        report=report,
        version=machine_info().libraries.get("modelscale", ""),
        plotly_js=_plotly_js(),
        charts_json=_script_json(charts),
    )
