"""`modelscale load`: open-loop load tests of a V2 model server, stored as runs.

A knowledge base that cannot take the run does not cost the measurement: the results are printed
first, then the storing failure is reported, the results are saved as JSON in the working
directory (the message names the file), and the exit code is 2.
"""

from __future__ import annotations

import pathlib
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from modelscale.cli.app import EXIT_BAD_INPUT, app
from modelscale.cli.options import parse_named_ints
from modelscale.cli.render import ProgressBar, console, err_console, print_json, print_table
from modelscale.errors import InvalidInput, StoreError
from modelscale.loadgen import LoadOptions, LoadResult, LoadStats, RequestShapes, run_load
from modelscale.progress import ProgressEvent
from modelscale.serve.auth import read_api_key
from modelscale.store import Store, open_store
from modelscale.workflow import NotStored, Recorded, Recorder

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
        None,
        "--inputs",
        help="Real inputs: .npz, one array per input; or .txt, one text per line (text models).",
    ),
    dim: list[str] | None = typer.Option(
        None,
        "--dim",
        help="Symbolic dim value of synthetic requests, NAME=V (e.g. seq=32); repeatable. "
        "Default: the dims of the model's latest stored profile.",
    ),
    shape: list[str] | None = typer.Option(
        None,
        "--shape",
        help="Whole input shape of synthetic requests, INPUT=D0,D1,... (axis 0: --batch); "
        "repeatable.",
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
    """Load MODEL at URL open-loop: latency from each planned send time, percentiles, errors.

    Synthetic requests need a size for every dynamic axis besides the batch: --dim or --shape,
    else the dims of the model's latest profile in the knowledge base. What was used is printed
    and stored with the run.
    """
    options = LoadOptions(
        rate=rate,
        concurrency=concurrency,
        duration_s=duration,
        pattern=pattern,
        inputs=inputs,
        dims=_single_values("--dim", dim),
        shapes={k: tuple(v) for k, v in parse_named_ints("--shape", shape).items()},
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
            f"--inputs {inputs} does not exist. Expected an .npz file (or .txt for text).",
            field="inputs",
        )
    # Opened first, so a knowledge base that is down is known before the load runs; the load runs
    # anyway and its results are saved as JSON instead.
    recorder = Recorder.open(store, tolerant=True)
    if recorder.open_error is not None:
        err_console.print(
            f"[yellow]warning:[/] {escape(recorder.open_error)} The load test runs; its results "
            "will be saved as JSON instead.",
            soft_wrap=True,
        )
    bar = ProgressBar()

    def on_progress(event: ProgressEvent) -> None:
        if isinstance(event.detail, RequestShapes):
            err_console.print(f"Requests: {escape(event.detail.describe())}", soft_wrap=True)
        bar(event)

    with bar.showing("connecting"):
        result = run_load(
            url,
            model=model,
            options=options,
            on_progress=on_progress,
            store=recorder.store if store else _store_for_reading,
        )
    kept = recorder.keep(result)
    run_id = kept.run_id if isinstance(kept, Recorded) else None
    if as_json:
        print_json({"run_id": run_id, **result.to_dict()})
    else:
        render_load(result)
    if isinstance(kept, NotStored):
        err_console.print(f"[bold red]Error:[/] {escape(kept.message())}", soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    if run_id is not None:
        err_console.print(f"Stored as run {run_id} (modelscale runs show {run_id}).")


def _single_values(option: str, items: list[str] | None) -> dict[str, int]:
    out = {}
    for name, values in parse_named_ints(option, items).items():
        if len(values) != 1:
            raise InvalidInput(
                f"{option} takes one value per dim, NAME=V (a load test runs at one shape). Got "
                f"{name}={','.join(map(str, values))}.",
                field=option.lstrip("-"),
            )
        out[name] = values[0]
    return out


def _store_for_reading() -> Store | None:
    """With --no-store the knowledge base is still read for the model's profile, if it opens."""
    try:
        return open_store()
    except StoreError:
        return None


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
    print_table(table)
    console.print(f"Requests: {_inputs_text(result.inputs)}", soft_wrap=True)
    console.print(result.summary)


def _inputs_text(inputs: dict[str, Any]) -> str:
    if "file" in inputs:
        return escape(f"rows of {inputs['file']}")
    if "shapes" not in inputs:
        return "?"  # a run stored before requests' shapes were recorded
    return escape(RequestShapes.from_dict(inputs).describe())
