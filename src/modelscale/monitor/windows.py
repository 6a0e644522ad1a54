"""Live windows of one served model version: fold requests in, close, test, alert.

A ``ModelWatch`` keeps the open window's ``Profile`` (sketches of every watched feature), the
confidences of its rows (for the label-free accuracy estimate) and the last closed windows. A
window closes ``window_s`` after it opened (windows are aligned to multiples of ``window_s``
since the epoch, so several servers' windows line up and merge) or once it holds
``window_requests`` requests when that is set. Closing tests the window against the baseline (per-feature drift,
data quality, the domain classifier), measures accuracy from the feedback that joined its
requests (and estimates it from confidences), and gives a ``WindowResult``: a run of kind
``drift``, a file of its sketches for ``monitor run``, and alert events when a finding starts or
ends.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from modelscale.monitor.baseline import Baseline
from modelscale.monitor.domain import domain_test
from modelscale.monitor.drift import DriftOptions, compare_profiles, describe
from modelscale.monitor.sketch import Profile
from modelscale.monitor.summary import FeaturePlan
from modelscale.result import Result

__all__ = ["ModelWatch", "MonitorAlert", "WindowResult", "accuracy_of"]

log = logging.getLogger("modelscale.monitor")

MAX_CONFIDENCES = 200_000
KEEP_CLOSED = 24


@dataclass(frozen=True)
class WindowResult(Result):
    """One closed window of one model version, tested against its baseline."""

    kind: ClassVar[str] = "drift"

    model: str
    version: str
    start: float
    end: float
    verdict: str
    drift: dict[str, Any]
    accuracy: dict[str, Any]
    baseline_run: int | None
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: verdict, drifting features, accuracy."""
        acc = self.accuracy
        parts = [f"{self.model} v{self.version}: {self.verdict}"]
        drifted = self.drift.get("drifted") or []
        if drifted:
            parts.append(", ".join(drifted[:3]) + (" ..." if len(drifted) > 3 else ""))
        realized = acc.get("realized")
        estimate = acc.get("estimate")
        if realized:
            parts.append(f"{acc['metric']} {realized['value']:.3f} ({realized['n']} labels)")
        elif estimate:
            parts.append(f"estimated accuracy {estimate['value']:.3f}")
        return "; ".join(parts)


@dataclass(frozen=True)
class MonitorAlert:
    """A drift, data-quality or accuracy alert that fired or resolved."""

    model: str
    version: str
    sli: str
    """'drift', 'quality' or 'accuracy'."""
    state: str
    at: float
    detail: str
    window: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    """The served version's id (the run is filed under it)."""

    @property
    def message(self) -> str:
        """One line for the server log."""
        verb = "FIRING" if self.state == "firing" else "resolved"
        return f"monitor {self.sli} {verb}: {self.model} v{self.version}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the webhook's body)."""
        return {
            "kind": "monitor",
            "model": self.model,
            "version": self.version,
            "sli": self.sli,
            "state": self.state,
            "at": self.at,
            "detail": self.detail,
            "message": self.message,
            "window": self.window,
        }

    def as_result(self) -> Result:
        """The run the knowledge base keeps (kind ``drift``)."""
        return _DriftAlert(alert=self.to_dict(), params={"model": self.model, "sli": self.sli})


@dataclass(frozen=True)
class _DriftAlert(Result):
    kind: ClassVar[str] = "drift"

    alert: dict[str, Any]
    params: dict[str, Any]


def accuracy_of(
    preds: np.ndarray,
    labels: np.ndarray,
    confidences: np.ndarray | None,
    baseline: Baseline,
    drop: float,
) -> dict[str, Any]:
    """Realized metric from labels, the label-free estimate from confidences, and whether
    either shows a drop beyond ``drop`` from the baseline's."""
    from modelscale.monitor.accuracy import ConfidenceCalibration, realized_metric

    metric = baseline.metric or ("accuracy" if baseline.task == "classification" else "mae")
    out: dict[str, Any] = {"metric": metric, "labelled": int(labels.size)}
    ref = baseline.reference_metric
    out["reference"] = ref
    if labels.size:
        out["realized"] = realized_metric(preds, labels, metric=metric).to_dict()
    if baseline.calibration and confidences is not None and confidences.size:
        cal = ConfidenceCalibration.from_dict(baseline.calibration)
        out["estimate"] = cal.estimate(confidences).to_dict()
    low = False
    if ref is not None:
        lower_is_better = metric == "mae"
        r = out.get("realized") if labels.size >= 30 else None
        e = out.get("estimate")
        for src in (r, e):
            if src is None:
                continue
            if lower_is_better:
                low = low or src["lo"] > ref["value"] + drop
            else:
                low = low or src["hi"] < ref["value"] - drop
            if r is not None:
                break  # labels, when there are enough, outrank the estimate
    out["drop"] = low
    return out


class ModelWatch:
    """The open window and recent closed windows of one served model version."""

    def __init__(
        self,
        model: str,
        version: str,
        baseline: Baseline,
        *,
        sha256: str | None = None,
        options: DriftOptions,
        window_s: float,
        window_requests: int | None,
        accuracy_drop: float,
        domain: bool,
        now: float,
        domain_every_s: float = 0.0,
        domain_runner: Callable[..., dict[str, Any] | None] = domain_test,
    ) -> None:
        self.model, self.version = model, version
        self.sha256 = sha256 or baseline.model.get("sha256")
        """The served version's id (windows and alerts are filed under it)."""
        self.baseline = baseline
        self.plan: FeaturePlan = baseline.feature_plan()
        self.reference: Profile = baseline.reference()
        self.options = options
        self.window_s = window_s
        self.window_requests = window_requests
        self.domain_every_s = domain_every_s
        self.domain_runner = domain_runner
        """Runs the domain classifier (the server runs it in a worker process)."""
        self._domain_at: float | None = None
        self.accuracy_drop = accuracy_drop
        self.domain = domain
        self.scores = self.plan.scores_output()
        self.closed: deque[WindowResult] = deque(maxlen=KEEP_CLOSED)
        self.profiles: deque[tuple[float, Profile]] = deque(maxlen=KEEP_CLOSED)
        self.firing: dict[str, bool] = {"drift": False, "quality": False, "accuracy": False}
        self._open(now)

    def _open(self, now: float, *, at_once: bool = False) -> None:
        """Open a window: from the boundary ``now`` falls in, or from ``now`` itself when the
        last one closed early by its request count (it still ends at the boundary)."""
        aligned = math.floor(now / self.window_s) * self.window_s
        self.start = now if at_once else aligned
        self.deadline = aligned + self.window_s
        self.window = Profile.empty(self.plan.kinds(), sampled=self.plan.input_features())
        self.window.start = self.start
        self.confidences: list[np.ndarray] = []
        self._conf_rows = 0

    def fold(
        self,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
        *,
        requests: int,
        times: tuple[float, float],
    ) -> None:
        """Fold a batch of answered requests' rows in."""
        numeric, categorical, rows = self.plan.extract(inputs, outputs)
        self.window.update(numeric, categorical, rows=rows, requests=requests, times=times)
        if self.scores is not None:
            conf = numeric.get(f"{self.scores}.confidence")
            if conf is not None and self._conf_rows < MAX_CONFIDENCES:
                self.confidences.append(conf)
                self._conf_rows += conf.size

    def rejected(self, n: int) -> None:
        """Count requests refused as invalid."""
        self.window.rejected += n

    def due(self, now: float) -> bool:
        """Whether the open window should close."""
        return now >= self.deadline or self.full(0)

    def full(self, more: int) -> bool:
        """Whether the open window is full with ``more`` requests added."""
        limit = self.window_requests
        return limit is not None and self.window.requests + more >= limit

    def close(self, now: float, labels: Any) -> tuple[WindowResult, Profile]:
        """Close the open window: test it and open the next; returns its result and profile."""
        window = self.window
        by_count = now < self.deadline
        end = now if by_count else self.deadline
        result = self._test(end, labels, domain=self._domain(now))
        self.closed.append(result)
        self.profiles.append((self.start, window))
        self._open(now, at_once=by_count)
        return result, window

    def peek(self, now: float, labels: Any) -> WindowResult | None:
        """The open window tested as it stands (no domain classifier), None while it is empty.

        Nothing changes: the sketches are only read.
        """
        if not self.window.requests:
            return None
        return self._test(now, labels, domain=None)

    def _domain(self, now: float) -> dict[str, Any] | None:
        window = self.window
        if not (
            self.domain
            and window.rows >= self.options.min_rows
            and window.reservoir is not None
            and self.reference.reservoir is not None
        ):
            return None
        last = self._domain_at
        if last is not None and now - last < self.domain_every_s:
            return {
                "skipped": f"ran {now - last:.0f} s ago (monitor.domain_every_s: "
                f"{self.domain_every_s:g})",
                "drift": False,
            }
        self._domain_at = now
        try:
            return self.domain_runner(
                self.reference.reservoir.rows, window.reservoir.rows, alpha=self.options.alpha
            )
        except Exception as exc:  # the window is still tested and recorded without it
            log.warning("domain classifier failed on %s v%s: %s", self.model, self.version, exc)
            return {"error": f"{type(exc).__name__}: {exc}", "drift": False}

    def _test(self, end: float, labels: Any, *, domain: dict[str, Any] | None) -> WindowResult:
        start = self.start
        drift = compare_profiles(self.reference, self.window, self.options, domain=domain)
        conf = np.concatenate(self.confidences) if self.confidences else None
        if labels is not None:
            preds, labs = labels.window(start, end, self.version)
        else:
            preds, labs = np.empty(0), np.empty(0)
        accuracy = accuracy_of(preds, labs, conf, self.baseline, self.accuracy_drop)
        verdict = drift.verdict
        if accuracy.get("drop") and verdict in ("ok", "quality"):
            verdict = "accuracy"
        return WindowResult(
            model=self.model,
            version=self.version,
            start=start,
            end=end,
            verdict=verdict,
            drift=drift.to_dict() | {"summary": describe(drift)},
            accuracy=accuracy,
            baseline_run=self.baseline.run_id,
            params={
                "model": self.model,
                "version": self.version,
                "window_s": self.window_s,
                "window_requests": self.window_requests,
                "alpha": self.options.alpha,
                "min_effect": self.options.min_effect,
            },
        )

    def skip(self, now: float) -> None:
        """Open the next window without closing this one (it saw no requests)."""
        self._open(now)

    def alerts(self, result: WindowResult, now: float) -> list[MonitorAlert]:
        """Alert events for what ``result`` starts or ends (a window too small to test ends
        nothing)."""
        if result.verdict == "too few rows":
            return []
        d = result.drift
        state = {
            "drift": result.verdict == "drift",
            "quality": bool(d.get("quality")),
            "accuracy": bool(result.accuracy.get("drop")),
        }
        details = {
            "drift": d.get("summary", ""),
            "quality": "; ".join(q["message"] for q in d.get("quality", [])[:3]),
            "accuracy": _accuracy_text(result.accuracy),
        }
        events = []
        for sli, on in state.items():
            if on != self.firing[sli]:
                self.firing[sli] = on
                events.append(
                    MonitorAlert(
                        self.model,
                        self.version,
                        sli,
                        "firing" if on else "resolved",
                        now,
                        details[sli] if on else f"the window from {_hm(result.start)} is clean",
                        {"start": result.start, "end": result.end, "verdict": result.verdict},
                        self.sha256,
                    )
                )
        return events

    def view(self, now: float, labels: Any = None) -> dict[str, Any]:
        """The open window (tested as it stands) and the closed ones, newest first (JSON-ready)."""
        try:
            current = self.peek(now, labels)
        except Exception as exc:
            # The open window's view must never fail the route; say what went wrong instead.
            log.warning("testing the open window of %s failed: %s", self.model, exc)
            current = None
        return {
            "model": self.model,
            "version": self.version,
            "baseline": {
                "run": self.baseline.run_id,
                "name": self.baseline.name,
                "rows": self.baseline.rows,
                "reference": self.baseline.reference_metric,
            },
            "open": {
                "start": self.start,
                "closes": self.deadline,
                "rows": self.window.rows,
                "requests": self.window.requests,
            },
            "current": current.to_dict() if current is not None else None,
            "windows": [w.to_dict() for w in reversed(self.closed)],
            "firing": [k for k, v in self.firing.items() if v],
        }


def _hm(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%H:%M:%S")


def _accuracy_text(acc: Mapping[str, Any]) -> str:
    ref = acc.get("reference") or {}
    src = acc.get("realized") if acc.get("labelled", 0) >= 30 else None
    label = "realized"
    if src is None:
        src, label = acc.get("estimate"), "estimated"
    if not src:
        return ""
    return (
        f"{label} {acc.get('metric')} {src['value']:.3f} [{src['lo']:.3f}, {src['hi']:.3f}] "
        f"against {ref.get('value', float('nan')):.3f} on the baseline"
    )
