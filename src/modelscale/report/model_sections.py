"""Sections about the model and its capacity: the card, profile, compression, plan, load, laws."""

from __future__ import annotations

from typing import Any

from modelscale.report.charts import Chart, Trace
from modelscale.report.evidence import Evidence
from modelscale.report.section import Section, Table, fmt, fmt_bytes, numbers, when
from modelscale.store import Run

__all__ = [
    "card_section",
    "compress_section",
    "laws_section",
    "load_section",
    "plan_section",
    "profile_section",
]


def _static(ev: Evidence, sha256: str) -> dict[str, Any]:
    run = ev.latest("profile", lambda r: r.model_version == sha256)
    return dict(run.results.get("static") or {}) if run else {}


def card_section(ev: Evidence) -> Section:
    """Name, versions with lineage, size, parameters, FLOPs and the machine measured on."""
    depth: dict[str, int] = {}
    for v in ev.versions:  # oldest first: a parent is placed before its children
        depth[v.sha256] = depth.get(v.parent_sha256 or "", -1) + 1 if v.parent_sha256 else 0
    statics = {v.sha256: _static(ev, v.sha256) for v in ev.versions}
    sizes = {v.sha256: v.size_bytes or statics[v.sha256].get("file_bytes") for v in ev.versions}
    rows = []
    for v in ev.versions:
        made_by = ", ".join(
            f"{k.removesuffix('_run')} run {r}" for k, r in v.meta.items() if k.endswith("_run")
        )
        rows.append(
            (
                "  " * depth[v.sha256] + ("└ " if depth[v.sha256] else "") + v.name,
                v.sha256[:12],
                fmt_bytes(sizes[v.sha256]),
                fmt(statics[v.sha256].get("parameters")),
                when(v.created_at),
                made_by or "-",
            )
        )
    charts = [
        Chart(
            key="card-sizes",
            title="Size of each version",
            x_title="version",
            y_title="MiB",
            traces=(
                Trace(
                    "file size",
                    [f"{v.name} ({v.sha256[:6]})" for v in ev.versions],
                    [(sizes[v.sha256] or 0) / 2**20 for v in ev.versions],
                    mode="bar",
                ),
            ),
        )
    ]
    prof = ev.latest("profile")
    facts = []
    if prof is not None:
        static = dict(prof.results.get("static") or {})
        flops = prof.results.get("flops") or []
        first = flops[0] if flops and isinstance(flops[0], dict) else {}
        facts.append(
            f"{fmt(static.get('parameters'))} parameters, {fmt_bytes(static.get('file_bytes'))}"
            f", {fmt(first.get('flops'))} FLOPs per run at {first.get('input_shapes', '?')}."
        )
        m = prof.machine
        libs = m.get("libraries") or {}
        facts.append(
            f"Measured on {m.get('cpu_model', '?')} ({m.get('usable_cores', '?')} usable cores, "
            f"{fmt_bytes(m.get('memory_bytes'))}, AVX-512 VNNI "
            f"{'yes' if m.get('has_vnni') else 'no'}), onnxruntime {libs.get('onnxruntime', '?')}."
        )
        by_op = first.get("flops_by_op") or {}
        if by_op:
            ops = sorted(by_op, key=lambda k: -float(by_op[k] or 0))
            charts.append(
                Chart(
                    "card-flops",
                    "FLOPs per operator (one run at the profiled shape)",
                    "operator",
                    "FLOPs",
                    (Trace("FLOPs", ops, numbers([by_op[o] for o in ops]), mode="bar"),),
                )
            )
    return Section(
        key="card",
        title="Model card",
        summary=f"{ev.name}: {len(ev.versions)} version(s), {len(ev.runs)} run(s) recorded. "
        + " ".join(facts),
        charts=tuple(charts),
        tables=(
            Table(
                ("version", "sha256", "size", "parameters", "registered", "made by"), tuple(rows)
            ),
        ),
        runs=(prof.id,) if prof else (),
    )


def profile_section(ev: Evidence) -> Section:
    """Latency and throughput against batch size, one line per thread count."""
    run = ev.latest("profile")
    if run is None:
        return Section.absent("profile", "Profile", "modelscale profile MODEL.onnx --batch 1,8,32")
    series: dict[str, list[dict[str, Any]]] = {}
    for p in run.results.get("points") or []:
        dims = "".join(f", {k}={v}" for k, v in sorted((p.get("dims") or {}).items()))
        series.setdefault(f"{p.get('threads')} thread(s){dims}", []).append(p)
    lat, thr, mem = [], [], []
    for name, pts in sorted(series.items()):
        pts.sort(key=lambda p: p.get("batch", 0))
        x = [p.get("batch") for p in pts]
        p50 = numbers([p.get("p50_ms") for p in pts])
        lat.append(
            Trace(
                name,
                x,
                p50,
                error_low=[
                    max(0.0, (m or 0) - (p.get("ci_low_ms") or m or 0))
                    for m, p in zip(p50, pts, strict=True)
                ],
                error_high=[
                    max(0.0, (p.get("ci_high_ms") or m or 0) - (m or 0))
                    for m, p in zip(p50, pts, strict=True)
                ],
            )
        )
        lat.append(Trace(f"{name} p99", x, numbers([p.get("p99_ms") for p in pts]), mode="markers"))
        thr.append(Trace(name, x, numbers([p.get("items_per_s") for p in pts])))
        mem.append(
            Trace(
                name,
                x,
                [
                    (p["peak_rss_bytes"] - (p.get("baseline_rss_bytes") or 0)) / 2**20
                    if isinstance(p.get("peak_rss_bytes"), int | float)
                    else None
                    for p in pts
                ],
            )
        )
    return Section(
        key="profile",
        title="Profile",
        summary=str(run.results.get("summary", "")) + f" (run {run.id}, {when(run.created_at)}).",
        charts=(
            Chart(
                "profile-latency",
                "Latency per run (p50 with 95% CI, p99)",
                "batch size",
                "ms",
                tuple(lat),
                x_log=True,
                y_log=True,
            ),
            Chart(
                "profile-throughput", "Throughput", "batch size", "items/s", tuple(thr), x_log=True
            ),
            Chart(
                "profile-memory",
                "Peak memory of a replica above its start",
                "batch size",
                "MiB",
                tuple(mem),
                x_log=True,
            ),
        ),
        runs=tuple(r.id for r in ev.of("profile")),
    )


def compress_section(ev: Evidence) -> Section:
    """Size, speed and metric with its CI per candidate; the chosen one."""
    run = ev.latest("compress")
    if run is None:
        return Section.absent(
            "compress", "Compression", "modelscale compress MODEL.onnx --eval EVAL.npz"
        )
    # The search keeps its trials in its results (and as child runs): read them there, so a search
    # stored before trials became child runs renders too.
    stored = [t for t in run.results.get("trials") or [] if isinstance(t, dict)]
    trials = [t for t in stored if t.get("status", "ok") == "ok"]
    chosen = run.results.get("chosen")
    metric = str(run.results.get("metric", "metric"))

    def name(v: dict[str, Any]) -> str:
        return str(v.get("name") or v.get("recipe") or "?")

    def trace(label: str, vals: list[dict[str, Any]], x_of: Any) -> Trace:
        change = numbers([v.get("change") for v in vals])
        return Trace(
            label,
            [x_of(v) for v in vals],
            change,
            mode="markers",
            error_low=[
                max(0.0, (c or 0.0) - (v.get("ci_low") or 0.0))
                for c, v in zip(change, vals, strict=True)
            ],
            error_high=[
                max(0.0, (v.get("ci_high") or 0.0) - (c or 0.0))
                for c, v in zip(change, vals, strict=True)
            ],
            text=[f"{name(v)}: {metric} {fmt(v.get('metric'), 4)}" for v in vals],
        )

    def speed(v: dict[str, Any]) -> float | None:
        lat = (v.get("latency") or {}).get(str(v.get("batch")))
        return lat.get("items_per_s") if isinstance(lat, dict) else None

    def size(v: dict[str, Any]) -> float | None:
        n = v.get("size_bytes")
        return float(n) / 2**20 if isinstance(n, int | float) else None

    others = [t for t in trials if name(t) != chosen]
    picked = [t for t in trials if name(t) == chosen]
    charts = tuple(
        c
        for c in (
            Chart(
                "compress-size",
                f"Change in {metric} against size (95% CI)",
                "MiB",
                f"{metric} change",
                (trace("candidates", others, size), trace("chosen", picked, size)),
            ),
            Chart(
                "compress-speed",
                f"Change in {metric} against throughput (95% CI)",
                f"items/s at batch {run.results.get('batch') or run.params.get('batch') or '?'}",
                f"{metric} change",
                (trace("candidates", others, speed), trace("chosen", picked, speed)),
            ),
        )
        if any(
            x is not None and y is not None for t in c.traces for x, y in zip(t.x, t.y, strict=True)
        )
    )
    rows = tuple(
        (
            name(t) + (" (chosen)" if name(t) == chosen else ""),
            fmt_bytes(t.get("size_bytes")),
            fmt(speed(t)),
            f"{fmt(t.get('metric'), 4)} ({_signed(t.get('change'))} "
            f"[{_signed(t.get('ci_low'))}, {_signed(t.get('ci_high'))}])"
            if t.get("metric") is not None
            else f"drop {fmt(t.get('drop'), 3)}",
            "pass" if t.get("passed", t.get("ok")) else "fail",
            "yes" if t.get("pareto") else "no",
        )
        for t in stored
    )
    return Section(
        key="compress",
        title="Compression",
        summary=str(run.results.get("summary", "")) + f" (run {run.id}).",
        charts=charts,
        tables=(
            Table(
                (
                    "candidate",
                    "size",
                    "items/s",
                    f"{metric} (change [95% CI])",
                    "tolerance",
                    "pareto",
                ),
                rows,
            ),
        ),
        runs=(run.id, *(t.id for t in ev.children(run) if t.kind == "compress")),
    )


def _signed(v: Any) -> str:
    return f"{v:+.4f}" if isinstance(v, int | float) else "-"


def plan_section(ev: Evidence) -> Section:
    """Options and cost per growth phase; predicted against measured rate."""
    run = ev.latest("plan")
    if run is None:
        return Section.absent(
            "plan", "Capacity plan", "modelscale plan MODEL.onnx --rps 500 --p99-ms 25"
        )
    phases = [p for p in run.results.get("phases") or [] if isinstance(p, dict)]
    rates = [fmt(p.get("rate_rps")) + " req/s" for p in phases]

    def cheapest(p: dict[str, Any], category: str) -> float | None:
        costs = [
            o.get("usd_per_month")
            for o in p.get("options") or []
            if o.get("category") == category and o.get("usd_per_month") is not None
        ]
        return min(costs) if costs else None

    cost = Chart(
        "plan-cost",
        "Cheapest option per growth phase",
        "phase (target rate)",
        "USD / month",
        (
            Trace(
                "horizontal (more replicas)",
                rates,
                [cheapest(p, "horizontal") for p in phases],
                mode="bar",
            ),
            Trace(
                "vertical (more threads)",
                rates,
                [cheapest(p, "vertical") for p in phases],
                mode="bar",
            ),
        ),
    )
    checks = sorted(ev.of("plan.validation"), key=lambda r: r.id)
    labels = [f"run {v.id}" for v in checks]
    validated = Chart(
        "plan-validation",
        "Predicted against measured maximum rate",
        "validation",
        "req/s",
        (
            Trace(
                "predicted",
                labels,
                numbers([v.results.get("predicted_rps") for v in checks]),
                mode="bar",
            ),
            Trace(
                "with measured overheads",
                labels,
                numbers([v.results.get("calibrated_rps") for v in checks]),
                mode="bar",
            ),
            Trace(
                "measured",
                labels,
                numbers([v.results.get("measured_rps") for v in checks]),
                mode="bar",
            ),
        ),
    )
    rows = []
    for p in phases:
        rec = p.get("recommended") or {}
        rows.append(
            (
                fmt(p.get("rate_rps")),
                f"{rec.get('machines', '?')} x {rec.get('provider', '?')} "
                f"{rec.get('instance_type', '?')} ({rec.get('category', '?')})"
                if rec
                else "none",
                fmt(rec.get("usd_per_month")),
                fmt(rec.get("usd_per_million")),
                str(p.get("why") or "; ".join(map(str, p.get("not_possible") or [])) or "-"),
            )
        )
    summary = str(run.results.get("summary", "")) + f" (run {run.id})."
    if checks:
        last = checks[-1].results
        summary += (
            f" Last validation (run {checks[-1].id}): predicted {fmt(last.get('predicted_rps'))}"
            f" req/s, measured {fmt(last.get('measured_rps'))}, error "
            f"{fmt((last.get('error') or 0) * 100)}% "
            f"({'within' if last.get('within_tolerance') else 'outside'} "
            f"±{fmt((last.get('tolerance') or 0) * 100)}%)."
        )
    return Section(
        key="plan",
        title="Capacity plan",
        summary=summary,
        charts=(cost, validated) if checks else (cost,),
        tables=(
            Table(("rate req/s", "recommended", "USD/month", "USD/million", "why"), tuple(rows)),
        ),
        runs=(run.id, *(v.id for v in checks)),
    )


def load_section(ev: Evidence) -> Section:
    """Latency percentiles of every load test and the rate each achieved."""
    runs = sorted(ev.of("load"), key=lambda r: r.id)
    if not runs:
        return Section.absent("load", "Load tests", "modelscale load URL --model NAME --rate 100")
    labels = [f"run {r.id}" for r in runs]

    def stat(key: str) -> list[float | None]:
        return numbers([(r.results.get("overall") or {}).get(key) for r in runs])

    pct = Chart(
        "load-latency",
        "Latency percentiles per load test",
        "load test",
        "ms",
        tuple(
            Trace(k.removesuffix("_ms"), labels, stat(k), mode="bar")
            for k in ("p50_ms", "p90_ms", "p99_ms")
        ),
        y_log=True,
    )
    rate = Chart(
        "load-rate",
        "Offered and achieved rate (find-max: the highest rate within the p99 objective)",
        "load test",
        "req/s",
        (
            Trace("offered", labels, stat("offered_rps"), mode="bar"),
            Trace("achieved", labels, stat("achieved_rps"), mode="bar"),
            Trace(
                "max rate",
                labels,
                numbers([r.results.get("max_rate_rps") for r in runs]),
                mode="markers",
            ),
        ),
    )
    charts = [pct, rate]
    probed = next((r for r in reversed(runs) if r.results.get("windows")), None)
    if probed is not None:
        wins = [w for w in probed.results["windows"] if isinstance(w, dict)]
        objective = probed.params.get("p99_ms")

        def probe(ok: bool) -> Trace:
            picked = [w for w in wins if bool(w.get("passed")) is ok]
            return Trace(
                "within the objective" if ok else "over it",
                numbers([w.get("rate_rps") for w in picked]),
                numbers([(w.get("stats") or {}).get("p99_ms") for w in picked]),
                mode="markers",
            )

        charts.append(
            Chart(
                "load-probes",
                f"Find-max probes of run {probed.id}: p99 at each offered rate",
                "offered req/s",
                "p99 ms",
                (probe(True), probe(False)),
                y_log=True,
                hline=(float(objective), f"objective {fmt(objective)} ms")
                if isinstance(objective, int | float)
                else None,
            )
        )
    rows = tuple(
        (
            str(r.id),
            when(r.created_at),
            ev.label(r.model_version),
            str(r.results.get("mode", "")),
            fmt(stat_one(r, "achieved_rps")),
            fmt(stat_one(r, "p99_ms")),
            fmt(r.results.get("max_rate_rps")),
        )
        for r in reversed(runs)
    )
    return Section(
        key="load",
        title="Load tests",
        summary=str(runs[-1].results.get("summary", "")) + f" (newest: run {runs[-1].id}).",
        charts=tuple(charts),
        tables=(
            Table(("run", "when", "version", "mode", "achieved req/s", "p99 ms", "max rate"), rows),
        ),
        runs=tuple(r.id for r in runs),
    )


def stat_one(run: Run, key: str) -> Any:
    """One value of a load run's overall statistics."""
    return (run.results.get("overall") or {}).get(key)


_LAW_VARIABLES = {"chinchilla": ("N", "D"), "power-n": ("N",), "power-d": ("D",), "power-c": ("C",)}


def _law_predictions(law: dict[str, Any], cols: dict[str, list[Any]]) -> list[float | None] | None:
    """The stored law's loss at each fitted point: L = E + A / x^alpha (+ B / D^beta).

    Evaluated here rather than through ``modelscale.laws`` so a report reads only stored JSON.
    """
    variables = _LAW_VARIABLES.get(str(law.get("form")))
    try:
        e, a, alpha = float(law["E"]), float(law["A"]), float(law["alpha"])
        b = float(law["B"]) if variables == ("N", "D") else 0.0
        beta = float(law["beta"]) if variables == ("N", "D") else 0.0
    except (KeyError, TypeError, ValueError):
        return None
    if variables is None or any(v not in cols for v in variables) or "L" not in cols:
        return None
    out: list[float | None] = []
    for i in range(len(cols["L"])):
        x = [cols[v][i] for v in variables]
        if any(not isinstance(v, int | float) or v <= 0 for v in x):
            out.append(None)
            continue
        loss = e + a / x[0] ** alpha
        if len(x) == 2:
            loss += b / x[1] ** beta
        out.append(loss)
    return out


def laws_section(ev: Evidence) -> Section:
    """The newest scaling-law fit: its data and estimates."""
    run = ev.latest("laws")
    if run is None:
        return Section.absent(
            "laws", "Scaling laws", "modelscale laws fit RUNS.csv (when training runs exist)"
        )
    points = run.results.get("points") or {}
    cols = {k: v for k, v in points.items() if isinstance(v, list)}
    names = {"N": "parameters", "D": "training tokens", "C": "training FLOPs"}
    x_key = next((k for k in ("C", "N", "D") if k in cols), None)
    charts: tuple[Chart, ...] = ()
    if "L" in cols and x_key:
        traces = tuple(
            Trace(f"loss against {names[k]}", cols[k], numbers(cols["L"]), mode="markers")
            for k in ("N", "D")
            if k in cols
        ) or (Trace("training runs", cols[x_key], numbers(cols["L"]), mode="markers"),)
        charts = tuple(
            Chart(
                f"laws-{t.name.rsplit(' ', 1)[-1]}",
                t.name.capitalize(),
                t.name.removeprefix("loss against "),
                "loss",
                (t,),
                x_log=True,
                y_log=True,
            )
            for t in traces
        )
        predicted = _law_predictions(run.results.get("law") or {}, cols)
        if predicted is not None:
            observed = numbers(cols["L"])
            span = [v for v in observed + predicted if v]
            charts += (
                Chart(
                    "laws-fit",
                    "The fitted law against every training run",
                    "observed loss",
                    "predicted loss",
                    (
                        Trace("training runs", observed, predicted, mode="markers"),
                        Trace(
                            "perfect fit",
                            [min(span), max(span)],
                            [min(span), max(span)],
                            mode="lines",
                        ),
                    ),
                    x_log=True,
                    y_log=True,
                ),
            )
    rows = tuple(
        (
            str(e.get("name")),
            fmt(e.get("value"), 4),
            f"[{fmt(e.get('ci_low'), 4)}, {fmt(e.get('ci_high'), 4)}]",
        )
        for e in run.results.get("estimates") or []
        if isinstance(e, dict)
    )
    return Section(
        key="laws",
        title="Scaling laws",
        summary=str(run.results.get("summary", "")) + f" (run {run.id}).",
        charts=charts,
        tables=(Table(("parameter", "estimate", "interval"), rows),) if rows else (),
        runs=(run.id,),
    )
