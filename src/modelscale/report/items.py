"""The items of the scaling checklist: what evidence each needs and how it is judged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelscale.report.evidence import Evidence
from modelscale.report.live_sections import open_alerts
from modelscale.report.section import fmt

__all__ = ["ITEMS", "Finding"]


@dataclass(frozen=True)
class Finding:
    """What an item found: 'pass' | 'warn' | 'fail' | 'missing', why, on which runs."""

    status: str
    detail: str
    runs: tuple[int, ...] = ()
    command: str = ""


def _size_cost(ev: Evidence, _: Any) -> Finding:
    run = ev.latest("profile")
    cmd = "modelscale profile MODEL.onnx --batch 1,8,32"
    if run is None:
        return Finding(
            "missing", "No profile: size, speed and cost per request are unknown.", command=cmd
        )
    return Finding("pass", str(run.results.get("summary", "profiled")), (run.id,), cmd)


def _laws(ev: Evidence, _: Any) -> Finding:
    run = ev.latest("laws")
    cmd = "modelscale laws fit RUNS.csv (a CSV of training runs: params, tokens, loss)"
    if run is None:
        return Finding("missing", "No scaling-law fit (needs training runs).", command=cmd)
    flags = run.results.get("flags") or []
    status = "warn" if flags or run.results.get("converged") is False else "pass"
    detail = str(run.results.get("summary", "fitted"))
    if flags:
        detail += " Flags: " + "; ".join(str(f).rstrip(".") for f in flags) + "."
    return Finding(status, detail, (run.id,), cmd)


def _compression(ev: Evidence, settings: Any) -> Finding:
    run = ev.latest("compress")
    cmd = "modelscale compress MODEL.onnx --eval EVAL.npz --max-drop 0.01"
    if run is None:
        return Finding("missing", "No compression search.", command=cmd)
    res = run.results
    chosen = res.get("chosen")
    trial = next((t for t in ev.children(run) if t.results.get("name") == chosen), None)
    detail = (
        f"Chose {chosen}"
        + (
            f" ({fmt(trial.results.get('size_bytes'))} bytes, {res.get('metric', 'metric')} change "
            f"{fmt(trial.results.get('change'), 3)})"
            if trial
            else ""
        )
        + "."
    )
    limit = settings.max_metric_drop
    if trial is not None and limit is not None and (trial.results.get("drop") or 0) > limit:
        return Finding(
            "fail", detail + f" Its drop exceeds the policy's {limit:g}.", (run.id, trial.id), cmd
        )
    if res.get("chosen_is_original"):
        tried = len(ev.children(run))
        return Finding(
            "warn",
            f"{tried} candidate(s) tried; none was within tolerance and faster or smaller, so "
            "the original stays.",
            (run.id,),
            cmd,
        )
    return Finding("pass", detail, (run.id,) + ((trial.id,) if trial else ()), cmd)


def _plan(ev: Evidence, settings: Any) -> Finding:
    plan = ev.latest("plan")
    cmd = "modelscale plan MODEL.onnx --rps RATE --p99-ms MS --machine local --validate-local"
    if plan is None:
        return Finding(
            "missing", "No capacity plan: vertical or horizontal is undecided.", command=cmd
        )
    checks = ev.of("plan.validation", lambda r: r.parent_run_id == plan.id) or ev.of(
        "plan.validation"
    )
    if not checks:
        return Finding(
            "missing", f"Plan run {plan.id} was never validated under load.", (plan.id,), cmd
        )
    v = checks[0].results
    tolerance = settings.tolerance or v.get("tolerance") or 0.15
    error = v.get("error")
    detail = (
        f"Predicted {fmt(v.get('predicted_rps'))} req/s, measured {fmt(v.get('measured_rps'))}"
        f" (error {fmt((error or 0) * 100)}%, tolerance ±{fmt(tolerance * 100)}%)."
    )
    ids = (plan.id, checks[0].id)
    if v.get("inconclusive"):
        return Finding("warn", detail + " The machine was busy: inconclusive.", ids, cmd)
    if error is None or abs(error) > tolerance:
        cal = v.get("calibrated_error")
        more = f" With the measured overheads: {fmt((cal or 0) * 100)}%." if cal is not None else ""
        return Finding("fail", detail + more, ids, cmd)
    return Finding("pass", detail, ids, cmd)


def _cost(ev: Evidence, _: Any) -> Finding:
    plan = ev.latest("plan")
    cmd = "modelscale plan MODEL.onnx --rps RATE --phases 100,1000,10000 --p99-ms MS"
    if plan is None:
        return Finding("missing", "No plan: cost per growth phase unknown.", command=cmd)
    phases = [p for p in plan.results.get("phases") or [] if isinstance(p, dict)]
    costed = [p for p in phases if (p.get("recommended") or {}).get("usd_per_month") is not None]
    parts = ", ".join(
        f"{fmt(p.get('rate_rps'))} req/s ${fmt(p['recommended']['usd_per_month'])}/month"
        for p in costed
    )
    if not phases:
        return Finding("missing", f"Plan run {plan.id} has no growth phases.", (plan.id,), cmd)
    if len(costed) < len(phases):
        return Finding(
            "fail",
            f"{len(phases) - len(costed)} of {len(phases)} phase(s) have no "
            f"option that meets the objective. Costed: {parts or 'none'}.",
            (plan.id,),
            cmd,
        )
    status = "pass" if len(phases) > 1 else "warn"
    more = "" if len(phases) > 1 else " One phase only: plan the growth with --phases."
    return Finding(status, f"{parts}.{more}", (plan.id,), cmd)


def _slo(ev: Evidence, _: Any) -> Finding:
    cmd = "modelscale logs slo --deploy deploy.yaml (objectives under slo: in deploy.yaml)"
    alerts = open_alerts(ev.of("slo"))
    if alerts:
        first = alerts[0].results.get("alert") or {}
        return Finding(
            "fail",
            f"{len(alerts)} SLO alert(s) still firing: {first.get('message', '')}",
            tuple(a.id for a in alerts),
            cmd,
        )
    window = ev.latest("slo.window")
    if window is not None:
        res = window.results
        objectives = [o for o in res.get("objectives") or [] if isinstance(o, dict)]
        detail = str(res.get("summary", ""))
        if any(o.get("good_ratio") is not None and not o.get("met") for o in objectives):
            return Finding("fail", detail, (window.id,), cmd)
        if not all(o.get("enough") for o in objectives):
            return Finding("warn", detail + " Too few requests to judge.", (window.id,), cmd)
        return Finding("pass", detail, (window.id,), cmd)
    # No measured window: the plan's objective against the newest load test since the plan.
    plan = ev.latest("plan")
    objective = (plan.results.get("target") or {}).get("p99_ms") if plan else None
    if objective is None or plan is None:
        return Finding("missing", "No objective defined or measured.", command=cmd)
    load = ev.latest("load", lambda r: r.created_at >= plan.created_at) or ev.latest("load")
    if load is None:
        return Finding(
            "missing",
            f"Objective p99 <= {fmt(objective)} ms (plan run {plan.id}) never tested under load.",
            (plan.id,),
            cmd,
        )
    overall = load.results.get("overall") or {}
    p99 = overall.get("p99_ms")
    detail = (
        f"Planned objective p99 <= {fmt(objective)} ms; load run {load.id}: p99 "
        f"{fmt(p99)} ms at {fmt(overall.get('achieved_rps'))} req/s."
    )
    if load.results.get("mode") == "find-max":
        detail += f" Highest rate within it: {fmt(load.results.get('max_rate_rps'))} req/s."
        ok = bool(load.results.get("max_rate_rps"))
    else:
        ok = isinstance(p99, int | float) and p99 <= objective
    return Finding(
        "pass" if ok else "fail",
        detail + " (Served traffic not measured: " + cmd.split(" (")[0] + ".)",
        (plan.id, load.id),
        cmd,
    )


def _drift(ev: Evidence, _: Any) -> Finding:
    baseline = ev.latest("baseline")
    cmd = "modelscale monitor baseline MODEL --data EVAL.npz"
    if baseline is None:
        return Finding("missing", "No drift baseline.", command=cmd)
    still = open_alerts(ev.of("drift.alert"))
    if still:
        slis = ", ".join(sorted({str((r.results.get("alert") or {}).get("sli")) for r in still}))
        return Finding(
            "fail",
            f"Baseline run {baseline.id}; open monitor alert(s): {slis} "
            f"(newest: run {max(r.id for r in still)}).",
            (baseline.id, *sorted(r.id for r in still)),
            "modelscale monitor status (a new baseline if the change is expected)",
        )
    windows = ev.of("drift")
    return Finding(
        "pass",
        f"Baseline run {baseline.id}; {len(windows)} window(s) checked, no open alert.",
        (baseline.id, *[w.id for w in windows[:1]]),
        cmd,
    )


def _privacy(ev: Evidence, _: Any) -> Finding:
    run = ev.latest("privacy")
    cmd = "modelscale privacy audit --deploy deploy.yaml"
    if run is None:
        return Finding("missing", "No privacy audit covers this model.", command=cmd)
    res = run.results
    if not res.get("ok"):
        return Finding(
            "fail",
            f"Audit run {run.id} found problems: chain "
            f"{'intact' if res.get('chain_ok') else 'broken'}, findings "
            f"{res.get('findings') or {}}, past retention "
            f"{res.get('past_retention') or {}}.",
            (run.id,),
            cmd,
        )
    return Finding(
        "pass",
        f"Audit run {run.id}: policy in place, {res.get('scanned_rows', 0)} "
        "stored rows scanned, no personal data, chain intact.",
        (run.id,),
        cmd,
    )


def _rollout(ev: Evidence, _: Any) -> Finding:
    cmd = "modelscale experiment start deploy.yaml (canary or A/B of the new version)"
    served = [v for v in ev.versions if v.sha256 != ev.versions[0].sha256]
    if not served:
        return Finding("pass", "One version only: no version change to roll out.")
    newest = served[-1]
    events = ev.of("experiment", lambda r: r.model_version == newest.sha256) or ev.of("experiment")
    if not events:
        return Finding(
            "fail",
            f"Version {ev.label(newest.sha256)} exists but no canary or A/B "
            "test is recorded for it.",
            command=cmd,
        )
    last = events[0]
    status = last.results.get("status") or {}
    state = status.get("state")
    detail = (
        f"{status.get('kind', 'experiment')} {last.params.get('experiment')}: {state} "
        f"({status.get('decision', '?')})."
    )
    ids = tuple(sorted(r.id for r in events))
    if state in ("promoted", "concluded", "completed", "stopped"):
        return Finding("pass", detail, ids, cmd)
    if state in ("rolled_back", "rolled back", "aborted"):
        return Finding("warn", detail + " The new version did not pass.", ids, cmd)
    return Finding("warn", detail + " Still running.", ids, cmd)


def _assessment(ev: Evidence, _: Any) -> Finding:
    run = ev.latest("assess")
    cmd = "modelscale assess MODEL (schedule it: --emit cron)"
    if run is None:
        return Finding("missing", "The model was never re-assessed.", command=cmd)
    checks = [c for c in run.results.get("checks") or [] if isinstance(c, dict)]
    regressed = [str(c.get("name")) for c in checks if c.get("verdict") == "regression"]
    unsure = [str(c.get("name")) for c in checks if c.get("verdict") == "inconclusive"]
    detail = str(run.results.get("summary", "assessed"))
    if regressed:
        return Finding("fail", detail + f" Regressed: {', '.join(regressed)}.", (run.id,), cmd)
    if unsure:
        return Finding("warn", detail + f" Inconclusive: {', '.join(unsure)}.", (run.id,), cmd)
    return Finding("pass", detail, (run.id,), cmd)


def _findings(ev: Evidence, _: Any) -> Finding:
    notes = ev.notes()
    cmd = 'modelscale note add MODEL "what was decided and why" --run ID'
    if not notes:
        return Finding("missing", "No findings or decisions written down.", command=cmd)
    newest = notes[-1].note or str(notes[-1].results.get("text", ""))
    return Finding(
        "pass",
        f"{len(notes)} note(s); newest: {newest[:160]!r}.",
        tuple(n.id for n in notes[-3:]),
        cmd,
    )


ITEMS: dict[str, tuple[str, Callable[[Evidence, Any], Finding]]] = {
    "size_cost": ("Size and cost per request known", _size_cost),
    "scaling_laws": ("Scaling behaviour known (when training runs exist)", _laws),
    "compression": ("Compression evaluated", _compression),
    "plan_validated": ("Vertical or horizontal decided; plan validated under load", _plan),
    "cost_per_phase": ("Cost per growth phase", _cost),
    "slo": ("SLOs defined and met", _slo),
    "drift": ("Drift baseline present, no open drift alert", _drift),
    "privacy": ("Privacy policy in place, last audit clean", _privacy),
    "rollout": ("Last version change went through a canary or A/B test", _rollout),
    "assessment": ("Assessed recently on this machine", _assessment),
    "findings": ("Findings documented", _findings),
}
