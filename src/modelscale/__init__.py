"""modelscale: take a trained model from one machine to production scale, measuring every step.

The public API is re-exported here; see ``__all__``.
"""

from __future__ import annotations

from modelscale.compress import (
    CompressResult,
    EvalSet,
    PruneSpec,
    compress,
    compress_example,
    prune_torch,
    record_search,
)
from modelscale.config import DeploymentSpec, load_deployment
from modelscale.errors import (
    InvalidInput,
    MissingDependency,
    ModelLoadError,
    ModelscaleError,
    ModelscaleWarning,
    RuntimeFailure,
    ServerError,
    StoreError,
)
from modelscale.examples import EXAMPLES, ExampleBuild, build_example, list_examples
from modelscale.laws import (
    Allocation,
    ComputeOptimal,
    ExtrapolationWarning,
    ScalingLaw,
    ScalingLawFit,
    compute_optimal,
    fit_scaling_law,
    plot_scaling_law,
)
from modelscale.loadgen import LoadOptions, LoadResult, LoadStats, run_load
from modelscale.machine import MachineInfo, machine_info
from modelscale.model import (
    InputChoice,
    ModelArtifact,
    Signature,
    TensorSpec,
    export_torch,
    load_npz,
    make_inputs,
)
from modelscale.plan import (
    PlanOptions,
    PlanResult,
    ServiceModel,
    compare_with_measurement,
    fit_service_model,
    load_catalog,
    plan_model,
    simulate_batcher,
)
from modelscale.profile import (
    FlopCount,
    MeasureOptions,
    ProfileResult,
    StaticProfile,
    SweepPoint,
    count_flops,
    plot_profile,
    profile_model,
    static_profile,
)
from modelscale.result import Result
from modelscale.runtime import Engine, EngineOptions
from modelscale.serve import ServeResult, ServerProcess, run_server, start_server
from modelscale.store import ModelVersion, Run, Store, open_store

__version__ = "0.1.0"

__all__ = [
    "EXAMPLES",
    "Allocation",
    "CompressResult",
    "ComputeOptimal",
    "DeploymentSpec",
    "Engine",
    "EngineOptions",
    "EvalSet",
    "ExampleBuild",
    "ExtrapolationWarning",
    "FlopCount",
    "InputChoice",
    "InvalidInput",
    "LoadOptions",
    "LoadResult",
    "LoadStats",
    "MachineInfo",
    "MeasureOptions",
    "MissingDependency",
    "ModelArtifact",
    "ModelLoadError",
    "ModelVersion",
    "ModelscaleError",
    "ModelscaleWarning",
    "PlanOptions",
    "PlanResult",
    "ProfileResult",
    "PruneSpec",
    "Result",
    "Run",
    "RuntimeFailure",
    "ScalingLaw",
    "ScalingLawFit",
    "ServeResult",
    "ServerError",
    "ServerProcess",
    "ServiceModel",
    "Signature",
    "StaticProfile",
    "Store",
    "StoreError",
    "SweepPoint",
    "TensorSpec",
    "__version__",
    "build_example",
    "compare_with_measurement",
    "compress",
    "compress_example",
    "compute_optimal",
    "count_flops",
    "export_torch",
    "fit_scaling_law",
    "fit_service_model",
    "list_examples",
    "load_catalog",
    "load_deployment",
    "load_npz",
    "machine_info",
    "make_inputs",
    "open_store",
    "plan_model",
    "plot_profile",
    "plot_scaling_law",
    "profile_model",
    "prune_torch",
    "record_search",
    "run_load",
    "run_server",
    "simulate_batcher",
    "start_server",
    "static_profile",
]
