"""`modelscale load`: open-loop load tests of a V2 model server, stored as runs."""

from __future__ import annotations

import pathlib

import typer
from rich.table import Table

from modelscale.cli.app import app
from modelscale.cli.render import ProgressBar, console, err_console, print_json
from modelscale.errors import InvalidInput
from modelscale.loadgen import LoadOptions, LoadResult, LoadStats, run_load
from modelscale.serve.auth import read_api_key
from modelscale.workflow import Recorder

__all__ = ["load_command", "render_load"]


@app.command("load")
def load_command(
    url: str = typer.Argument(..., help="Server base URL, e.g. http://127.0.0.1:8000."),
    model: str = typer.Option(..., "--model", "-m", help="Model name on the server."),
    version: str | None = typer.Option(
        None, "--version", help="Model version (default: the server's routing)."
    ),
    rate: float | None = typer.Option(
        None, "--rate", help="Requests/s, open loop (with --find-max: the start)."
    ),
    concurrency: int | None = typer.Option(
        None, "--concurrency", help="Requests in flight, closed loop."
    ),
    duration: float = typer.Option(
        10.0, "--duration", "-d", help="Seconds (per probe with --find-max)."
    ),
    pattern: str = typer.Option(
        "constant", "--pattern", help="constant | poisson | steps:R1,R2,..."
    ),
    inputs: pathlib.Path | None = typer.Option(
        None, "--inputs", help="Real inputs: .npz, one array per input."
    ),
    batch: int = typer.Option(1, "--batch", help="Rows per request."),
    output: list[str] | None = typer.Option(
        None, "--output", help="Ask only for this output; repeatable."
    ),
    binary: bool = typer.Option(False, "--binary", help="Send and receive binary tensors."),
    find_max: bool = typer.Option(
        False, "--find-max", help="Search the highest rate meeting --p99-ms."
    ),
    p99_ms: float = typer.Option(100.0, "--p99-ms", help="p99 bound for --find-max."),
    repeats: int = typer.Option(
        1, "--repeats", help="Windows per --find-max probe; all must pass."
    ),
    tolerance: float = typer.Option(
        0.1, "--tolerance", help="--find-max stops when the bracket is this tight."
    ),
    max_connections: int = typer.Option(256, "--max-connections", help="Open connections at most."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for the last answers."),
    warmup: float = typer.Option(1.0, "--warmup", help="Seconds of unrecorded load first."),
    api_key_file: pathlib.Path | None = typer.Option(
        None, "--api-key-file", help="Send its key as a bearer token."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the Poisson schedules and synthetic inputs."
    ),
    store: bool = typer.Option(
        True, "--store/--no-store", help="Record the run in the knowledge base."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Load MODEL at URL open-loop: latency from each planned send time, percentiles, errors."""
    options = LoadOptions(
        rate=rate,
        concurrency=concurrency,
        duration_s=duration,
        pattern=pattern,
        inputs=inputs,
        batch=batch,
        outputs=tuple(output or ()),
        binary=binary,
        version=version,
        find_max=find_max,
        p99_ms=p99_ms,
        repeats=repeats,
        tolerance=tolerance,
        max_connections=max_connections,
        timeout_s=timeout,
        warmup_s=warmup,
        api_key=read_api_key(api_key_file) if api_key_file else None,
        seed=seed,
    )
    if inputs is not None and not inputs.is_file():
        raise InvalidInput(
            f"--inputs {inputs} does not exist. Expected an .npz file.", field="inputs"
        )
    recorder = Recorder.open(store)  # open first: a bad database fails before the load runs
    bar = ProgressBar()
    with bar.showing("connecting"):
        result = run_load(url, model=model, options=options, on_progress=bar)
    run_id = recorder.run_id(result)
    if as_json:
        print_json({"run_id": run_id, **result.to_dict()})
        return
    render_load(result)
    if run_id is not None:
        err_console.print(f"Stored as run {run_id} (modelscale runs show {run_id}).")


def _row(table: Table, label: str, s: LoadStats, passed: bool | None = None) -> None:
    errors = ", ".join(f"{k}: {v}" for k, v in s.errors.items()) or "-"
    style = None if passed is None else ("green" if passed else "red")
    table.add_row(
        label,
        f"{s.offered_rps:,.1f}",
        f"{s.achieved_rps:,.1f}",
        f"{s.p50_ms:.1f}",
        f"{s.p90_ms:.1f}",
        f"{s.p99_ms:.1f}",
        f"{s.p999_ms:.1f}",
        f"{s.max_ms:.1f}",
        errors,
        str(s.late),
        style=style,
    )


def render_load(result: LoadResult) -> None:
    """Print a load result as a table (one row per step or probe, then the whole run)."""
    sha = f" · {result.model_sha256[:12]}" if result.model_sha256 else ""
    table = Table(
        title=f"{result.model} v{result.version or '?'}{sha} · {result.mode} · {result.url}",
        caption="latency in ms from each request's planned send time",
    )
    for col in (
        "window",
        "offered/s",
        "ok/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "errors",
        "late",
    ):
        table.add_column(col, justify="right")
    for i, w in enumerate(result.windows, 1):
        label = f"{i}: {w['rate_rps']:,.0f}/s"
        _row(table, label, w["stats"], w["passed"])
    if result.mode != "find-max":
        _row(table, "all", result.overall)
    console.print(table)
    console.print(result.summary)
