"""Capacity planning: how many machines of which type, configured how, for a rate and a p99 bound.

    plan = plan_model("model.onnx", rps=1000, p99_ms=100, dims={"seq": 32}, store=open_store())
    emit(plan, "k8s", "out/")

The pieces: ``service`` (batch service time fitted from profile points), ``queueing`` and
``batchqueue`` (analytic latency models), ``simulate`` (the batcher simulated), ``capacity`` (max
rate of one configuration under a p99 bound), ``catalog`` (machine types and prices), ``search``
and ``planner`` (options per phase, the recommendation), ``emit`` (deploy.yaml, Kubernetes, Ray
Serve), ``calibration`` (predicted vs measured, and the serving overheads a measurement implies;
the load test itself is ``modelscale.workflow.validate_plan``). See docs/plan.md.
"""

from __future__ import annotations

from modelscale.plan.api import plan_model
from modelscale.plan.batchqueue import BatchServiceQueue
from modelscale.plan.calibration import (
    DEFAULT_CLIENT_MS,
    MAX_OTHER_CORES,
    ValidationResult,
    compare_with_measurement,
    fit_front_costs,
    implied_front_ms,
    measured_overheads,
    server_config,
)
from modelscale.plan.capacity import analytic_applies, max_rate, predict
from modelscale.plan.catalog import Catalog, InstanceType, default_catalog_path, load_catalog
from modelscale.plan.emit import (
    EmitKind,
    chosen_option,
    deployment_spec,
    emit,
    kubernetes_manifests,
    ray_serve_config,
)
from modelscale.plan.image import dockerfile, image_build_command
from modelscale.plan.planner import ASSUMED_OVERHEADS, PlanOptions, plan_capacity
from modelscale.plan.profiles import (
    DEFAULT_BATCHES,
    ModelProfile,
    measure_profile,
    resolve_model,
    stored_profile,
)
from modelscale.plan.queueing import MGcQueue, erlang_c, md1_wait_cdf
from modelscale.plan.results import NotPlanned, PhasePlan, PlanOption, PlanResult
from modelscale.plan.search import (
    ADAPTIVE,
    DEFAULT_POLICIES,
    BatchPolicy,
    CapacitySearch,
    batch_cap,
)
from modelscale.plan.server import Estimate, Overheads, ServerConfig
from modelscale.plan.service import ServiceModel, ServicePoint, fit_service_model
from modelscale.plan.simulate import SimResult, simulate_batcher

__all__ = [
    "ADAPTIVE",
    "ASSUMED_OVERHEADS",
    "DEFAULT_BATCHES",
    "DEFAULT_CLIENT_MS",
    "DEFAULT_POLICIES",
    "MAX_OTHER_CORES",
    "BatchPolicy",
    "BatchServiceQueue",
    "CapacitySearch",
    "Catalog",
    "EmitKind",
    "Estimate",
    "InstanceType",
    "MGcQueue",
    "ModelProfile",
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
    "batch_cap",
    "chosen_option",
    "compare_with_measurement",
    "default_catalog_path",
    "deployment_spec",
    "dockerfile",
    "emit",
    "erlang_c",
    "fit_front_costs",
    "fit_service_model",
    "image_build_command",
    "implied_front_ms",
    "kubernetes_manifests",
    "load_catalog",
    "max_rate",
    "md1_wait_cdf",
    "measure_profile",
    "measured_overheads",
    "plan_capacity",
    "plan_model",
    "predict",
    "ray_serve_config",
    "resolve_model",
    "server_config",
    "simulate_batcher",
    "stored_profile",
]
