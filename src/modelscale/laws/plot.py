"""Plots of a scaling-law fit: the data, the fitted law, and the compute-optimal frontier.

``plot_scaling_law`` writes a PNG/SVG/PDF, or a self-contained HTML page that embeds the PNG
(base64) with the parameter and budget tables; nothing is loaded from the network. Matplotlib is
used through ``Figure`` and the Agg canvas directly: no global pyplot state, no display.
"""

from __future__ import annotations

import base64
import html
import io
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from modelscale.errors import InvalidInput
from modelscale.laws.forms import ScalingLaw
from modelscale.laws.optimal import ComputeOptimal, frontier, load_fitted_law
from modelscale.laws.results import ScalingLawFit

__all__ = ["figure", "plot_scaling_law"]

_SUFFIXES = (".png", ".svg", ".pdf", ".html")


def _band(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1 - confidence) / 2 * 100
    with np.errstate(all="ignore"):
        lo, hi = np.nanpercentile(values, [tail, 100 - tail], axis=0)
    return lo, hi


def _budget_marks(optimal: ComputeOptimal | None) -> list[float]:
    return [a.flops for a in optimal.allocations] if optimal else []


def _chinchilla_axes(
    fig: Figure, law: ScalingLaw, samples: np.ndarray, conf: float, points: Any, marks: list[float]
) -> None:
    p = np.array([law.E, law.A, law.B, law.alpha, law.beta])
    ax1, ax2, ax3 = fig.subplots(1, 3)
    c_lo, c_hi = law.ranges.get("C", (1e18, 1e22))
    c_top = max([c_hi * 100, *(m * 2 for m in marks)])
    frontier_c = np.geomspace(c_lo, c_top, 120)
    norm = LogNorm(vmin=c_lo, vmax=c_hi)
    cmap = "viridis"
    # Iso-FLOP view: the fitted loss along fixed budgets, with the data coloured by budget.
    n_lo, n_hi = law.ranges.get("N", (1e7, 1e11))
    n_grid = np.geomspace(n_lo / 3, n_hi * 3, 200)
    for c in np.geomspace(c_lo, c_hi, 6):
        ax1.plot(
            n_grid, law.loss(warn=False, N=n_grid, D=c / (6 * n_grid)), color=_rgba(cmap, norm, c)
        )
    if points is not None:
        sc = ax1.scatter(
            points["N"],
            points["L"],
            c=points["C"],
            norm=norm,
            cmap=cmap,
            s=14,
            edgecolors="black",
            linewidths=0.3,
            zorder=3,
        )
        fig.colorbar(sc, ax=ax1, label="training FLOPs")
    n_opt, _, l_opt = frontier(p, np.geomspace(c_lo, c_hi, 50))
    ax1.plot(n_opt, l_opt, "k--", label="compute-optimal")
    if points is not None:
        # The iso-FLOP curves climb steeply away from their minima; keep the data readable.
        ax1.set_ylim(0.95 * min(points["L"]), 1.08 * max(points["L"]))
    ax1.set(xscale="log", xlabel="parameters N", ylabel="loss", title="Iso-FLOP curves of the fit")
    ax1.legend(loc="upper right", fontsize=8)
    # Loss of the compute-optimal model against budget, with its bootstrap band.
    n_f, d_f, l_f = frontier(p, frontier_c)
    if points is not None:
        ax2.scatter(points["C"], points["L"], c=points["C"], norm=norm, cmap=cmap, s=10, alpha=0.6)
    ax2.plot(frontier_c, l_f, "k-", label="compute-optimal loss")
    if samples.shape[0] >= 2:
        with np.errstate(all="ignore"):
            sn, sd, sl = frontier(samples[:, None, :], frontier_c[None, :])
        ax2.fill_between(
            frontier_c, *_band(sl, conf), color="grey", alpha=0.3, label=f"{conf:.0%} CI"
        )
        ax3.fill_between(frontier_c, *_band(sn, conf), color="C0", alpha=0.2)
        ax3.fill_between(frontier_c, *_band(sd, conf), color="C1", alpha=0.2)
    ax2.set(xscale="log", xlabel="training FLOPs C", ylabel="loss", title="Loss at the optimum")
    # The compute-optimal frontier: N and D against budget.
    ax3.plot(frontier_c, n_f, color="C0", label="N_opt (parameters)")
    ax3.plot(frontier_c, d_f, color="C1", label="D_opt (tokens)")
    if points is not None:
        ax3.scatter(points["C"], points["N"], s=6, color="grey", alpha=0.5, label="runs (N)")
    ax3.set(xscale="log", yscale="log", xlabel="training FLOPs C", title="Compute-optimal frontier")
    for ax in (ax2, ax3):
        ax.axvspan(c_hi, c_top, color="orange", alpha=0.08, label="beyond the data")
        for m in marks:
            ax.axvline(m, color="red", linestyle=":", linewidth=1)
        ax.legend(loc="best", fontsize=8)


def _rgba(cmap: str, norm: LogNorm, value: float) -> Any:
    from matplotlib import colormaps

    return colormaps[cmap](norm(value))


def _single_axes(
    fig: Figure, law: ScalingLaw, samples: np.ndarray, conf: float, points: Any, marks: list[float]
) -> None:
    var = law.variables[0]
    ax = fig.subplots(1, 1)
    lo, hi = law.ranges.get(var, (1.0, 10.0))
    top = max([hi * 10, *(m * 2 for m in marks)]) if var == "C" else hi * 10
    x = np.geomspace(lo / 2, top, 200)
    y = law.loss(warn=False, **{var: x})
    ax.plot(x, y, "k-", label=f"fit: E + A/{var}^alpha")
    if samples.shape[0] >= 2:
        with np.errstate(all="ignore"):
            sy = samples[:, 0:1] + samples[:, 1:2] / x[None, :] ** samples[:, 2:3]
        ax.fill_between(x, *_band(sy, conf), color="grey", alpha=0.3, label=f"{conf:.0%} CI")
    if points is not None:
        colour = points.get("C")
        kwargs: dict[str, Any] = {"s": 14, "edgecolors": "black", "linewidths": 0.3, "zorder": 3}
        if colour is not None:
            kwargs.update(c=colour, norm=LogNorm(), cmap="viridis")
        sc = ax.scatter(points[var], points["L"], **kwargs)
        if colour is not None:
            fig.colorbar(sc, ax=ax, label="training FLOPs")
    ax.axvspan(hi, top, color="orange", alpha=0.08, label="beyond the data")
    for m in marks if var == "C" else []:
        ax.axvline(m, color="red", linestyle=":", linewidth=1)
    ax.set(xscale="log", xlabel=var, ylabel="loss", title=f"{law.form} fit")
    ax.legend(loc="best", fontsize=8)


def figure(
    result: ScalingLawFit | ComputeOptimal,
    *,
    fit: ScalingLawFit | Mapping[str, Any] | None = None,
    optimal: ComputeOptimal | None = None,
) -> Figure:
    """A matplotlib figure of a fit (data, law, frontier) or of a budget table over its law.

    ``fit`` may be a stored fit's results dict; its points and bootstrap fits are drawn too.
    """
    if isinstance(result, ComputeOptimal):
        optimal = result
    source = fit if fit is not None else (result if isinstance(result, ScalingLawFit) else None)
    if source is not None:
        law, samples, conf = load_fitted_law(source)
        points = source.points if isinstance(source, ScalingLawFit) else source.get("points")
    else:
        assert optimal is not None  # one of the two isinstance checks above held
        law, samples, conf, points = optimal.law, np.empty((0, 5)), optimal.confidence, None
    marks = _budget_marks(optimal)
    if law.form == "chinchilla":
        fig = Figure(figsize=(16, 4.8), layout="constrained")
        _chinchilla_axes(fig, law, samples, conf, points, marks)
    else:
        fig = Figure(figsize=(7, 4.8), layout="constrained")
        _single_axes(fig, law, samples, conf, points, marks)
    return fig


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _html(png: bytes, fit: ScalingLawFit | None, optimal: ComputeOptimal | None) -> str:
    parts = ["<h1>Scaling-law fit</h1>" if fit else "<h1>Compute-optimal allocation</h1>"]
    if fit is not None:
        parts.append(
            f"<p>{html.escape(fit.form)} law fitted on {fit.n_points} points from "
            f"{html.escape(fit.source)} ({fit.n_rows} rows, {fit.n_reduced} reduced to the best "
            f"per point, {len(fit.dropped_rows)} highest-loss dropped); {fit.bootstrap_succeeded} "
            f"bootstrap fits.</p>"
        )
        rows = [
            [e.name, _fmt(e.value), _fmt(e.ci_low), _fmt(e.ci_high), e.at_bound or ""]
            for e in fit.estimates
        ]
        ci = f"{fit.confidence:.0%} CI"
        parts.append(_table(["parameter", "value", f"{ci} low", f"{ci} high", "on bound"], rows))
        if fit.holdout:
            h = fit.holdout
            parts.append(
                f"<p>Leave-largest-out: the {h.n_held_out} runs with {h.by} &ge; {h.threshold:.3g} "
                f"predicted with mean error {h.mean_abs_rel_error:.2%} (max "
                f"{h.max_abs_rel_error:.2%}; in-sample {h.in_sample_mean_abs_rel_error:.2%}).</p>"
            )
        if fit.flags:
            items = "".join(f"<li>{html.escape(f)}</li>" for f in fit.flags)
            parts.append(f"<h2>Flags</h2><ul>{items}</ul>")
    if optimal is not None:
        rows = [
            [a.given, _fmt(a.flops), _fmt(a.n_opt), _fmt(a.d_opt), _fmt(a.loss)]
            for a in optimal.allocations
        ]
        parts.append("<h2>Budgets</h2>")
        parts.append(_table(["asked", "FLOPs", "N_opt", "D_opt", "loss"], rows))
        if optimal.warnings:
            items = "".join(f"<li>{html.escape(w)}</li>" for w in optimal.warnings)
            parts.append(f"<ul>{items}</ul>")
    img = base64.b64encode(png).decode("ascii")
    parts.append(f'<img alt="scaling-law plot" src="data:image/png;base64,{img}">')
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1400px}img{max-width:100%}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}"
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>modelscale laws</title>'
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def plot_scaling_law(
    result: ScalingLawFit | ComputeOptimal,
    path: str | pathlib.Path,
    *,
    fit: ScalingLawFit | Mapping[str, Any] | None = None,
    optimal: ComputeOptimal | None = None,
) -> pathlib.Path:
    """Write the plot of ``result`` to ``path`` (.png, .svg, .pdf, or .html with tables).

    Args:
        result: A fit, or a budget table (then ``fit``, if given, supplies the data and intervals).
        path: Output file; its suffix chooses the format.
        fit: The fit behind a budget table.
        optimal: Budgets to mark on a fit's plot (and list in its HTML page).

    Returns:
        The path written.
    """
    out = pathlib.Path(path)
    suffix = out.suffix.lower()
    if suffix not in _SUFFIXES:
        raise InvalidInput(
            f"The plot path {out} must end in one of {', '.join(_SUFFIXES)}. "
            f"Got {suffix or 'none'}.",
            field="plot",
        )
    if not out.parent.exists():
        raise InvalidInput(f"The directory {out.parent} for the plot does not exist.", field="plot")
    if isinstance(result, ComputeOptimal):
        optimal = result
    fig = figure(result, fit=fit, optimal=optimal)
    try:
        if suffix == ".html":
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110)
            the_fit = result if isinstance(result, ScalingLawFit) else fit
            the_fit = the_fit if isinstance(the_fit, ScalingLawFit) else None
            out.write_text(_html(buf.getvalue(), the_fit, optimal), encoding="utf-8")
        else:
            fig.savefig(out, dpi=110)
    except OSError as exc:
        raise InvalidInput(f"Cannot write the plot {out}: {exc.strerror}.", field="plot") from None
    return out
