"""`modelscale demo`: the main job end to end on the built-in digits example.

It grows with the toolkit: it builds the example, profiles it, compresses it within an accuracy
tolerance, serves it with two replica processes and load-tests the server, then plans capacity and
cost for a target rate and validates the plan with a load test of the planned configuration.
"""

from __future__ import annotations

import pathlib

import typer

from modelscale.cli.app import app
from modelscale.cli.compress import render_compress
from modelscale.cli.load import render_load
from modelscale.cli.plan import render_plan, render_validation, validate_plan
from modelscale.cli.profile import profile_with_progress, render_profile
from modelscale.cli.render import console, progress
from modelscale.compress import compress_example, record_search
from modelscale.config import DeploymentSpec
from modelscale.examples import build_example
from modelscale.loadgen import LoadOptions, run_load
from modelscale.model import ModelArtifact
from modelscale.plan import emit, plan_model
from modelscale.plan.validate import ValidationOptions
from modelscale.profile import MeasureOptions, plot_profile
from modelscale.serve import start_server
from modelscale.store import open_store

__all__ = ["demo_command"]

_PLAN_RPS = 500.0
_PLAN_P99_MS = 25.0


@app.command("demo")
def demo_command(
    out: pathlib.Path = typer.Option(
        pathlib.Path(".modelscale/demo"), "--out", help="Where the demo writes its model and plots."
    ),
    max_time: float = typer.Option(3.0, "--max-time", help="Seconds at most per profile point."),
) -> None:
    """Build the digits example, profile, compress, serve and load-test it; record everything."""
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
    result = profile_with_progress(
        artifact, batches=[1, 8, 32, 128], measure=MeasureOptions(max_time_s=max_time)
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

    console.rule("4. serve with 2 replica processes (KServe V2) and load-test it, open loop")
    spec = DeploymentSpec.single(
        example.model_path, name="digits", replicas=2, max_batch=16, max_wait_ms=2
    )
    with progress() as bar:
        task = bar.add_task("starting the server", total=None)
        server = start_server(spec)
        try:
            console.print(
                f"Serving digits at {server.url} (2 replicas x 1 thread, batch 16 / 2 ms)"
            )
            loaded = run_load(
                server.url,
                model="digits",
                options=LoadOptions(
                    rate=300, duration_s=5, pattern="poisson", inputs=example.eval_path
                ),
                on_progress=lambda p: bar.update(
                    task, description=p.stage, completed=p.done, total=p.total
                ),
            )
        finally:
            server.stop()
            server.close()
    if loaded.model_sha256:  # the server names the version it served in its V2 metadata
        kb.register_model(loaded.model_sha256, name="digits")
    load_run = kb.record(loaded, model_version=loaded.model_sha256)
    render_load(loaded)

    console.rule(f"5. plan: machines, replicas and cost for {_PLAN_RPS:g} req/s at p99 <= "
                 f"{_PLAN_P99_MS:g} ms, then validate it here")  # fmt: skip
    planned = plan_model(artifact, rps=_PLAN_RPS, p99_ms=_PLAN_P99_MS, store=kb)
    plan_run = kb.record(planned, model_version=artifact.sha256)
    render_plan(planned)
    if any(phase.recommended is not None for phase in planned.phases):
        written = [emit(planned, kind, out / "deploy") for kind in ("deploy", "k8s", "ray")]
        console.print(
            "Deployment files: " + ", ".join(str(w) for w in written) + " (modelscale serve -c, "
            "kubectl apply -f, serve run)"
        )
    if planned.local is None:
        console.print("No configuration on this machine meets the bound; nothing to validate.")
        checked_ids = ""
    else:
        checked = validate_plan(
            planned, artifact, None, ValidationOptions(duration_s=4), plan_run_id=plan_run
        )
        val_run, val_load = checked.record(kb, plan_run_id=plan_run)
        render_validation(checked)
        checked_ids = f"; its validation as run {val_run} (load test: run {val_load})"

    console.rule("6. the knowledge base")
    console.print(
        f"Profile stored as run {run_id}; the compress search as run {recorded.search_run_id} "
        f"with one child run per candidate; the load test as run {load_run}; the plan as run "
        f"{plan_run}{checked_ids}. See them with: modelscale runs"
    )
    console.print("Next: modelscale profile YOUR_MODEL.onnx --batch 1,8,32 --threads 1,2")
