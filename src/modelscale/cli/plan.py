"""`modelscale plan`: machines, replicas, threads and batching for a rate and a p99 bound, with costs."""

from __future__ import annotations

import math
import pathlib
from typing import cast

import typer
from rich import box
from rich.table import Table

from modelscale.cli.app import app
from modelscale.cli.options import parse_batch_axes, parse_named_ints
from modelscale.cli.render import ProgressBar, console, err_console, print_json, print_table
from modelscale.errors import InvalidInput
from modelscale.plan import (
    ASSUMED_OVERHEADS,
    MAX_OTHER_CORES,
    EmitKind,
    Overheads,
    PhasePlan,
    PlanOptions,
    PlanResult,
    emit,
    image_build_command,
    plan_model,
    resolve_model,
)
from modelscale.serve.auth import read_api_key
from modelscale.store import open_store
from modelscale.workflow import (
    Recorder,
    Validation,
    ValidationOptions,
    check_server,
    validate_plan,
)

__all__ = ["parse_rates", "plan_command", "render_plan", "render_validation"]

_EMIT_KINDS = ("deploy", "k8s", "ray")


def parse_rates(option: str, text: str | None) -> tuple[float, ...]:
    """'50,500,5000' -> (50.0, 500.0, 5000.0); every rate must be a number > 0."""
    if text is None:
        return ()
    out = []
    for part in text.split(","):
        try:
            value = float(part.strip())
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise InvalidInput(
                f"{option} must be a comma-separated list of rates > 0 (requests/s), e.g. "
                f"50,500,5000. Got {text!r}.",
                field=option.lstrip("-"),
            )
        out.append(value)
    return tuple(out)


@app.command("plan")
def plan_command(
    model: str = typer.Argument(
        ..., help="ONNX model file (or a model name in the knowledge base)."
    ),
    rps: float = typer.Option(..., "--rps", help="Target rate now, requests/s."),
    p99_ms: float = typer.Option(..., "--p99-ms", help="p99 latency bound, ms."),
    phases: str | None = typer.Option(
        None, "--phases", help="Growth phases as target rates, e.g. 50,500,5000."
    ),
    catalog: pathlib.Path | None = typer.Option(
        None, "--catalog", help="Instance catalog CSV (default: the bundled list prices)."
    ),
    headroom: float = typer.Option(
        0.7, "--headroom", help="Plan the target at this share of the max rate, in (0, 1]."
    ),
    machine: str | None = typer.Option(
        None, "--machine", help="'local' for this machine only, or one catalog instance type."
    ),
    dim: list[str] | None = typer.Option(
        None, "--dim", help="Symbolic dim value the model runs at, NAME=V (e.g. seq=32)."
    ),
    batch_axis: list[str] | None = typer.Option(
        None,
        "--batch-axis",
        help="Batch axis of an input whose batch axis is not 0, INPUT=AXIS (e.g. state=1), or "
        "INPUT=none if it is not batched; 0-d inputs never are. Repeatable.",
    ),
    core_factor: float = typer.Option(
        1.0, "--core-factor", help="Per-core speed of catalog machines relative to this one."
    ),
    spot: bool = typer.Option(False, "--spot", help="Price with spot instead of on-demand."),
    front_ms: float | None = typer.Option(
        None,
        "--front-ms",
        help="Front CPU per request, ms (default: measured by the latest --validate-local of "
        f"this model here, else {Overheads.front_ms:g}).",
    ),
    batch_ms: float = typer.Option(
        Overheads.batch_ms, "--batch-ms", help="Hand-over per batch to a replica, ms."
    ),
    emit_kinds: list[str] | None = typer.Option(
        None, "--emit", help="Write deploy (deploy.yaml), k8s or ray; repeatable. Needs --out."
    ),
    out: pathlib.Path | None = typer.Option(None, "--out", help="Folder for --emit files."),
    image: str = typer.Option(
        "modelscale:0.1.0", "--image", help="Container image for the Kubernetes Deployment."
    ),
    max_time: float = typer.Option(
        5.0, "--max-time", help="Seconds at most per point if the model must be profiled."
    ),
    store: bool = typer.Option(
        True,
        "--store/--no-store",
        help="Read profiles from and record the plan in the knowledge base.",
    ),
    validate: str | None = typer.Option(
        None,
        "--validate",
        help="Load-test the modelscale server at this URL (find-max) and set the measured max "
        "rate beside the prediction for the configuration it runs.",
    ),
    validate_here: bool = typer.Option(
        False,
        "--validate-local",
        help="Start the server in the best configuration on this machine and validate it.",
    ),
    validate_seconds: float = typer.Option(
        10.0, "--validate-seconds", help="Seconds per find-max probe window when validating."
    ),
    validate_repeats: int = typer.Option(
        2,
        "--validate-repeats",
        help="Windows per probe when validating; all must pass (with one, a rate that passes by "
        "luck widens the measurement's spread).",
    ),
    validate_max_other: float = typer.Option(
        MAX_OTHER_CORES,
        "--validate-max-other-cores",
        help="Cores other processes may keep busy during a probe window of --validate-local "
        "before the validation is inconclusive.",
    ),
    api_key_file: pathlib.Path | None = typer.Option(
        None, "--api-key-file", help="Bearer key for --validate URL, if the server needs one."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Plan capacity and cost for MODEL at --rps requests/s with p99 <= --p99-ms."""
    if validate is not None and validate_here:
        raise InvalidInput(
            "--validate URL and --validate-local exclude each other: validate a running server "
            "or let plan start one, not both.",
            field="validate",
        )
    checking = validate is not None or validate_here
    v_options = ValidationOptions(
        duration_s=validate_seconds,
        repeats=validate_repeats,
        api_key=read_api_key(api_key_file) if api_key_file else None,
        max_other_cores=validate_max_other,
    )
    kinds = list(dict.fromkeys(emit_kinds or []))
    for kind in kinds:
        if kind not in _EMIT_KINDS:
            raise InvalidInput(
                f"--emit must be one of {', '.join(_EMIT_KINDS)}. Got {kind!r} instead.",
                field="emit",
            )
    if kinds and out is None:
        raise InvalidInput("--emit needs --out DIR: the folder to write the files to.", field="out")
    dims = {k: v[0] for k, v in parse_named_ints("--dim", dim).items()}
    batch_axes = parse_batch_axes("--batch-axis", batch_axis)
    if max_time <= 0:
        raise InvalidInput(f"--max-time must be > 0 seconds. Got {max_time!r}.", field="max-time")
    options = PlanOptions(
        headroom=headroom,
        phases=parse_rates("--phases", phases),
        core_factor=core_factor,
        machine=machine,
        spot=spot,
        overheads=Overheads(
            front_ms=Overheads.front_ms if front_ms is None else front_ms, batch_ms=batch_ms
        ),
        overheads_source=ASSUMED_OVERHEADS
        if front_ms is None
        else "front CPU per request given with --front-ms, the rest assumed",
    )
    kb = open_store()  # stored profiles are read either way; --no-store only stops writes
    recorder = Recorder(kb if store else None)
    artifact = resolve_model(model, store=kb).with_batch_axes(batch_axes)
    if validate is not None:  # a wrong URL or server fails before any profiling
        check_server(validate, artifact, api_key=v_options.api_key)
    bar = ProgressBar()
    with bar.showing("loading"):
        result = plan_model(
            artifact,
            rps=rps,
            p99_ms=p99_ms,
            dims=dims,
            batch_axes=batch_axes,
            catalog=catalog,
            options=options,
            store=kb,
            record_profile=recorder.run_id,
            max_time_s=max_time,
            on_progress=bar,
            calibrate=front_ms is None,
        )
    files = [str(emit(result, cast(EmitKind, k), out, image=image)) for k in kinds] if out else []
    run_id = recorder.run_id(result)
    if not as_json:
        render_plan(result)
        for f in files:
            console.print(f"Wrote {f}")
        if out is not None and "k8s" in kinds:
            console.print(
                f"Wrote {out / 'Dockerfile'} beside it, with the model. Build the image {image} "
                f"with: {image_build_command(out, image)}",
                soft_wrap=True,
            )
        if run_id is not None:
            err_console.print(f"Stored as run {run_id} (modelscale runs show {run_id}).")
    checked: Validation | None = None
    ids: dict[str, int | None] = {"load_run_id": None, "validation_run_id": None}
    if checking:
        with bar.showing("starting the server" if validate is None else "connecting"):
            checked = validate_plan(
                result, artifact, url=validate, options=v_options, plan_run_id=run_id,
                on_progress=bar,
            )  # fmt: skip
        recorded = recorder.record(checked, parent_run_id=run_id)
        if recorded is not None:
            ids = {"load_run_id": recorded.children["load"], "validation_run_id": recorded.run_id}
    if as_json:
        extra = {}
        if checked is not None:
            extra = {"validation": {**checked.result.to_dict(), **ids}}
        print_json({"run_id": run_id, "files": files, **result.to_dict(), **extra})
        return
    if checked is not None:
        render_validation(checked)
        if ids["validation_run_id"] is not None:
            err_console.print(
                f"Validation stored as run {ids['validation_run_id']} (load test: run "
                f"{ids['load_run_id']})."
            )


def render_validation(checked: Validation) -> None:
    """Predicted vs measured, and what the serving overheads cost per request."""
    v = checked.result
    table = Table(box=box.SIMPLE_HEAD, title=f"validation: {v.config.label()} on {v.cores} cores",
                  title_justify="left")  # fmt: skip
    for col in ("p99 bound", "predicted/s", "measured/s", "error", "method", "result"):
        left = col in ("method", "result")
        table.add_column(col, justify="left" if left else "right", no_wrap=True)
    table.add_row(
        f"{v.p99_ms:g} ms",
        f"{v.predicted_rps:,.0f}",
        f"{v.measured_rps:,.0f}",
        f"{v.error:+.1%}",
        _SHORT_METHOD.get(v.method, v.method),
        v.verdict,
        style=_VERDICT_STYLE[v.verdict],
    )
    print_table(table)
    if v.other_cpu_cores:
        worst = max(v.other_cpu_cores)
        console.print(
            f"Other processes kept up to {worst:.2f} cores busy during the probe windows "
            f"(inconclusive above {v.max_other_cores:g})."
        )
    cpu = v.measured_cpu_ms
    if cpu:
        parts = ", ".join(f"{k} {val:.3f} ms" for k, val in cpu.items())
        console.print(f"CPU per request measured during the load test: {parts}.")
    assumed = v.params["overheads"]["front_ms"]
    if v.implied_front_ms is not None:
        console.print(
            f"Assumed front CPU {assumed:g} ms/request; {v.implied_front_ms:.2f} ms would make "
            "prediction and measurement agree (pass --front-ms to plan with it)."
        )
    console.print(v.summary)


_VERDICT_STYLE = {"within": "green", "outside": "red", "inconclusive": "yellow"}


def _money(x: float | None) -> str:
    if x is None:
        return "-"
    return f"${x:,.0f}" if x >= 100 else f"${x:,.2f}"


_SHORT_METHOD = {
    "analytic:M/G/c": "M/G/c",
    "analytic:batch-queue": "batch-q",
    "simulation": "sim",
}
_METHOD_WORDS = {
    "analytic:M/G/c": "the M/G/c queue",
    "analytic:batch-queue": "the batch-service queue",
    "simulation": "simulating the batcher",
}


_SHORT_CATEGORY = {"horizontal": "horiz.", "vertical": "vert.", "mixed": "mixed"}


def _phase_table(ph: PhasePlan, p99_ms: float) -> Table:
    # Sized for an 80-column terminal: cells pad by one space, the machine column wraps if needed,
    # and what every row shares (the method) goes below the table.
    table = Table(
        box=box.SIMPLE_HEAD,
        title=(
            f"{ph.rate_rps:,.0f} req/s at p99 <= {p99_ms:g} ms (* = extrapolated; server = "
            "replicas x threads, batch max/wait ms)"
        ),
        title_justify="left",
        pad_edge=False,
        collapse_padding=True,
    )
    for col in ("option", "machines", "server", "max/s", "util", "p99 ms", "$/month", "$/M req"):
        left = col in ("option", "machines", "server")
        table.add_column(col, justify="left" if left else "right", no_wrap=col != "machines")
    for o in ph.options:
        where = "this machine" if o.provider == "local" else f"{o.provider} {o.instance_type}"
        if o.objective_ms is not None:
            batch = f" b<={o.max_batch} slo"
        else:
            batch = "" if o.max_batch == 1 else f" b{o.max_batch}/{o.max_wait_ms:g}"
        table.add_row(
            _SHORT_CATEGORY.get(o.category, o.category) + ("*" if o.extrapolated else ""),
            f"{o.machines} x {where}",
            f"{o.replicas}x{o.threads}{batch}",
            f"{o.max_rate_rps:,.0f}",
            f"{o.utilisation:.0%}",
            "-" if o.p99_at_target_ms is None else f"{o.p99_at_target_ms:.1f}",
            _money(o.usd_per_month),
            _money(o.usd_per_million),
            style="bold green" if o is ph.recommended else None,
        )
    methods: dict[str, int] = {}
    for o in ph.options:
        methods[o.method] = methods.get(o.method, 0) + 1
    table.caption = "max/s and p99 by " + ", ".join(
        f"{_METHOD_WORDS.get(m, m)} ({n})" for m, n in methods.items()
    )
    table.caption_justify = "left"
    return table


def render_plan(result: PlanResult) -> None:
    """Print a plan: one table per phase, the recommendation and why, then the assumptions."""
    s = result.service
    m = result.machine
    console.print(
        f"[bold]{result.model.get('name')}[/] · {str(result.model.get('sha256', ''))[:12]} · "
        f"this machine: {m['cpu_model']}, {m['usable_cores']} cores · service times from "
        f"{s.source} (worst point off the fit by {s.max_rel_residual:.0%})"
    )
    p99 = float(result.target["p99_ms"])
    for ph in result.phases:
        print_table(_phase_table(ph, p99))
        console.print(f"[bold]Recommended:[/] {ph.why}")
        for line in ph.not_possible:
            console.print(f"[yellow]not possible:[/] {line}")
        console.print(f"[bold]Next:[/] {ph.next_step}")
    if result.local is not None:
        lo = result.local
        console.print(
            f"Best on this machine: {lo.config.label()}, {lo.per_machine_rps:,.0f} req/s at p99 <= "
            f"{p99:g} ms ({lo.method})."
        )
    if result.not_planned:
        kinds: dict[str, int] = {}
        for n in result.not_planned:
            kind = n.reason.split(" ", 1)[0]  # 'GPU' or an instruction set such as 'arm64'
            kinds[kind] = kinds.get(kind, 0) + 1
        why = {"GPU": "no profile of this model measured on their GPU"}
        listed = "; ".join(
            f"{count} {kind} machine(s) ({why.get(kind, 'profile measured on another CPU type')})"
            for kind, count in kinds.items()
        )
        console.print(f"Listed, not planned: {listed}; --json lists each with its price.")
    for a in result.assumptions:
        console.print(f"[dim]assumption:[/] {a}")
    console.print(result.summary)
