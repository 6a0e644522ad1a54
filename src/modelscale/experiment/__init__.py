"""Experiments in the server: A/B tests, shadow and canary, decided by always-valid statistics.

``stats`` holds the statistics (confidence sequences, always-valid p-values, the sequential
sample-ratio-mismatch test, CUPED); ``state`` one live experiment (assignment, the arms' sums,
decisions); ``feature`` plugs it into the server (``modelscale.serve.features`` entry point).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelscale.lazy import lazy_exports

if TYPE_CHECKING:
    from modelscale.experiment.assign import Assigner
    from modelscale.experiment.outputs import OutputAgreement, compare_outputs
    from modelscale.experiment.results import ExperimentRun
    from modelscale.experiment.state import Experiment, ExperimentEvent, State
    from modelscale.experiment.stats import (
        Comparison,
        Moments,
        SequentialSrm,
        SequentialTest,
        SrmResult,
        compare,
        mean_sequence,
    )

_EXPORTS = {
    "Assigner": "modelscale.experiment.assign",
    "OutputAgreement": "modelscale.experiment.outputs",
    "compare_outputs": "modelscale.experiment.outputs",
    "ExperimentRun": "modelscale.experiment.results",
    "Experiment": "modelscale.experiment.state",
    "ExperimentEvent": "modelscale.experiment.state",
    "State": "modelscale.experiment.state",
    "Comparison": "modelscale.experiment.stats",
    "Moments": "modelscale.experiment.stats",
    "SequentialSrm": "modelscale.experiment.stats",
    "SequentialTest": "modelscale.experiment.stats",
    "SrmResult": "modelscale.experiment.stats",
    "compare": "modelscale.experiment.stats",
    "mean_sequence": "modelscale.experiment.stats",
}

__all__ = [
    "Assigner",
    "Comparison",
    "Experiment",
    "ExperimentEvent",
    "ExperimentRun",
    "Moments",
    "OutputAgreement",
    "SequentialSrm",
    "SequentialTest",
    "SrmResult",
    "State",
    "compare",
    "compare_outputs",
    "mean_sequence",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
