"""`modelscale compress`: search for a smaller, faster model within an accuracy tolerance."""

from __future__ import annotations

import dataclasses
import pathlib
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from modelscale.cli.app import app
from modelscale.cli.options import parse_batch_axes
from modelscale.cli.render import ProgressBar, console, err_console, print_json, print_table
from modelscale.compress import (
    DEFAULT_MEASURE,
    METRICS,
    CompressOptions,
    CompressResult,
    Trial,
    compress,
)
from modelscale.model import ModelArtifact
from modelscale.profile import MeasureOptions
from modelscale.workflow import Recorder

__all__ = ["compress_command", "render_compress"]


@app.command("compress")
def compress_command(
    model: pathlib.Path = typer.Argument(..., help="ONNX model file."),
    eval_path: pathlib.Path = typer.Option(
        ..., "--eval", help="Eval set: an .npz with one array per input, plus optional labels."
    ),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help=f"One of {', '.join(METRICS)}. Default: accuracy (integer labels), mae (other "
        "labels), or without labels fidelity to the original (agreement or cosine).",
    ),
    max_drop: float | None = typer.Option(
        None, "--max-drop", help="Largest acceptable metric drop, in [0, 1] (default 0.01)."
    ),
    max_rel_drop: float | None = typer.Option(
        None, "--max-rel-drop", help="Or the largest drop relative to the original's metric."
    ),
    calibration: pathlib.Path | None = typer.Option(
        None,
        "--calibration",
        help="Calibration inputs (.npz), disjoint from the eval set. Default: half the eval rows.",
    ),
    batch: int = typer.Option(8, "--batch", "-b", help="Batch size for throughput (and batch 1)."),
    out: pathlib.Path | None = typer.Option(
        None,
        "--out",
        help="Folder for the chosen model and compress_summary.json "
        "(default: ./NAME-compressed, NAME being --name or the file stem).",
    ),
    output: str | None = typer.Option(None, "--output", help="Model output to evaluate."),
    batch_axis: list[str] | None = typer.Option(
        None,
        "--batch-axis",
        help="Batch axis of an input whose rows are not along axis 0, INPUT=AXIS (e.g. state=1), "
        "or INPUT=none if it is the same for every row; 0-d inputs always are. Repeatable.",
    ),
    labels_key: str = typer.Option("labels", "--labels-key", help="Key of the labels in --eval."),
    threads: int | None = typer.Option(
        None, "--threads", "-t", help="Intra-op threads (default: all usable cores)."
    ),
    candidates: str | None = typer.Option(
        None, "--candidates", help="Comma-separated candidate names (default: all)."
    ),
    fallback_steps: int = typer.Option(
        8, "--fallback-steps", help="Nodes the fallback may keep in float (0: off)."
    ),
    max_time: float = typer.Option(
        DEFAULT_MEASURE.max_time_s, "--max-time", help="Seconds at most per latency point."
    ),
    keep_candidates: pathlib.Path | None = typer.Option(
        None, "--keep-candidates", help="Keep every candidate's .onnx in this folder."
    ),
    name: str | None = typer.Option(None, "--name", help="Model name (default: file stem)."),
    store: bool = typer.Option(
        True, "--store/--no-store", help="Record the runs in the knowledge base."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Compress MODEL: try INT8, FP16 and graph optimisation; keep the fastest within tolerance.

    The CLI takes ONNX models; structured pruning of PyTorch models is in the Python API
    (modelscale.compress.prune_torch).
    """
    names = [c.strip() for c in candidates.split(",") if c.strip()] if candidates else None
    options = CompressOptions(
        metric=metric,
        max_drop=max_drop,
        max_rel_drop=max_rel_drop,
        calibration=calibration,
        batch=batch,
        output=output,
        batch_axes=parse_batch_axes("--batch-axis", batch_axis),
        labels_key=labels_key,
        threads=threads,
        candidates=names,
        max_fallback_steps=fallback_steps,
        measure=MeasureOptions(max_time_s=max_time, min_time_s=min(0.5, max_time)),
        keep_candidates=keep_candidates,
    )
    artifact = ModelArtifact.load(model, name=name)
    recorder = Recorder.open(store)  # a bad database fails before minutes of work
    out_dir = out if out is not None else pathlib.Path(f"{artifact.name}-compressed")
    bar = ProgressBar()
    with _terminate_as_exit(), bar.showing("starting"):
        result = compress(
            artifact,
            eval_path,
            options=dataclasses.replace(options, out=out_dir),
            on_progress=bar,
        )
    recorded = recorder.record(result)
    if as_json:
        ids = (
            {"search_run_id": recorded.run_id, "trial_run_ids": recorded.children}
            if recorded
            else {"search_run_id": None, "trial_run_ids": {}}
        )
        print_json({**ids, **result.to_dict()})
        return
    render_compress(result)
    if recorded is not None:
        err_console.print(
            f"Stored as run {recorded.run_id} with {len(recorded.children)} trial "
            f"runs (modelscale runs show {recorded.run_id})."
        )
        if recorded.new_versions:
            err_console.print(
                f"New model version {result.chosen_sha256[:12]} (parent "
                f"{result.model['sha256'][:12]})."
            )


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM (kill, systemd, a container stop) ends the search as Ctrl-C does: the candidates'
    work folder is removed on the way out, not left in the temporary folder."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ms(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def _verdict(t: Trial, original: Trial) -> str:
    if t is original:
        return "baseline"
    text = "[green]pass[/]" if t.passed else "[red]fail[/]"
    return text + (" [yellow]slower[/]" if t.slower else "")


def render_compress(result: CompressResult) -> None:
    """Print a search: one row per trial, the Pareto front, the choice and why."""
    original = result.original
    batch = original.batch
    tol = result.tolerance
    tol_text = (
        f"max rel drop {tol['max_rel_drop']:g}"
        if "max_rel_drop" in tol
        else f"max drop {tol['max_drop']:g}"
    )
    table = Table(
        title=f"compress {result.model['name']}: {result.metric} on {result.eval_rows} rows, "
        f"{tol_text} (bound {tol['bound']:.4g})",
        caption="* on the Pareto front (size, throughput, drop). change: candidate - original "
        "with its 95% paired bootstrap CI. fail: outside tolerance.",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("candidate", no_wrap=True)
    for col in ("MiB", "p50 ms\nb1", f"p50 ms\nb{batch}", f"items/s\nb{batch}", result.metric):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("change [95% CI]", justify="right", no_wrap=True)
    table.add_column("result", no_wrap=True)
    for t in result.trials:
        label = f"{t.name}{' *' if t.pareto else ''}"
        style = "bold green" if t.name == result.chosen else None
        if not t.ok:
            verdict = "[yellow]skipped[/]" if t.status == "skipped" else "[red]error[/]"
            table.add_row(label, *["-"] * 6, verdict, style=style)
            continue
        change = "-" if t is original else f"{t.change:+.3f} [{t.ci_low:+.3f},{t.ci_high:+.3f}]"
        table.add_row(
            label,
            f"{(t.size_bytes or 0) / 2**20:.3g}",
            _ms(t.p50_ms(1)),
            _ms(t.p50_ms(batch)),
            f"{t.items_per_s or 0:,.0f}",
            f"{t.metric:.4f}",
            change,
            _verdict(t, original),
            style=style,
        )
    print_table(table)  # ten columns do not fit 80: whole cells, never truncated ones
    for t in result.trials:
        if t.status == "skipped":
            console.print(f"[yellow]{escape(t.name)} skipped:[/] {escape(t.error or '')}")
        elif not t.ok:
            console.print(f"[red]{escape(t.name)} failed:[/] {escape(t.error or '')}")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"Pareto front: {', '.join(result.pareto)}")
    console.print(escape(result.summary))
