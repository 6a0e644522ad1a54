"""`modelscale demo`: the main job end to end on the built-in digits example.

It grows with the toolkit: it builds the example, profiles it and compresses it within an accuracy
tolerance; serve, load and plan join as they land.
"""

from __future__ import annotations

import pathlib

import typer

from modelscale.cli.app import app
from modelscale.cli.compress import render_compress
from modelscale.cli.profile import render_profile
from modelscale.cli.render import console, progress
from modelscale.compress import compress_example, record_search
from modelscale.examples import build_example
from modelscale.model import ModelArtifact
from modelscale.profile import MeasureOptions, SweepPoint, plot_profile, profile_model
from modelscale.store import open_store

__all__ = ["demo_command"]


@app.command("demo")
def demo_command(
    out: pathlib.Path = typer.Option(
        pathlib.Path(".modelscale/demo"), "--out", help="Where the demo writes its model and plots."
    ),
    max_time: float = typer.Option(3.0, "--max-time", help="Seconds at most per profile point."),
) -> None:
    """Build the digits example, profile and compress it, and record everything."""
    kb = open_store()
    console.rule("1. the model: a small CNN trained on scikit-learn's digits, exported to ONNX")
    with progress() as bar:
        task = bar.add_task("building the digits example", total=None)

        def on_build(step: str, done: int, total: int) -> None:
            bar.update(task, description=step, completed=done, total=total)

        example = build_example("digits", out_dir=out / "digits", progress=on_build)
    console.print(
        f"{example.model_path} ({'cached' if example.cached else 'built now'}); held-out accuracy "
        f"{example.meta.get('test_accuracy', float('nan')):.3f} on {example.eval_path}"
    )
    artifact = ModelArtifact.load(example.model_path, name="digits")
    kb.register_model(
        artifact.sha256, name=artifact.name, path=str(artifact.path), size_bytes=artifact.size_bytes
    )

    console.rule("2. profile: what it costs to run here, per batch size and thread count")
    with progress() as bar:
        task = bar.add_task("profiling", total=None)

        def on_stage(stage: str, steps: int) -> None:
            bar.update(task, description=stage, total=steps, completed=0)

        def on_point(p: SweepPoint) -> None:
            bar.update(task, advance=1, description=f"batch {p.batch} x {p.threads} threads")

        result = profile_model(
            artifact,
            batches=[1, 8, 32, 128],
            measure=MeasureOptions(max_time_s=max_time),
            on_point=on_point,
            on_stage=on_stage,
        )
    run_id = kb.record(result, model_version=artifact.sha256)
    render_profile(result)
    plot = plot_profile(result, out / "profile.png")
    console.print(f"Plot: {plot}")

    console.rule("3. compress: the smallest, fastest model within 1 accuracy point")
    with progress() as bar:
        task = bar.add_task("compressing", total=None)

        def on_compress(step: str, done: int, total: int) -> None:
            bar.update(task, description=step, completed=done, total=total)

        compressed = compress_example(
            example,
            out=out / "compressed",
            max_drop=0.01,
            measure=MeasureOptions(max_time_s=max_time),
            progress=on_compress,
        )
    recorded = record_search(kb, compressed)
    render_compress(compressed)

    console.rule("4. the knowledge base")
    console.print(
        f"Profile stored as run {run_id}; the compress search as run {recorded.search_run_id} "
        f"with one child run per candidate. See them with: modelscale runs"
    )
    console.print("Next: modelscale profile YOUR_MODEL.onnx --batch 1,8,32 --threads 1,2")
