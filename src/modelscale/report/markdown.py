"""The report as Markdown for a pull request, with each chart as a PNG beside it.

PNGs are drawn with matplotlib from the same ``Chart`` values the HTML report hands to plotly.js
(no browser needed). They go to ``<report stem>_files/`` and are linked relatively, so the folder
can be committed or attached as it is.
"""

from __future__ import annotations

import pathlib

from modelscale.report.api import Report
from modelscale.report.charts import Chart
from modelscale.report.section import Table

__all__ = ["render_markdown", "save_png"]


def save_png(chart: Chart, path: pathlib.Path) -> pathlib.Path:
    """Draw ``chart`` into a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 3.6), dpi=100)
    ax = fig.add_subplot()
    bars = [t for t in chart.traces if t.mode == "bar"]
    width = 0.8 / max(1, len(bars))
    categories: list[str] = []
    for t in chart.traces:
        for x in t.x:
            if isinstance(x, str) and x not in categories:
                categories.append(x)
    position = {c: i for i, c in enumerate(categories)}
    for t in chart.traces:
        xs = [position.get(x, x) if isinstance(x, str) else x for x in t.x]
        pairs = [(x, y) for x, y in zip(xs, t.y, strict=False) if y is not None]
        if not pairs:
            continue
        x_vals = [float(p[0]) for p in pairs]
        y_vals = [float(p[1]) for p in pairs]
        if t.mode == "bar":
            shift = (bars.index(t) - (len(bars) - 1) / 2) * width
            ax.bar([x + shift for x in x_vals], y_vals, width=width, label=t.name)
            continue
        style = {"markers": "o", "lines": "-", "lines+markers": "o-"}[t.mode]
        if t.error_low is not None or t.error_high is not None:
            keep = [i for i, y in enumerate(t.y) if y is not None]
            low = [float((t.error_low or t.error_high or [])[i]) for i in keep]
            high = [float((t.error_high or t.error_low or [])[i]) for i in keep]
            ax.errorbar(x_vals, y_vals, yerr=[low, high], fmt=style, capsize=3, label=t.name)
        else:
            ax.plot(x_vals, y_vals, style, label=t.name)
    if categories:
        ax.set_xticks(range(len(categories)))
        ax.set_xticklabels(categories, rotation=20, ha="right", fontsize=8)
    elif chart.x_log:
        ax.set_xscale("log")
    if chart.y_log:
        ax.set_yscale("log")
    if chart.hline is not None:
        ax.axhline(chart.hline[0], linestyle="--", color="#c0392b", linewidth=1)
    ax.set_title(chart.title, fontsize=10)
    ax.set_xlabel(chart.x_title)
    ax.set_ylabel(chart.y_title)
    if len(chart.traces) > 1:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip() or " "


def _table(t: Table) -> list[str]:
    lines = [f"**{t.title}**", ""] if t.title else []
    lines.append("| " + " | ".join(_cell(c) for c in t.columns) + " |")
    lines.append("|" + "---|" * len(t.columns))
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return [*lines, ""]


def render_markdown(report: Report, out: pathlib.Path) -> str:
    """The report as Markdown; its charts are written as PNGs next to ``out``."""
    folder = out.with_name(f"{out.stem}_files")
    folder.mkdir(parents=True, exist_ok=True)
    card = report.scorecard
    lines = [
        f"# {report.model}: modelscale report",
        "",
        f"Generated {report.at.strftime('%Y-%m-%d %H:%M UTC')}. Scorecard: {card.summary}.",
        "",
        "| item | status | evidence | runs |",
        "|---|---|---|---|",
    ]
    for i in card.items:
        detail = i.detail + (
            f" Run `{i.command}`." if i.status.value != "pass" and i.command else ""
        )
        lines.append(
            f"| {_cell(i.title)} | **{i.status.value}** | {_cell(detail)} | "
            f"{', '.join(map(str, i.runs)) or '-'} |"
        )
    lines.append("")
    for s in report.sections:
        lines += [f"## {s.title}", ""]
        if s.missing:
            lines += [f"_No evidence yet: run `{s.missing}`._", ""]
            continue
        lines += [s.summary, ""]
        for c in s.charts:
            png = save_png(c, folder / f"{c.key}.png")
            lines += [f"![{c.title}]({folder.name}/{png.name})", ""]
        for t in s.tables:
            lines += _table(t)
        for n in s.notes:
            ref = f" (on run {n.refers_to})" if n.refers_to else ""
            lines += [f"> **Note {n.run_id}**{ref}: {n.text}", ""]
        if s.runs:
            lines += [f"Runs: {', '.join(map(str, s.runs))}.", ""]
    return "\n".join(lines)
