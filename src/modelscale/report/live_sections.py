"""Sections about the model in service: SLOs, drift and accuracy, experiments, privacy,
assessments, and the notes people wrote."""

from __future__ import annotations

from typing import Any

from modelscale.report.charts import Chart, Trace
from modelscale.report.evidence import Evidence
from modelscale.report.section import Note, Section, Table, fmt, fmt_bytes, numbers, when
from modelscale.store import Run

__all__ = [
    "assess_section",
    "drift_section",
    "experiment_section",
    "notes_section",
    "open_alerts",
    "privacy_section",
    "slo_section",
]


def _clock(at: Any) -> str:
    return when(at)[11:] if isinstance(at, int | float) else "?"


def open_alerts(runs: list[Run]) -> list[Run]:
    """The alerts whose newest event is 'firing', one per (model version, indicator)."""
    newest: dict[tuple[Any, Any], Run] = {}
    for r in sorted(runs, key=lambda r: r.id):
        alert = r.results.get("alert") or {}
        newest[(alert.get("version"), alert.get("sli") or r.params.get("sli"))] = r
    return [r for r in newest.values() if (r.results.get("alert") or {}).get("state") == "firing"]


def slo_section(ev: Evidence) -> Section:
    """The latency objective against each load test's p99, and the SLO alerts that fired."""
    plan = ev.latest("plan")
    objective = (plan.results.get("target") or {}).get("p99_ms") if plan else None
    loads = sorted(ev.of("load"), key=lambda r: r.id)
    alerts = sorted(ev.of("slo"), key=lambda r: r.id)
    windows = sorted(ev.of("slo.window"), key=lambda r: r.id)
    if objective is None and not alerts and not windows:
        return Section.absent(
            "slo",
            "Service-level objectives",
            "modelscale plan MODEL.onnx --p99-ms 25 (an objective), serve with `slo:` in "
            "deploy.yaml (burn-rate alerts)",
        )
    charts = []
    if windows:
        newest = windows[-1]
        objs = [o for o in newest.results.get("objectives") or [] if isinstance(o, dict)]
        charts.append(
            Chart(
                "slo-budget",
                f"Error budget spent over the SLO window (run {newest.id})",
                "objective",
                "share of the budget",
                (
                    Trace(
                        "spent",
                        [
                            f"{o.get('sli')} ({fmt((o.get('objective') or 0) * 100, 4)}%)"
                            for o in objs
                        ],
                        numbers([o.get("budget_spent") for o in objs]),
                        mode="bar",
                    ),
                ),
                hline=(1.0, "whole budget"),
            )
        )
    if loads:
        charts.append(
            Chart(
                "slo-p99",
                "p99 of each load test against the objective",
                "load test",
                "ms",
                (
                    Trace(
                        "p99",
                        [f"run {r.id}" for r in loads],
                        numbers([(r.results.get("overall") or {}).get("p99_ms") for r in loads]),
                        mode="bar",
                    ),
                ),
                y_log=True,
                hline=(float(objective), f"objective {fmt(objective)} ms") if objective else None,
            )
        )
    if alerts:
        charts.append(
            Chart(
                "slo-burn",
                "Burn rate when an SLO alert changed state",
                "time",
                "burn rate (x budget)",
                (
                    Trace(
                        "long window",
                        [when(r.created_at) for r in alerts],
                        numbers([(r.results.get("alert") or {}).get("burn_long") for r in alerts]),
                        mode="markers",
                    ),
                    Trace(
                        "short window",
                        [when(r.created_at) for r in alerts],
                        numbers([(r.results.get("alert") or {}).get("burn_short") for r in alerts]),
                        mode="markers",
                    ),
                ),
                hline=(1.0, "budget spent at exactly the allowed rate"),
            )
        )
    still = open_alerts(alerts)
    summary = (
        f"Objective p99 <= {fmt(objective)} ms (plan run {plan.id})."
        if objective and plan
        else "No latency objective planned."
    )
    summary += (
        f" {len(alerts)} SLO alert event(s), {len(still)} still firing."
        if alerts
        else " No SLO alert has fired."
    )
    rows = tuple(
        (
            str(r.id),
            when(r.created_at),
            str((r.results.get("alert") or {}).get("sli")),
            str((r.results.get("alert") or {}).get("state")),
            str((r.results.get("alert") or {}).get("message", ""))[:160],
        )
        for r in reversed(alerts)
    )
    return Section(
        key="slo",
        title="Service-level objectives",
        summary=summary,
        charts=tuple(charts),
        tables=(Table(("run", "when", "indicator", "state", "message"), rows),) if rows else (),
        runs=tuple([plan.id] if plan else []) + tuple(r.id for r in windows + alerts),
    )


def drift_section(ev: Evidence) -> Section:
    """Drift and estimated accuracy per monitor window; the monitor's alerts."""
    windows = sorted(ev.of("drift"), key=lambda r: r.id)
    baseline = ev.latest("baseline")
    if not windows and baseline is None:
        return Section.absent(
            "drift",
            "Drift and accuracy",
            "modelscale monitor baseline MODEL --data EVAL.npz, then serve with `monitor:`",
        )
    labels = [f"#{i + 1} {_clock(r.results.get('end'))}" for i, r in enumerate(windows)]

    def drift_of(r: Run) -> dict[str, Any]:
        d = r.results.get("drift")
        return d if isinstance(d, dict) else {}

    def share(r: Run) -> float | None:
        tested = len(drift_of(r).get("features") or [])
        return len(drift_of(r).get("drifted") or []) / tested if tested else None

    drifted = Chart(
        "drift-features",
        "Share of features that drifted per window, and the domain classifier's AUC",
        "window (end time)",
        "share / AUC",
        (
            Trace("features drifted", labels, [share(r) for r in windows], mode="bar"),
            Trace(
                "domain AUC",
                labels,
                numbers([(drift_of(r).get("domain") or {}).get("auc") for r in windows]),
            ),
        ),
    )
    acc = [(r.results.get("accuracy") or {}).get("estimate") or {} for r in windows]
    ref = None
    if baseline is not None:
        ref = (baseline.results.get("reference_metric") or {}).get("value")
    accuracy = Chart(
        "drift-accuracy",
        "Accuracy per window (estimated without labels, or measured from feedback)",
        "window (end time)",
        str((baseline.results.get("metric") if baseline else None) or "metric"),
        (
            Trace(
                "estimate",
                labels,
                numbers([a.get("value") for a in acc]),
                error_low=[
                    max(0.0, (a.get("value") or 0) - (a.get("lo") or a.get("value") or 0))
                    for a in acc
                ],
                error_high=[
                    max(0.0, (a.get("hi") or a.get("value") or 0) - (a.get("value") or 0))
                    for a in acc
                ],
            ),
        ),
        hline=(float(ref), "baseline") if isinstance(ref, int | float) else None,
    )
    charts = [drifted, accuracy]
    newest = windows[-1] if windows else None
    feats = (
        [f for f in drift_of(newest).get("features") or [] if isinstance(f, dict)]
        if newest is not None
        else []
    )
    if feats:
        top = sorted(feats, key=lambda f: -abs(float(f.get("effect") or 0)))[:12]
        charts.append(
            Chart(
                "drift-top",
                f"Largest shifts in the newest window (run {newest.id if newest else ''})",
                "feature",
                "effect size",
                (
                    Trace(
                        "drifted",
                        [f["feature"] for f in top],
                        [abs(float(f.get("effect") or 0)) if f.get("drift") else None for f in top],
                        mode="bar",
                    ),
                    Trace(
                        "within noise",
                        [f["feature"] for f in top],
                        [None if f.get("drift") else abs(float(f.get("effect") or 0)) for f in top],
                        mode="bar",
                    ),
                ),
            )
        )
    alerts = sorted(ev.of("drift.alert"), key=lambda r: r.id)
    still = open_alerts(alerts)
    verdicts: dict[str, int] = {}
    for r in windows:
        v = str(r.results.get("verdict"))
        verdicts[v] = verdicts.get(v, 0) + 1
    summary = (
        f"Baseline: run {baseline.id} ({baseline.results.get('rows', '?')} rows). "
        if baseline
        else "No baseline. "
    ) + (
        f"{len(windows)} window(s): "
        + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
        + f". {len(alerts)} alert event(s), {len(still)} still firing"
        + (
            ": " + "; ".join(str((r.results.get("alert") or {}).get("sli")) for r in still)
            if still
            else ""
        )
        + "."
    )
    rows = tuple(
        (
            str(r.id),
            when(r.created_at),
            str((r.results.get("alert") or {}).get("sli")),
            str((r.results.get("alert") or {}).get("state")),
            str((r.results.get("alert") or {}).get("detail", ""))[:160],
        )
        for r in reversed(alerts)
    )
    return Section(
        key="drift",
        title="Drift and accuracy",
        summary=summary,
        charts=tuple(charts) if windows else (),
        tables=(Table(("run", "when", "indicator", "state", "detail"), rows),) if rows else (),
        runs=tuple([baseline.id] if baseline else []) + tuple(r.id for r in windows + alerts),
    )


def experiment_section(ev: Evidence) -> Section:
    """Each experiment's arms and the treatment's share as it stepped up."""
    events = sorted(ev.of("experiment"), key=lambda r: r.id)
    if not events:
        return Section.absent(
            "experiments",
            "Experiments",
            "modelscale experiment start deploy.yaml (A/B, shadow or canary of a new version)",
        )
    by_name: dict[str, list[Run]] = {}
    for r in events:
        by_name.setdefault(str(r.params.get("experiment")), []).append(r)
    charts: list[Chart] = []
    rows: list[tuple[str, ...]] = []
    for i, (name, runs) in enumerate(by_name.items()):
        last = runs[-1].results.get("status") or {}
        arms = last.get("arms") or {}
        charts.append(
            Chart(
                f"experiment-{i}-share",
                f"{name}: treatment share at each event",
                "event",
                "share of traffic",
                (
                    Trace(
                        "treatment share",
                        [f"{r.params.get('event')} ({r.id})" for r in runs],
                        numbers(
                            [(r.results.get("status") or {}).get("treatment_share") for r in runs]
                        ),
                        mode="lines+markers",
                    ),
                ),
            )
        )
        charts.append(
            Chart(
                f"experiment-{i}-arms",
                f"{name}: arms at the last event",
                "arm",
                "ms",
                (
                    Trace(
                        "p50",
                        list(arms),
                        numbers([a.get("p50_ms") for a in arms.values()]),
                        mode="bar",
                    ),
                    Trace(
                        "p99",
                        list(arms),
                        numbers([a.get("p99_ms") for a in arms.values()]),
                        mode="bar",
                    ),
                ),
            )
        )
        compared = [
            m
            for m in last.get("metrics") or []
            if isinstance(m, dict)
            and isinstance(m.get("comparison"), dict)
            and m["comparison"].get("difference") is not None
        ]
        if compared:
            diffs = numbers([m["comparison"]["difference"] for m in compared])
            cis = [
                m["comparison"].get("ci") or [d, d] for m, d in zip(compared, diffs, strict=True)
            ]
            charts.append(
                Chart(
                    f"experiment-{i}-metrics",
                    f"{name}: treatment minus control per metric (95% CI)",
                    "metric",
                    "difference",
                    (
                        Trace(
                            "difference",
                            [f"{m['metric']} ({m.get('role', '')})" for m in compared],
                            diffs,
                            mode="markers",
                            error_low=[
                                max(0.0, (d or 0) - float(c[0] or 0))
                                for d, c in zip(diffs, cis, strict=True)
                            ],
                            error_high=[
                                max(0.0, float(c[1] or 0) - (d or 0))
                                for d, c in zip(diffs, cis, strict=True)
                            ],
                        ),
                    ),
                    hline=(0.0, "no difference"),
                )
            )
        rows.extend(
            (
                str(r.id),
                when(r.created_at),
                name,
                str(r.params.get("event")),
                str((r.results.get("event") or {}).get("detail", ""))[:160],
            )
            for r in runs
        )
    last_status = events[-1].results.get("status") or {}
    return Section(
        key="experiments",
        title="Experiments",
        summary=f"{len(by_name)} experiment(s). Newest: {events[-1].params.get('experiment')}, "
        f"{last_status.get('kind', '?')}, {last_status.get('state', '?')} "
        f"({last_status.get('decision', '?')}).",
        charts=tuple(charts),
        tables=(Table(("run", "when", "experiment", "event", "detail"), tuple(rows)),),
        runs=tuple(r.id for r in events),
    )


def privacy_section(ev: Evidence) -> Section:
    """The newest privacy audit that covers the model."""
    run = ev.latest("privacy")
    if run is None:
        return Section.absent("privacy", "Privacy", "modelscale privacy audit --deploy deploy.yaml")
    res = run.results
    stored = {k: v for k, v in (res.get("stored") or {}).items() if isinstance(v, dict)}
    chart = Chart(
        "privacy-stored",
        "What the server stored, by class",
        "class",
        "MiB",
        (
            Trace(
                "size",
                list(stored),
                [float(v.get("bytes") or 0) / 2**20 for v in stored.values()],
                mode="bar",
            ),
        ),
    )
    findings = res.get("findings") or {}
    policies = res.get("policies") or {}
    mine = {k: v for k, v in policies.items() if k in {v.name for v in ev.versions}}
    summary = (
        f"Audit run {run.id} ({when(run.created_at)}): "
        + ("clean" if res.get("ok") else "PROBLEMS FOUND")
        + f"; audit chain {'intact' if res.get('chain_ok') else 'BROKEN'}; "
        f"{res.get('scanned_rows', 0)} stored rows scanned, personal data found: "
        + (", ".join(f"{k} x{v}" for k, v in findings.items()) if findings else "none")
        + "."
    )
    rows = tuple(
        (
            name,
            "logged, redacted" if p.get("payloads_logged") else "not logged",
            "yes" if p.get("text_input") else "no",
            ", ".join(
                f"{area}.{k}={v}"
                for area in ("inputs", "outputs", "parameters", "headers", "outcomes")
                for k, v in (p.get(area) or {}).items()
            )
            or "defaults (detected spans redacted)",
        )
        for name, p in mine.items()
    )
    stored_rows = tuple(
        (
            k,
            fmt(v.get("items")),
            fmt_bytes(v.get("bytes")),
            fmt((res.get("past_retention") or {}).get(k)),
        )
        for k, v in stored.items()
    )
    return Section(
        key="privacy",
        title="Privacy",
        summary=summary,
        charts=(chart,),
        tables=(
            Table(("model", "payloads", "text input", "field policies"), rows, "policies"),
            Table(("class", "items", "size", "past retention"), stored_rows, "stored data"),
        ),
        runs=(run.id,),
    )


def assess_section(ev: Evidence) -> Section:
    """Re-checks of the model on a machine: each comparison with the baseline, with its interval."""
    runs = sorted(ev.of("assess"), key=lambda r: r.id)
    if not runs:
        return Section.absent(
            "assess", "Assessments", "modelscale assess MODEL (and --emit cron to schedule it)"
        )
    newest = runs[-1]
    checks = [c for c in newest.results.get("checks") or [] if isinstance(c, dict)]
    compared = [c for c in checks if isinstance(c.get("effect"), int | float)]
    charts: tuple[Chart, ...] = ()
    if compared:
        charts = (
            Chart(
                "assess-checks",
                f"Run {newest.id} against its baseline: effect per check (95% CI)",
                "check",
                "ratio (now / baseline) or difference",
                tuple(
                    Trace(
                        verdict,
                        [str(c.get("name")) for c in picked],
                        numbers([c["effect"] for c in picked]),
                        mode="markers",
                        error_low=[
                            max(0.0, float(c["effect"]) - float(c.get("low") or c["effect"]))
                            for c in picked
                        ],
                        error_high=[
                            max(0.0, float(c.get("high") or c["effect"]) - float(c["effect"]))
                            for c in picked
                        ],
                    )
                    for verdict in ("ok", "improved", "inconclusive", "regression")
                    if (picked := [c for c in compared if c.get("verdict") == verdict])
                ),
            ),
        )
    rows = tuple(
        (
            str(c.get("name")),
            fmt(c.get("baseline")),
            fmt(c.get("now")),
            f"{fmt(c.get('effect'))} [{fmt(c.get('low'))}, {fmt(c.get('high'))}]",
            fmt(c.get("threshold")),
            str(c.get("verdict")),
            str(c.get("method", "")),
        )
        for c in checks
    )
    history = tuple(
        (
            str(r.id),
            when(r.created_at),
            ev.label(r.model_version),
            str(r.results.get("baseline_run_id") or "-"),
            str(r.results.get("summary", ""))[:200],
        )
        for r in reversed(runs)
    )
    return Section(
        key="assess",
        title="Assessments",
        summary=str(newest.results.get("summary", "")) + f" (run {newest.id}).",
        charts=charts,
        tables=(
            Table(
                ("check", "baseline", "now", "effect [95% CI]", "threshold", "verdict", "method"),
                rows,
                f"run {newest.id}",
            ),
            Table(("run", "when", "version", "baseline run", "summary"), history, "history"),
        ),
        runs=tuple(r.id for r in runs),
    )


def notes_section(ev: Evidence) -> Section:
    """Every finding and decision people wrote down, oldest first."""
    notes = tuple(Note.of(n) for n in ev.notes())
    if not notes:
        return Section.absent(
            "notes",
            "Findings and decisions",
            'modelscale note add MODEL "what was decided and why"',
        )
    return Section(
        key="notes",
        title="Findings and decisions",
        summary=f"{len(notes)} note(s).",
        notes=notes,
        runs=tuple(n.run_id for n in notes),
    )
