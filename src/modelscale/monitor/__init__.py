"""Monitor served models: drift, data quality and accuracy from mergeable sketches.

A baseline (``monitor baseline``) profiles a model version's reference inputs and outputs with
Apache DataSketches; the server (``modelscale.monitor.feature``, a ``modelscale.serve.features``
entry point) folds its traffic into windows of the same sketches and tests each window against
the baseline; feedback labels give realized accuracy, confidences a label-free estimate. The
exports load on first use (PEP 562): datasketches and scikit-learn are only needed by the
commands that use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelscale.lazy import lazy_exports

if TYPE_CHECKING:
    from modelscale.monitor.accuracy import (
        METRICS,
        ConfidenceCalibration,
        Estimate,
        MetricCI,
        realized_metric,
        softmax_top,
    )
    from modelscale.monitor.baseline import Baseline, BaselineOptions, build_baseline
    from modelscale.monitor.domain import domain_test
    from modelscale.monitor.drift import (
        DriftOptions,
        FeatureDrift,
        WindowDrift,
        benjamini_hochberg,
        compare_profiles,
    )
    from modelscale.monitor.feature import find_baseline
    from modelscale.monitor.offline import MonitorRun, monitor_logs
    from modelscale.monitor.sketch import Profile
    from modelscale.monitor.summary import FeaturePlan
    from modelscale.monitor.windows import MonitorAlert, WindowResult

_EXPORTS = {
    "METRICS": "modelscale.monitor.accuracy",
    "ConfidenceCalibration": "modelscale.monitor.accuracy",
    "Estimate": "modelscale.monitor.accuracy",
    "MetricCI": "modelscale.monitor.accuracy",
    "realized_metric": "modelscale.monitor.accuracy",
    "softmax_top": "modelscale.monitor.accuracy",
    "Baseline": "modelscale.monitor.baseline",
    "BaselineOptions": "modelscale.monitor.baseline",
    "build_baseline": "modelscale.monitor.baseline",
    "domain_test": "modelscale.monitor.domain",
    "DriftOptions": "modelscale.monitor.drift",
    "FeatureDrift": "modelscale.monitor.drift",
    "WindowDrift": "modelscale.monitor.drift",
    "benjamini_hochberg": "modelscale.monitor.drift",
    "compare_profiles": "modelscale.monitor.drift",
    "find_baseline": "modelscale.monitor.feature",
    "MonitorRun": "modelscale.monitor.offline",
    "monitor_logs": "modelscale.monitor.offline",
    "Profile": "modelscale.monitor.sketch",
    "FeaturePlan": "modelscale.monitor.summary",
    "MonitorAlert": "modelscale.monitor.windows",
    "WindowResult": "modelscale.monitor.windows",
}

__all__ = [
    "METRICS",
    "Baseline",
    "BaselineOptions",
    "ConfidenceCalibration",
    "DriftOptions",
    "Estimate",
    "FeatureDrift",
    "FeaturePlan",
    "MetricCI",
    "MonitorAlert",
    "MonitorRun",
    "Profile",
    "WindowDrift",
    "WindowResult",
    "benjamini_hochberg",
    "build_baseline",
    "compare_profiles",
    "domain_test",
    "find_baseline",
    "monitor_logs",
    "realized_metric",
    "softmax_top",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
