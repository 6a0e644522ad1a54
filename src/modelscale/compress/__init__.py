"""Compression: quantize, convert and prune models, judged on real data, chosen by measurement.

``compress(model, eval_set, options=CompressOptions(max_drop=0.01))`` builds every candidate
(graph pre-processing, dynamic and static INT8, FP16, BF16 weights), evaluates each on the eval
set with a paired bootstrap CI on the metric's change, times it with the Engine, keeps sensitive nodes in float
when INT8 breaks the tolerance, and chooses the fastest candidate within tolerance.
``prune_torch`` removes whole neurons and channels from PyTorch models.
"""

from __future__ import annotations

from modelscale.compress.candidates import CandidateSpec, default_specs
from modelscale.compress.data import EvalSet, load_eval_set
from modelscale.compress.evaluate import Latency, predict
from modelscale.compress.fallback import NodeSensitivity, rank_nodes
from modelscale.compress.metrics import METRICS, Metric, bootstrap_change, get_metric
from modelscale.compress.options import CompressOptions
from modelscale.compress.prepare import DEFAULT_MEASURE
from modelscale.compress.prune import PruneResult, PruneSpec, prune_torch
from modelscale.compress.results import CompressResult, Trial, pareto_front
from modelscale.compress.search import compress

__all__ = [
    "DEFAULT_MEASURE",
    "METRICS",
    "CandidateSpec",
    "CompressOptions",
    "CompressResult",
    "EvalSet",
    "Latency",
    "Metric",
    "NodeSensitivity",
    "PruneResult",
    "PruneSpec",
    "Trial",
    "bootstrap_change",
    "compress",
    "default_specs",
    "get_metric",
    "load_eval_set",
    "pareto_front",
    "predict",
    "prune_torch",
    "rank_nodes",
]
