"""The demo's scaling step: train the digits CNN at four widths on four shares of its data, fit a
scaling law to those runs and file the fit under the digits model."""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass

from modelscale.examples import digits_scaling_runs
from modelscale.laws import FitOptions, ScalingLawFit, fit_scaling_law
from modelscale.progress import OnProgress
from modelscale.workflow.record import Recorder

__all__ = ["LawsStep", "laws_example"]


@dataclass(frozen=True)
class LawsStep:
    """The training runs, the fit and its run.

    Attributes:
        runs_csv: The training runs (params, tokens, loss).
        trained: Whether they were trained now (False: an earlier demo's CSV was reused).
        fit: The fitted law.
        run_id: Its run, filed under the model (None: not recorded).
        seconds: Training and fitting time.
    """

    runs_csv: pathlib.Path
    trained: bool
    fit: ScalingLawFit
    run_id: int | None
    seconds: float


def laws_example(
    out: pathlib.Path,
    *,
    model_sha256: str,
    recorder: Recorder,
    on_progress: OnProgress | None = None,
) -> LawsStep:
    """Train (or reuse) the digits scaling runs in ``out`` and fit the Chinchilla form to them.

    Args:
        out: Folder for ``digits_scaling.csv``.
        model_sha256: The model version the fit describes (the run is filed under it).
        recorder: Where the fit is recorded.
        on_progress: Progress of the trainings and the bootstrap.
    """
    started = time.perf_counter()
    csv = out / "digits_scaling.csv"
    trained = not csv.exists()
    if trained:
        digits_scaling_runs(csv, on_progress=on_progress)
    fit = fit_scaling_law(csv, options=FitOptions(bootstrap=50), on_progress=on_progress)
    recorded = recorder.record(fit, model_version=model_sha256)
    return LawsStep(
        runs_csv=csv,
        trained=trained,
        fit=fit,
        run_id=recorded.run_id if recorded is not None else None,
        seconds=time.perf_counter() - started,
    )
