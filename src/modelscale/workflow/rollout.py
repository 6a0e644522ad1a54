"""Rolling a candidate version out as a canary under load, and reading back what it decided.

``canary_rollout`` serves a model's current version as the control and a candidate (a
compressed model, a new version) as the treatment, with an experiment of kind ``canary``, sends
open-loop traffic through the load generator in short chunks until the canary finishes (promoted
to 100%, or rolled back by a guardrail) or time runs out, and returns the experiment's final
status and the events the server recorded in the knowledge base. It is the demo's rollout step,
its end-to-end test, and what ``bench/experiment.py`` measures.
"""

from __future__ import annotations

import pathlib
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from modelscale.config import DeploymentSpec
from modelscale.loadgen import LoadOptions, LoadResult, run_load
from modelscale.progress import OnProgress, report
from modelscale.serve import start_server

__all__ = ["RolloutStep", "canary_rollout"]


@dataclass(frozen=True)
class RolloutStep:
    """What a canary rollout under load found.

    Attributes:
        name: The experiment's name.
        state: 'promoted', 'rolled_back', or 'running' when time ran out.
        status: The experiment's last status (``GET /v2/models/{name}/experiment``).
        loads: The load tests that carried the traffic, in order.
        seconds: From the first request to the decision (or to the end).
        treatment_requests: Requests the treatment answered before the canary finished.
        steps: (treatment share, seconds the step lasted) per step reached.
    """

    name: str
    state: str
    status: dict[str, Any]
    loads: tuple[LoadResult, ...]
    seconds: float
    treatment_requests: int
    steps: tuple[tuple[float, float], ...]

    @property
    def requests(self) -> int:
        """Requests sent in all."""
        return sum(r.overall.sent for r in self.loads)


def _status(url: str, model: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/v2/models/{model}/experiment", timeout=10) as r:
        status: dict[str, Any] = orjson.loads(r.read())
    return status


def canary_rollout(
    control: pathlib.Path,
    treatment: pathlib.Path,
    *,
    inputs: pathlib.Path | None = None,
    model: str = "digits",
    name: str | None = None,
    rate: float = 300.0,
    ramp: Sequence[float] = (5, 25, 50, 100),
    step_min_units: int = 100,
    step_min_s: float = 2.0,
    min_units: int = 50,
    guardrails: Sequence[str] | None = None,
    replicas: int = 1,
    max_s: float = 90.0,
    chunk_s: float = 2.0,
    log_path: pathlib.Path | None = None,
    on_progress: OnProgress | None = None,
) -> RolloutStep:
    """Serve ``control`` (version 1) and ``treatment`` (version 2) with a canary, load it until
    the canary finishes or ``max_s`` passes.

    Args:
        control: The current version's ONNX file.
        treatment: The candidate's.
        inputs: Request inputs for the load generator (an .npz; default: synthetic).
        model: The served model's name.
        name: The experiment's name (default: one with the time in it, so that a rerun starts
            afresh instead of resuming a finished canary from the knowledge base).
        rate: Requests per second offered.
        ramp: The treatment's percent per step.
        step_min_units: Treatment requests a step needs.
        step_min_s: Seconds a step lasts at least.
        min_units: Requests each arm needs before any test decides.
        guardrails: The guardrails (default: the canary's: errors, latency, p99, agreement).
        replicas: Replica processes per version.
        max_s: Time at most.
        chunk_s: Seconds per load test between looks at the experiment.
        log_path: The server's request log (None: no request log).
        on_progress: Progress of each load chunk.
    """
    name = name or f"{model}-canary-{time.strftime('%Y%m%dT%H%M%S')}"
    experiment: dict[str, Any] = {
        "name": name,
        "kind": "canary",
        "arms": {"control": "1", "treatment": "2"},
        "ramp": list(ramp),
        "step_min_units": step_min_units,
        "step_min_s": step_min_s,
        "min_units": min_units,
    }
    if guardrails is not None:
        experiment["guardrails"] = list(guardrails)
    spec = DeploymentSpec.from_dict(
        {
            "models": {
                model: {
                    "versions": {
                        "1": {"path": str(control)},
                        "2": {"path": str(treatment), "weight": 0},
                    },
                    "replicas": replicas,
                    "batching": {"max_batch": 16, "max_wait_ms": 2},
                    "monitor": {"enabled": False},
                    "experiment": experiment,
                }
            },
            "log": {"enabled": log_path is not None, "path": str(log_path) if log_path else None},
        },
        source="the rollout's deployment",
    )
    loads: list[LoadResult] = []
    steps: list[tuple[float, float]] = []
    report(on_progress, f"starting the server: canary {name}")
    with start_server(spec) as server:
        started = time.monotonic()
        status = _status(server.url, model)
        share, since = status["treatment_share"], started
        while status["state"] == "running" and time.monotonic() - started < max_s:
            loads.append(
                run_load(
                    server.url,
                    model=model,
                    options=LoadOptions(
                        rate=rate,
                        duration_s=chunk_s,
                        pattern="poisson",
                        inputs=inputs,
                        warmup_s=0,
                        seed=len(loads),
                    ),
                )
            )
            time.sleep(0.6)  # the experiment's tests run at most twice a second
            status = _status(server.url, model)
            if status["treatment_share"] != share or status["state"] != "running":
                now = time.monotonic()
                steps.append((share, now - since))
                share, since = status["treatment_share"], now
                report(
                    on_progress,
                    f"canary {status['state']}: treatment at {status['treatment_share']:.0%}",
                )
        seconds = time.monotonic() - started
    if status["state"] == "running":
        steps.append((share, time.monotonic() - since))
    return RolloutStep(
        name=name,
        state=status["state"],
        status=status,
        loads=tuple(loads),
        seconds=seconds,
        treatment_requests=int(status["arms"]["treatment"]["requests"]),
        steps=tuple(steps),
    )
