"""`modelscale demo`: the main job end to end on the built-in digits example.

It grows with the toolkit: it builds the example, profiles it, compresses it within an accuracy
tolerance, serves it with two replica processes and load-tests the server, then plans capacity and
cost for a target rate and validates the plan with a load test of the planned configuration.
The steps run in ``modelscale.workflow.run_demo``; this module shows each one as it finishes.
"""

from __future__ import annotations

import pathlib

import typer
from rich.markup import escape

from modelscale.cli.app import app
from modelscale.cli.assess import render_assess
from modelscale.cli.compress import render_compress
from modelscale.cli.laws import render_fit
from modelscale.cli.load import render_load
from modelscale.cli.plan import render_plan, render_validation
from modelscale.cli.profile import render_profile
from modelscale.cli.render import ProgressBar, console, fmt_bytes
from modelscale.cli.report import render_scorecard
from modelscale.workflow import (
    DEMO_STEPS,
    CompressStep,
    DemoStep,
    ExampleStep,
    LawsStep,
    LoadStep,
    PlanStep,
    ProfileStep,
    ReportStep,
    RolloutStep,
    TextStep,
    WatchStep,
    run_demo,
)

__all__ = ["demo_command"]

_WAITING = (
    "building the digits example",
    "loading",
    "compressing",
    "starting the server",
    "making the baseline",
    "starting the canary",
    "planning",
    "building the MiniLM example",
    "training the scaling runs",
    "auditing the request log",
)


@app.command("demo")
def demo_command(
    out: pathlib.Path = typer.Option(
        pathlib.Path(".modelscale/demo"), "--out", help="Where the demo writes its model and plots."
    ),
    max_time: float = typer.Option(3.0, "--max-time", help="Seconds at most per profile point."),
) -> None:
    """Build the digits example, profile, compress, serve and load-test it; record everything."""
    bar = ProgressBar()
    steps = run_demo(out, max_time_s=max_time, on_progress=bar)
    done: list[DemoStep] = []
    for number, title in enumerate(DEMO_STEPS):
        console.rule(title)
        with bar.showing(_WAITING[number]):
            step = next(steps, None)  # the step runs now, while its bar shows
        if step is None:
            break
        _render(step)
        done.append(step)

    console.rule(f"{len(DEMO_STEPS) + 1}. the knowledge base")
    console.print(_stored(done))
    console.print("Next: modelscale profile YOUR_MODEL.onnx --batch 1,8,32 --threads 1,2")


def _render(step: DemoStep) -> None:
    if isinstance(step, ExampleStep):
        ex = step.example
        console.print(
            f"{ex.model_path} ({'cached' if ex.cached else 'built now'}); held-out accuracy "
            f"{ex.meta.get('test_accuracy', float('nan')):.3f} on {ex.eval_path}"
        )
    elif isinstance(step, ProfileStep):
        render_profile(step.result)
        console.print(f"Plot: {step.plot}")
    elif isinstance(step, CompressStep):
        render_compress(step.result)
    elif isinstance(step, WatchStep):
        _render_watch(step)
    elif isinstance(step, RolloutStep):
        _render_rollout(step)
    elif isinstance(step, TextStep):
        _render_text(step)
    elif isinstance(step, LawsStep):
        _render_laws(step)
    elif isinstance(step, ReportStep):
        _render_report(step)
    elif isinstance(step, LoadStep):
        console.print(f"Serving digits at {step.url} ({step.served})")
        render_load(step.result)
        if step.log_stats is not None:
            for row in step.log_stats.rows:
                console.print(
                    f"Request log {step.log_path}: {row.requests:,} requests to "
                    f"{row.group['model']}:{row.group['version']}, {row.error_rate:.2%} errors, "
                    f"p50 {_ms(row.p50_ms)}, p99 {_ms(row.p99_ms)} "
                    f"(modelscale logs stats {step.log_path})",
                    soft_wrap=True,
                )
    else:
        render_plan(step.result)
        if step.files:
            console.print(
                "Deployment files: " + ", ".join(str(f) for f in step.files) + " (modelscale "
                "serve -c, kubectl apply -f, serve run)"
            )
        if step.validation is None:
            console.print("No configuration on this machine meets the bound; nothing to validate.")
        else:
            render_validation(step.validation)


def _render_watch(step: WatchStep) -> None:
    b = step.baseline
    ref = b.reference_metric or {}
    console.print(
        f"Baseline {b.name} (run {b.run_id}): {b.rows} labelled rows, {len(b.features)} features, "
        f"reference accuracy {ref.get('value', float('nan')):.3f}",
        soft_wrap=True,
    )
    console.print(
        f"Traffic: {step.clean.overall.achieved_rps:.0f} req/s of clean digits, then "
        f"{step.shifted.overall.achieved_rps:.0f} req/s of shifted ones ({step.shifted_path}: lower "
        "contrast, sensor noise)",
        soft_wrap=True,
    )
    for w in step.windows:
        acc = w["accuracy"].get("estimate") or {}
        drifted = w["drift"].get("drifted") or []
        shown = ", ".join(drifted[:3]) + (" ..." if len(drifted) > 3 else "")
        console.print(
            f"  window (run {w['run_id']}): {w['drift']['rows']:>4} rows  {w['verdict']:<8} "
            f"estimated accuracy {acc.get('value', float('nan')):.3f}  {shown}",
            soft_wrap=True,
        )
    if step.flagged_after is None:
        console.print("[red]No window flagged the shift.[/]")
    else:
        console.print(
            f"The shift was flagged by window {step.flagged_after} of the shifted traffic; "
            f"{len(step.alerts)} alert event(s) recorded"
            + (
                f" (run {step.alerts[0]['run_id']}: {step.alerts[0]['message']})"
                if step.alerts
                else ""
            )
            + ". See: modelscale monitor status digits",
            soft_wrap=True,
        )


def _render_rollout(step: RolloutStep) -> None:
    s = step.status
    arms = s["arms"]
    console.print(
        f"Canary {step.name}: control version {arms['control']['version']} (the original), "
        f"treatment version {arms['treatment']['version']} (the compressed model); "
        f"{step.requests:,} requests of held-out digits, open loop",
        soft_wrap=True,
    )
    for share, seconds in step.steps:
        console.print(f"  treatment at {share:>4.0%} for {seconds:5.1f} s: no harm found")
    colour = {"promoted": "green", "rolled_back": "red"}.get(step.state, "yellow")
    console.print(
        f"[{colour}]{step.state}[/] after {step.seconds:.1f} s; the treatment answered "
        f"{step.treatment_requests:,} requests (p99 {_ms(arms['treatment']['p99_ms'])} against "
        f"the control's {_ms(arms['control']['p99_ms'])}). See: modelscale runs --kind experiment",
        soft_wrap=True,
    )
    for reason in s.get("reasons") or []:
        console.print(f"  [red]{reason}[/]")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _render_text(step: TextStep) -> None:
    console.print(
        f"Serving MiniLM with text input at {step.url}: clients send strings, the server "
        "tokenizes them (deploy.yaml text: tokenizer.json)",
        soft_wrap=True,
    )
    render_load(step.load)
    shown = step.example_payload.get("inputs", {}).get("text", [""])[0]
    console.print(
        f"{step.payloads:,} payloads logged under {step.log_path}, personal data redacted "
        f"before the write; one as stored: {escape(shown[:160])!r}",
        soft_wrap=True,
    )
    a = step.audit
    found = ", ".join(f"{n} {k}" for k, n in a.findings.items()) or "none"
    console.print(
        f"Privacy audit (run {step.audit_run_id}): {a.scanned_rows:,} stored rows scanned, "
        f"personal data found: {found}; audit log chain "
        f"{'intact' if a.chain_ok else 'BROKEN'} "
        f"(modelscale privacy audit --log {step.log_path})",
        soft_wrap=True,
    )


def _render_laws(step: LawsStep) -> None:
    console.print(
        f"{'Trained' if step.trained else 'Reused'} 16 runs of the digits CNN "
        f"({step.runs_csv}: params, tokens = images seen, loss = held-out cross-entropy)",
        soft_wrap=True,
    )
    render_fit(step.fit)
    console.print(
        f"Fitted in {step.seconds:.1f} s; stored as run {step.run_id} under the digits model. "
        f"Again: modelscale laws fit {step.runs_csv}",
        soft_wrap=True,
    )


def _render_report(step: ReportStep) -> None:
    console.print(
        (
            f"Objectives measured over the digits log (run {', '.join(map(str, step.slo_run_ids))}"
            "); "
            if step.slo_run_ids
            else ""
        )
        + f"privacy audit of the digits log (run {step.audit_run_id}): "
        f"{'clean' if step.audit_ok else 'PROBLEMS FOUND'}"
        + (
            f"; the compression decision kept as note {step.note_run_id}"
            if step.note_run_id
            else ""
        ),
        soft_wrap=True,
    )
    if step.assessment is not None:
        render_assess(step.assessment)
        console.print(
            f"Assessment stored as run {step.assess_run_id}; again later (compared with the "
            "first): modelscale assess digits, or on a schedule: --emit cron",
            soft_wrap=True,
        )
    render_scorecard(step.scorecard)
    console.print(
        f"Report: {step.path} ({fmt_bytes(step.size_bytes)}, {step.charts} charts, written in "
        f"{step.seconds:.2f} s; opens offline in any browser). Again at any time: modelscale "
        "report digits; as a CI gate: modelscale check digits",
        soft_wrap=True,
    )


def _stored(steps: list[DemoStep]) -> str:
    ids: dict[str, str] = {}
    for s in steps:
        if isinstance(s, ProfileStep):
            ids["profile"] = f"Profile stored as run {s.run_id}"
        elif isinstance(s, CompressStep):
            ids["compress"] = (
                f"the compress search as run {s.recorded.run_id} with one child run per candidate"
            )
        elif isinstance(s, LoadStep):
            ids["load"] = f"the load test as run {s.run_id}"
        elif isinstance(s, WatchStep):
            ids["watch"] = (
                f"the baseline as run {s.baseline.run_id} and {len(s.windows)} monitor window(s)"
            )
        elif isinstance(s, RolloutStep):
            ids["rollout"] = f"the canary's {len(s.status['events'])} event(s) as experiment runs"
        elif isinstance(s, PlanStep):
            checked = (
                ""
                if s.validation_run_id is None
                else f"; its validation as run {s.validation_run_id} (load test: run "
                f"{s.load_run_id})"
            )
            ids["plan"] = f"the plan as run {s.run_id}{checked}"
        elif isinstance(s, TextStep):
            ids["text"] = f"the privacy audit as run {s.audit_run_id}"
        elif isinstance(s, LawsStep):
            ids["laws"] = f"the scaling-law fit as run {s.run_id}"
        elif isinstance(s, ReportStep):
            ids["report"] = f"the digits log's audit as run {s.audit_run_id}" + (
                f" and the decision as note {s.note_run_id}" if s.note_run_id else ""
            )
    return "; ".join(ids.values()) + ". See them with: modelscale runs"
