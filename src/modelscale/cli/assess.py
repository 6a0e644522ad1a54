"""`modelscale assess`: re-check a model on this machine against its baseline; exit 1 on a regression."""

from __future__ import annotations

import pathlib

import typer
from rich.table import Table

from modelscale.cli.app import app
from modelscale.cli.options import parse_int_list
from modelscale.cli.render import ProgressBar, console, err_console, print_json, print_table
from modelscale.errors import InvalidInput
from modelscale.workflow import Recorder
from modelscale.workflow.assess import AssessOptions, AssessResult, assess_model
from modelscale.workflow.assess_baseline import find_baseline, resolve_model
from modelscale.workflow.assess_checks import Check
from modelscale.workflow.assess_schedule import check_out_path, check_schedule, emit_schedule

__all__ = ["EXIT_REGRESSION", "assess_command", "render_assess"]

EXIT_REGRESSION = 1

_STYLE = {
    "ok": "green",
    "regression": "bold red",
    "improved": "cyan",
    "inconclusive": "yellow",
    "baseline": "dim",
}


@app.command("assess")
def assess_command(
    model: str = typer.Argument(
        ..., help="ONNX model file, or a model's name in the knowledge base."
    ),
    baseline: int | None = typer.Option(
        None, "--baseline", help="The assess run to compare with (default: the model's first)."
    ),
    eval_path: pathlib.Path | None = typer.Option(
        None,
        "--eval",
        help="Labelled eval set (.npz with inputs and 'labels'; default: the baseline's).",
    ),
    output: str | None = typer.Option(None, "--output", help="Output with the class scores."),
    batch: str | None = typer.Option(None, "--batch", "-b", help="Batch sizes to time, e.g. 1,8."),
    threads: str | None = typer.Option(None, "--threads", "-t", help="Intra-op threads, e.g. 1,2."),
    latency: bool = typer.Option(True, "--latency/--no-latency", help="Time the model."),
    accuracy: bool = typer.Option(True, "--accuracy/--no-accuracy", help="Check accuracy."),
    load: bool = typer.Option(True, "--load/--no-load", help="Load-test a local server."),
    paired: bool = typer.Option(
        True,
        "--paired/--no-paired",
        help="Time the baseline's model side by side when its file is still there.",
    ),
    blocks: int = typer.Option(8, "--blocks", help="Timed blocks per point (the CI's samples)."),
    block_s: float = typer.Option(0.25, "--block-seconds", help="Seconds per timed block."),
    windows: int = typer.Option(5, "--windows", help="Load-test windows (the CI's samples)."),
    window_s: float = typer.Option(1.5, "--window-seconds", help="Seconds per load window."),
    concurrency: int | None = typer.Option(
        None, "--concurrency", help="Requests in flight in the load test (default 16)."
    ),
    serve_threads: int | None = typer.Option(
        None, "--serve-threads", help="Threads of the test server's replica (default 1)."
    ),
    max_batch: int | None = typer.Option(
        None, "--max-batch", help="The test server's batch cap (default 8)."
    ),
    max_slowdown: float = typer.Option(
        1.10, "--max-slowdown", help="Latency ratio whose whole CI above it is a regression."
    ),
    max_accuracy_drop: float = typer.Option(
        0.005, "--max-accuracy-drop", help="Accuracy drop (share) whose whole CI past it fails."
    ),
    max_rate_drop: float = typer.Option(
        0.10, "--max-rate-drop", help="Max-rate drop (share) whose whole CI past it fails."
    ),
    max_other_cores: float = typer.Option(
        0.25, "--max-other-cores", help="Cores others may use before a slowdown is inconclusive."
    ),
    confidence: float = typer.Option(0.95, "--confidence", help="Level of the intervals."),
    name: str | None = typer.Option(None, "--name", help="Model name (default: file stem)."),
    emit: str | None = typer.Option(
        None, "--emit", help="Also write a schedule that re-runs this: cron or k8s."
    ),
    schedule: str = typer.Option("0 3 * * *", "--schedule", help="Cron schedule for --emit."),
    out: pathlib.Path | None = typer.Option(None, "--out", help="File --emit writes."),
    image: str | None = typer.Option(None, "--image", help="Container image for --emit k8s."),
    store: bool = typer.Option(
        True, "--store/--no-store", help="Record the run in the knowledge base."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Assess MODEL here against its baseline: latency, accuracy, max rate; exit 1 on a regression.

    The first assessment of a model is its baseline. Exit status: 0 nothing regressed, 1 a
    regression, 2 bad input.
    """
    if emit is not None and emit not in ("cron", "k8s"):
        raise InvalidInput(
            f"The 'emit' parameter of assess must be 'cron' or 'k8s'. Got {emit!r} instead.",
            field="emit",
        )
    options = AssessOptions(
        batches=parse_int_list("--batch", batch),
        threads=parse_int_list("--threads", threads),
        latency=latency, accuracy=accuracy, load=load, eval=eval_path, output=output,
        blocks=blocks, block_s=block_s, windows=windows, window_s=window_s,
        concurrency=concurrency, serve_threads=serve_threads, max_batch=max_batch, paired=paired,
        confidence=confidence, max_slowdown=max_slowdown, max_accuracy_drop=max_accuracy_drop,
        max_rate_drop=max_rate_drop, max_other_cores=max_other_cores,
    )  # fmt: skip
    if emit is not None:
        if not store:
            raise InvalidInput(
                "The 'emit' parameter of assess needs the knowledge base: the scheduled job "
                "compares with a stored baseline run. Drop --no-store.",
                field="emit",
            )
        check_schedule(schedule)
        check_out_path("cron" if emit == "cron" else "k8s", out)
    if baseline is not None and not store:
        raise InvalidInput(
            "The 'baseline' parameter of assess is a run in the knowledge base, which --no-store "
            "leaves closed. Drop --no-store.",
            field="baseline",
        )
    recorder = Recorder.open(store)
    artifact = resolve_model(model, recorder.store, name=name)
    base = find_baseline(recorder.store, artifact, baseline) if recorder.store else None
    bar = ProgressBar()
    with bar.showing("measuring"):
        result = assess_model(artifact, baseline=base, options=options, on_progress=bar)
    recorded = recorder.record(result)
    run_id = recorded.run_id if recorded else None
    emitted = None
    if emit is not None and run_id is not None:
        emitted = emit_schedule(
            "cron" if emit == "cron" else "k8s",
            model=artifact.path, name=artifact.name,
            baseline_run_id=base.id if base is not None else run_id,
            schedule=schedule, eval_path=_eval_of(result), out=out, image=image,
        )  # fmt: skip
    if as_json:
        print_json({"run_id": run_id, "regressed": result.regressed, "emitted": emitted,
                    **result.to_dict()})  # fmt: skip
    else:
        render_assess(result)
        if run_id is not None:
            err_console.print(f"Stored as run {run_id} (modelscale runs show {run_id}).")
        if emitted is not None:
            console.print(f"Wrote the {emit} schedule to {emitted}")
    if result.regressed:
        raise typer.Exit(EXIT_REGRESSION)


def _eval_of(result: AssessResult) -> pathlib.Path | None:
    acc = result.evidence.get("accuracy")
    return pathlib.Path(acc["eval"]) if acc else None


def _value(check: Check, v: float | None) -> str:
    if v is None:
        return "-"
    if check.unit == "share":
        return f"{100 * v:.1f}%"
    if check.unit == "ms":
        return f"{v:.3f} ms"
    return f"{v:,.0f} {check.unit}"


def render_assess(result: AssessResult) -> None:
    """Print an assessment as a table: each check, baseline, now, difference with CI, verdict."""
    m = result.model
    against = (
        f"against run {result.baseline_run_id}"
        if result.baseline_run_id is not None
        else "the baseline"
    )
    level = f"{result.params.get('confidence', 0.95):.0%}"
    table = Table(
        title=f"{m['name']} · {m['sha256'][:12]} · {against}",
        caption=f"difference: now / baseline (x) or now - baseline (pt), with its {level} CI",
    )
    for col in ("check", "compared", "baseline", "now", "difference [CI]", "verdict"):
        table.add_column(col, no_wrap=True, justify="left" if col == "check" else "right")
    for c in result.checks:
        style = _STYLE.get(c.verdict.value, "")
        table.add_row(
            c.name, c.method, _value(c, c.baseline), _value(c, c.now), c.effect_text(),
            f"[{style}]{c.verdict.value}[/]",
        )  # fmt: skip
    print_table(table)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(result.summary)
