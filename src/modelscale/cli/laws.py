"""`modelscale laws`: fit scaling laws to training runs; compute-optimal model size and data."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from modelscale.cli.app import CommandGroup, app
from modelscale.cli.render import ProgressBar, console, err_console, print_json, print_table
from modelscale.errors import InvalidInput
from modelscale.laws import (
    ComputeOptimal,
    FitOptions,
    ScalingLawFit,
    compute_optimal,
    fit_scaling_law,
    plot_scaling_law,
)
from modelscale.store import open_store
from modelscale.workflow import Recorder

__all__ = ["laws_app", "render_fit"]

laws_app = typer.Typer(
    cls=CommandGroup,
    help="Fit scaling laws to training runs; compute-optimal model size and data per budget.",
    no_args_is_help=True,
)
app.add_typer(laws_app, name="laws")

_STAGES = {
    "fit": "Fitting from the start grid",
    "holdout": "Leave-largest-out refit",
    "bootstrap": "Bootstrap resamples",
}

_COLUMNS_HELP = (
    "Role=column pairs, e.g. 'N=params,D=tokens,C=flops,L=loss'. Unnamed roles are detected "
    "(params/Model Size/N, tokens/D, flops/Training FLOP/C, loss)."
)


def _numbers(name: str, values: Sequence[str] | None) -> list[float]:
    """Repeatable options that also take comma-separated lists: --flops 1e21,1e22 --flops 1e23."""
    out: list[float] = []
    for text in values or []:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                out.append(float(part))
            except ValueError:
                raise InvalidInput(
                    f"--{name} takes numbers such as 5.76e23. Got {part!r} instead.", field=name
                ) from None
    return out


def _progress_fit(runs: pathlib.Path, options: FitOptions) -> ScalingLawFit:
    bar = ProgressBar(_STAGES)
    with bar.showing(_STAGES["fit"]):
        return fit_scaling_law(runs, options=options, on_progress=bar)


def _ci(lo: float | None, hi: float | None, fmt: Callable[[float], str]) -> str:
    return "-" if lo is None or hi is None else f"{fmt(lo)} - {fmt(hi)}"


def _g4(v: float) -> str:
    return f"{v:.4g}"


def _g3(v: float) -> str:
    return f"{v:.3g}"


def render_fit(fit: ScalingLawFit) -> None:
    """The fit: its law, estimates with intervals, the holdout check and flags."""
    reduced = (
        f", {fit.n_reduced} repeated runs reduced to the best per point" if fit.n_reduced else ""
    )
    rows = ", ".join(map(str, fit.dropped_rows))
    dropped = f", {len(fit.dropped_rows)} highest-loss dropped (rows {rows})" if rows else ""
    derived = f"; derived {', '.join(fit.derived.values())}" if fit.derived else ""
    console.print(
        f"{fit.form} law fitted on {fit.n_points} points from {escape(fit.source)} "
        f"({fit.n_rows} rows{reduced}{dropped}{derived})."
    )
    table = Table(
        title=f"Parameters ({fit.confidence:.0%} bootstrap CI, {fit.bootstrap_succeeded} fits)"
    )
    for col in ("parameter", "value", "CI", "note"):
        table.add_column(col, justify="left" if col in ("parameter", "note") else "right")
    for est in fit.estimates:
        note = f"on {est.at_bound} bound" if est.at_bound else ""
        table.add_row(est.name, _g4(est.value), _ci(est.ci_low, est.ci_high, _g4), note)
    print_table(table)
    state = "converged" if fit.converged else "[bold red]did not converge[/]"
    console.print(
        f"Objective {fit.objective:.6g} (summed Huber), {state}; {fit.n_starts} starts, "
        f"{fit.workers} process(es), {fit.wall_s:.1f} s."
    )
    if fit.holdout:
        h = fit.holdout
        console.print(
            f"Leave-largest-out: fitted without the {h.n_held_out} runs with {h.by} >= "
            f"{h.threshold:.3g}, predicted them with mean error {h.mean_abs_rel_error:.2%} "
            f"(max {h.max_abs_rel_error:.2%}; in-sample {h.in_sample_mean_abs_rel_error:.2%})."
        )
    for flag in fit.flags:
        console.print(f"[yellow]! {escape(flag)}[/]")


def _render_optimal(result: ComputeOptimal) -> None:
    ci = f"{result.confidence:.0%} CI" if result.n_bootstrap else "no CI"
    table = Table(title=f"Compute-optimal allocation under C = 6ND ({ci})")
    for col in ("asked", "FLOPs", "N_opt", "D_opt", "tokens/param", "loss"):
        table.add_column(col, justify="right")
    for a in result.allocations:
        asked = {"flops": "budget", "params": "model size", "loss": "target loss"}[a.given]
        ratio = "-" if a.tokens_per_param is None else f"{a.tokens_per_param:.1f}"
        table.add_row(
            asked,
            _with_ci(a.flops, a.flops_ci, _g3),
            _with_ci(a.n_opt, a.n_opt_ci, _g3),
            _with_ci(a.d_opt, a.d_opt_ci, _g3),
            ratio,
            _with_ci(a.loss, a.loss_ci, _g4),
        )
    print_table(table)
    for note in result.warnings:
        console.print(f"[yellow]! {escape(note)}[/]")


def _with_ci(
    value: float | None, ci: tuple[float, float] | None, fmt: Callable[[float], str]
) -> str:
    if value is None:
        return "-"
    return fmt(value) + (f" ({_ci(ci[0], ci[1], fmt)})" if ci else "")


def _record(result: Any, *, parent: int | None = None) -> int | None:
    recorded = Recorder.open().record(result, parent_run_id=parent)
    return None if recorded is None else recorded.run_id


@laws_app.command("fit")
def fit_cmd(
    runs: pathlib.Path = typer.Argument(..., help="CSV of training runs, one row per run."),
    form: str = typer.Option(
        "chinchilla", "--form", help="chinchilla | power-n | power-d | power-c."
    ),
    columns: str | None = typer.Option(None, "--columns", help=_COLUMNS_HELP),
    bootstrap: int = typer.Option(
        200, "--bootstrap", help="Bootstrap resamples for the CIs (0: none)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resampling."),
    group_best: bool = typer.Option(
        True, "--group-best/--no-group-best", help="Keep the lowest-loss run per (N, D)."
    ),
    drop_highest_loss: int = typer.Option(
        0, "--drop-highest-loss", help="Drop this many highest-loss points (Epoch replication: 5)."
    ),
    holdout: float = typer.Option(
        0.1, "--holdout", help="Fraction of the largest runs held out for the extrapolation check."
    ),
    flops: list[str] | None = typer.Option(
        None, "--flops", help="Budgets for the compute-optimal table (repeat or comma-separate)."
    ),
    workers: int | None = typer.Option(None, "--workers", help="Worker processes (default: auto)."),
    plot: pathlib.Path | None = typer.Option(
        None, "--plot", help="Write a plot: .png, .svg, .pdf, or .html (with tables)."
    ),
    store: bool = typer.Option(True, "--store/--no-store", help="Record the fit as a run."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Fit a scaling law to training runs, with bootstrap CIs and a leave-largest-out check."""
    budgets = _numbers("flops", flops)
    if budgets and form in ("power-n", "power-d"):
        raise InvalidInput(
            f"--flops needs a law of compute: --form chinchilla or power-c (got {form}).",
            field="flops",
        )
    fit = _progress_fit(
        runs,
        FitOptions(
            form=form,
            columns=columns,
            bootstrap=bootstrap,
            seed=seed,
            group_best=group_best,
            drop_highest_loss=drop_highest_loss,
            holdout=holdout,
            workers=workers,
        ),
    )
    optimal = None
    if fit.form in ("chinchilla", "power-c"):
        # Without --flops, show the largest fitted budget and 10x and 100x beyond it: the last
        # row is flagged as an extrapolation, which is the point of showing it.
        c_max = fit.law.ranges["C"][1]
        budgets = budgets or [c_max, 10 * c_max, 100 * c_max]
        optimal = compute_optimal(fit, flops=budgets, warn=False)
    run_id = _record(fit) if store else None
    if plot is not None:
        plot_scaling_law(fit, plot, optimal=optimal)
    if as_json:
        print_json({"run_id": run_id, "fit": fit.to_dict(), "optimal": optimal})
        return
    render_fit(fit)
    if optimal is not None:
        _render_optimal(optimal)
    if plot is not None:
        console.print(f"Plot written to {escape(str(plot))}")
    if run_id is not None:
        console.print(f"Stored as run {run_id} (modelscale runs show {run_id}).")


def _stored_fit(fit_id: int | None) -> tuple[dict[str, Any], int]:
    store = open_store()
    if fit_id is not None:
        run = store.run(fit_id)
        if run.kind != "laws" or run.results.get("analysis") != "fit":
            raise InvalidInput(
                f"Run {fit_id} ({run.kind}, {run.results.get('analysis', '-')}) is not a "
                "scaling-law fit; pick a run made by `modelscale laws fit` (see "
                "`modelscale runs --kind laws`).",
                field="fit",
            )
        return run.results, run.id
    for run in store.runs(kind="laws"):
        if run.results.get("analysis") == "fit":
            summary = escape(str(run.results.get("summary", "")))
            err_console.print(f"Using the newest stored fit, run {run.id} ({summary}).")
            return run.results, run.id
    where = store.url.render_as_string(hide_password=True)
    raise InvalidInput(
        f"No scaling-law fit in the knowledge base at {where}. "
        "Run `modelscale laws fit RUNS.csv` first, or pass --from RUNS.csv to fit inline.",
        field="fit",
    )


@laws_app.command("optimal")
def optimal_cmd(
    flops: list[str] | None = typer.Option(
        None, "--flops", help="Budgets in FLOPs (repeat or comma-separate) for a budget table."
    ),
    params: list[str] | None = typer.Option(
        None, "--params", help="Model sizes: the budget for which each is compute-optimal."
    ),
    target_loss: list[str] | None = typer.Option(
        None, "--target-loss", help="Target losses: the smallest budget that reaches each."
    ),
    fit_id: int | None = typer.Option(None, "--fit", help="Stored fit run id (default: newest)."),
    from_csv: pathlib.Path | None = typer.Option(
        None, "--from", help="Fit this runs CSV inline instead of using a stored fit."
    ),
    form: str = typer.Option("chinchilla", "--form", help="Form of an inline fit."),
    columns: str | None = typer.Option(None, "--columns", help=_COLUMNS_HELP),
    drop_highest_loss: int = typer.Option(0, "--drop-highest-loss", help="For an inline fit."),
    bootstrap: int = typer.Option(200, "--bootstrap", help="Resamples of an inline fit."),
    seed: int = typer.Option(0, "--seed", help="Seed of an inline fit's bootstrap."),
    plot: pathlib.Path | None = typer.Option(None, "--plot", help="Write the frontier plot."),
    store: bool = typer.Option(True, "--store/--no-store", help="Record the result as a run."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Compute-optimal N and D per budget, and the budget a model size or a target loss needs."""
    budgets = _numbers("flops", flops)
    sizes = _numbers("params", params)
    targets = _numbers("target-loss", target_loss)
    if not (budgets or sizes or targets):
        raise InvalidInput(
            "Give at least one of --flops, --params or --target-loss.", field="flops"
        )
    if from_csv is not None and fit_id is not None:
        raise InvalidInput("Give either --fit RUN_ID or --from RUNS.csv, not both.", field="fit")
    fit_obj: ScalingLawFit | None = None
    if from_csv is not None:
        fit_obj = _progress_fit(
            from_csv,
            FitOptions(
                form=form,
                columns=columns,
                bootstrap=bootstrap,
                seed=seed,
                drop_highest_loss=drop_highest_loss,
            ),
        )
        source: Any = fit_obj
        parent = _record(fit_obj) if store else None
    else:
        source, parent = _stored_fit(fit_id)
    result = compute_optimal(source, flops=budgets, params=sizes, target_loss=targets, warn=False)
    result = dataclasses.replace(result, params={**result.params, "fit_run": parent})
    run_id = _record(result, parent=parent) if store else None
    if plot is not None:
        plot_scaling_law(result, plot, fit=fit_obj if fit_obj is not None else source)
    if as_json:
        print_json({"run_id": run_id, "fit_run": parent, "optimal": result.to_dict()})
        return
    console.print(f"Law: {result.law.form}, {_law_text(result)} (fit run {parent or '-'}).")
    _render_optimal(result)
    if plot is not None:
        console.print(f"Plot written to {escape(str(plot))}")
    if run_id is not None:
        console.print(f"Stored as run {run_id}.")


def _law_text(result: ComputeOptimal) -> str:
    law = result.law
    names = ("E", "A", "B", "alpha", "beta")
    return " ".join(f"{n}={getattr(law, n):.4g}" for n in names if getattr(law, n) is not None)
