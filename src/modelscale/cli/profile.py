"""`modelscale profile`: size, FLOPs, memory, and latency/throughput per batch size and threads."""

from __future__ import annotations

import pathlib

import typer
from rich.table import Table

from modelscale.cli.app import app
from modelscale.cli.options import (
    parse_batch_axes,
    parse_int_list,
    parse_named_ints,
    parse_named_range,
)
from modelscale.cli.render import (
    ProgressBar,
    console,
    err_console,
    fmt_bytes,
    fmt_count,
    print_json,
    print_table,
)
from modelscale.model import ModelArtifact
from modelscale.profile import (
    MeasureOptions,
    ProfileOptions,
    ProfileResult,
    plot_profile,
    profile_model,
)
from modelscale.workflow import Recorder

__all__ = ["profile_command", "render_profile"]


@app.command("profile")
def profile_command(
    model: pathlib.Path = typer.Argument(..., help="ONNX model file."),
    batch: str | None = typer.Option(None, "--batch", "-b", help="Batch sizes, e.g. 1,2,4,8."),
    threads: str | None = typer.Option(None, "--threads", "-t", help="Intra-op threads, e.g. 1,2."),
    dim: list[str] | None = typer.Option(
        None, "--dim", help="Symbolic dim values, NAME=V[,V...] (e.g. seq=32,128); repeatable."
    ),
    shape: list[str] | None = typer.Option(
        None, "--shape", help="Whole input shape, INPUT=D0,D1,... (for unnamed dims); repeatable."
    ),
    int_range: list[str] | None = typer.Option(
        None, "--int-range", help="Inclusive range for an integer input, NAME=LOW,HIGH; repeatable."
    ),
    batch_axis: list[str] | None = typer.Option(
        None,
        "--batch-axis",
        help="Batch axis of an input whose batch axis is not 0, INPUT=AXIS (e.g. state=1), or "
        "INPUT=none if it is not batched; 0-d inputs never are. Repeatable.",
    ),
    inputs: pathlib.Path | None = typer.Option(
        None, "--inputs", help="Real inputs: an .npz whose keys are input names."
    ),
    provider: str = typer.Option(
        "CPUExecutionProvider", "--provider", help="ORT execution provider."
    ),
    spinning: bool = typer.Option(
        True,
        "--spinning/--no-spinning",
        help="Let ORT's idle threads spin (fastest alone). --no-spinning measures the model as "
        "serve's replicas run it (what plan uses).",
    ),
    max_time: float = typer.Option(
        10.0, "--max-time", help="Seconds at most per point before reporting a wider CI."
    ),
    name: str | None = typer.Option(None, "--name", help="Model name (default: file stem)."),
    plot: pathlib.Path | None = typer.Option(None, "--plot", help="Write a PNG plot of the sweep."),
    store: bool = typer.Option(
        True, "--store/--no-store", help="Record the run in the knowledge base."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Profile MODEL: parameters, FLOPs, memory, and latency/throughput per batch x threads."""
    batches = parse_int_list("--batch", batch)
    thread_list = parse_int_list("--threads", threads)
    dims = parse_named_ints("--dim", dim)
    shapes = parse_named_ints("--shape", shape)
    ranges = parse_named_range("--int-range", int_range)
    options = ProfileOptions(
        batch_axes=parse_batch_axes("--batch-axis", batch_axis),
        batches=batches,
        threads=thread_list,
        dims=dims,
        shapes=shapes,
        int_ranges=ranges,
        inputs=inputs,
        provider=provider,
        allow_spinning=spinning,
        measure=MeasureOptions(max_time_s=max_time),
    )
    artifact = ModelArtifact.load(model, name=name)
    # Open the store first: a bad database fails before minutes of timing, not after.
    recorder = Recorder.open(store)

    bar = ProgressBar()
    with bar.showing("loading"):
        result = profile_model(artifact, options=options, on_progress=bar)
    run_id = recorder.run_id(result)
    if plot is not None:
        plot_profile(result, plot)
    if as_json:
        print_json({"run_id": run_id, **result.to_dict()})
        return
    render_profile(result)
    if plot is not None:
        console.print(f"Plot written to {plot}")
    if run_id is not None:
        err_console.print(f"Stored as run {run_id} (modelscale runs show {run_id}).")


def render_profile(result: ProfileResult) -> None:
    """Print a profile as tables."""
    s = result.static
    m = result.model
    head = Table(title=f"{m['name']} · {m['sha256'][:12]}", show_header=False)
    head.add_column("what")
    head.add_column("value")
    head.add_row("parameters", f"{s.parameters:,} ({fmt_count(s.parameters)})")
    head.add_row("file size", fmt_bytes(s.file_bytes))
    head.add_row(
        "bytes by dtype", ", ".join(f"{k} {fmt_bytes(v)}" for k, v in s.bytes_by_dtype.items())
    )
    head.add_row(
        "weight memory",
        ", ".join(f"{k} {fmt_bytes(v)}" for k, v in s.weight_memory_bytes.items()),
    )
    head.add_row(
        "nodes",
        f"{s.nodes} · " + ", ".join(f"{k} {v}" for k, v in list(s.op_histogram.items())[:8]),
    )
    for f in result.flops:
        shapes = " ".join(f"{k}={_shape_text(v)}" for k, v in f.input_shapes.items())
        head.add_row(f"FLOPs @ {shapes}", f"{_si(f.flops, 'FLOP')} ({_si(f.macs, 'MAC')})")
    for t, rss in result.session_rss_bytes.items():
        head.add_row(f"session RSS, net of the worker's own ({t} thr)", fmt_bytes(rss))
    print_table(head)

    dim_names = sorted({k for p in result.points for k in p.dims})
    headers = _dim_headers(dim_names)
    legend = [f"{h} = {d}" for d, h in headers.items() if h != d]
    table = Table(
        title="latency and throughput (* = time cap hit before the CI target)",
        caption="; ".join(
            [*legend, "peak RSS: the whole worker process (Python, ONNX Runtime, the session)"]
        ),
    )
    for col in (
        "batch",
        "thr",
        *headers.values(),
        "p50 ms",
        "p99 ms",
        "±CI",
        "items/s",
        "GFLOP/s",
        "peak RSS MiB",
    ):
        table.add_column(col, justify="right", no_wrap=True)
    best = result.best()
    order = sorted(
        result.points,
        key=lambda p: (tuple(p.dims.get(d, 0) for d in dim_names), p.threads, p.batch),
    )
    for p in order:
        table.add_row(
            str(p.batch),
            str(p.threads),
            *[str(p.dims.get(d, "")) for d in dim_names],
            f"{p.p50_ms:.3f}",
            f"{p.p99_ms:.3f}",
            f"{p.ci_half_width:.1%}" + ("" if p.ci_met else "*"),
            f"{p.items_per_s:,.0f}",
            f"{p.gflops_per_s:.1f}" if p.gflops_per_s is not None else "-",
            f"{p.peak_rss_bytes / 2**20:.0f}" if p.peak_rss_bytes else "-",
            style="bold green" if p is best else None,
        )
    print_table(table)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(result.summary)


_DIM_HEADER_MAX = 10


def _dim_headers(names: list[str]) -> dict[str, str]:
    """Column header per dim: the name, or d1, d2, ... for names too long for a narrow column
    (exported models name dims like 'unk__2934_sequence_length'), explained in the caption."""
    return {
        name: name if len(name) <= _DIM_HEADER_MAX else f"d{i}"
        for i, name in enumerate(names, start=1)
    }


def _shape_text(shape: list[int]) -> str:
    """'1x3x224x224'; 'scalar' for a 0-d input."""
    return "x".join(map(str, shape)) if shape else "scalar"


def _si(n: float, unit: str) -> str:
    """'1 FLOP', '22.71 MFLOP': the prefix joins the unit, a bare number is spaced from it."""
    text = fmt_count(n)
    return f"{text}{unit}" if text[-1:].isalpha() else f"{text} {unit}"
