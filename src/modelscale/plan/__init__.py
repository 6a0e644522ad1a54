"""Capacity planning: how many machines of which type, configured how, for a rate and a p99 bound.

    plan = plan_model("model.onnx", rps=1000, p99_ms=100, dims={"seq": 32}, store=open_store())
    emit(plan, "k8s", "out/")

The pieces: ``service`` (batch service time fitted from profile points), ``queueing`` and
``batchqueue`` (analytic latency models), ``simulate`` (the batcher simulated), ``capacity`` (max
rate of one configuration under a p99 bound), ``catalog`` (machine types and prices), ``search``
and ``planner`` (options per phase, the recommendation), ``emit`` (deploy.yaml, Kubernetes, Ray
Serve), ``validate`` (predicted vs measured). See docs/plan.md.
"""

from __future__ import annotations

from modelscale.plan.api import plan_model
from modelscale.plan.batchqueue import BatchServiceQueue
from modelscale.plan.capacity import analytic_applies, max_rate, predict
from modelscale.plan.catalog import Catalog, InstanceType, default_catalog_path, load_catalog
from modelscale.plan.emit import (
    chosen_option,
    deployment_dict,
    emit,
    kubernetes_manifests,
    ray_serve_config,
)
from modelscale.plan.planner import PlanOptions, plan_capacity
from modelscale.plan.queueing import MGcQueue, erlang_c, md1_wait_cdf
from modelscale.plan.results import NotPlanned, PhasePlan, PlanOption, PlanResult
from modelscale.plan.search import DEFAULT_POLICIES, BatchPolicy, CapacitySearch
from modelscale.plan.server import Estimate, Overheads, ServerConfig
from modelscale.plan.service import ServiceModel, ServicePoint, fit_service_model
from modelscale.plan.simulate import SimResult, simulate_batcher
from modelscale.plan.validate import ValidationResult, compare_with_measurement

__all__ = [
    "DEFAULT_POLICIES",
    "BatchPolicy",
    "BatchServiceQueue",
    "CapacitySearch",
    "Catalog",
    "Estimate",
    "InstanceType",
    "MGcQueue",
    "NotPlanned",
    "Overheads",
    "PhasePlan",
    "PlanOption",
    "PlanOptions",
    "PlanResult",
    "ServerConfig",
    "ServiceModel",
    "ServicePoint",
    "SimResult",
    "ValidationResult",
    "analytic_applies",
    "chosen_option",
    "compare_with_measurement",
    "default_catalog_path",
    "deployment_dict",
    "emit",
    "erlang_c",
    "fit_service_model",
    "kubernetes_manifests",
    "load_catalog",
    "max_rate",
    "md1_wait_cdf",
    "plan_capacity",
    "plan_model",
    "predict",
    "ray_serve_config",
    "simulate_batcher",
]
