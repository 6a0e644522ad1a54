"""modelscale: take a trained model from one machine to production scale, measuring every step.

The public API is re-exported here; see ``__all__``. The exports load on first use (PEP 562):
``import modelscale`` alone costs milliseconds, not the ~1.5 s and ~150 MiB of importing every
subpackage (SciPy, Starlette, SQLAlchemy, ...). That matters in every process that imports any
``modelscale.*`` module only for a part: each server replica and each profile worker.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelscale.compress import (
        CompressOptions,
        CompressResult,
        EvalSet,
        PruneSpec,
        compress,
        prune_torch,
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
        FitOptions,
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
        ProfileOptions,
        ProfileResult,
        StaticProfile,
        SweepPoint,
        count_flops,
        plot_profile,
        profile_model,
        static_profile,
    )
    from modelscale.progress import OnProgress, ProgressEvent
    from modelscale.result import Result
    from modelscale.runtime import Engine, EngineOptions
    from modelscale.serve import ServeResult, ServerProcess, run_server, start_server
    from modelscale.store import ModelVersion, Run, Store, open_store
    from modelscale.workflow import (
        AssessOptions,
        AssessResult,
        Recorder,
        Validation,
        ValidationOptions,
        assess_model,
        compress_example,
        record,
        run_demo,
        validate_plan,
    )

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "CompressOptions": "modelscale.compress",
    "CompressResult": "modelscale.compress",
    "EvalSet": "modelscale.compress",
    "PruneSpec": "modelscale.compress",
    "prune_torch": "modelscale.compress",
    "DeploymentSpec": "modelscale.config",
    "load_deployment": "modelscale.config",
    "InvalidInput": "modelscale.errors",
    "MissingDependency": "modelscale.errors",
    "ModelLoadError": "modelscale.errors",
    "ModelscaleError": "modelscale.errors",
    "ModelscaleWarning": "modelscale.errors",
    "RuntimeFailure": "modelscale.errors",
    "ServerError": "modelscale.errors",
    "StoreError": "modelscale.errors",
    "EXAMPLES": "modelscale.examples",
    "ExampleBuild": "modelscale.examples",
    "build_example": "modelscale.examples",
    "list_examples": "modelscale.examples",
    "Allocation": "modelscale.laws",
    "ComputeOptimal": "modelscale.laws",
    "ExtrapolationWarning": "modelscale.laws",
    "FitOptions": "modelscale.laws",
    "ScalingLaw": "modelscale.laws",
    "ScalingLawFit": "modelscale.laws",
    "compute_optimal": "modelscale.laws",
    "fit_scaling_law": "modelscale.laws",
    "plot_scaling_law": "modelscale.laws",
    "LoadOptions": "modelscale.loadgen",
    "LoadResult": "modelscale.loadgen",
    "LoadStats": "modelscale.loadgen",
    "run_load": "modelscale.loadgen",
    "MachineInfo": "modelscale.machine",
    "machine_info": "modelscale.machine",
    "InputChoice": "modelscale.model",
    "ModelArtifact": "modelscale.model",
    "Signature": "modelscale.model",
    "TensorSpec": "modelscale.model",
    "export_torch": "modelscale.model",
    "load_npz": "modelscale.model",
    "make_inputs": "modelscale.model",
    "PlanOptions": "modelscale.plan",
    "PlanResult": "modelscale.plan",
    "ServiceModel": "modelscale.plan",
    "compare_with_measurement": "modelscale.plan",
    "fit_service_model": "modelscale.plan",
    "load_catalog": "modelscale.plan",
    "plan_model": "modelscale.plan",
    "simulate_batcher": "modelscale.plan",
    "FlopCount": "modelscale.profile",
    "MeasureOptions": "modelscale.profile",
    "ProfileOptions": "modelscale.profile",
    "ProfileResult": "modelscale.profile",
    "StaticProfile": "modelscale.profile",
    "SweepPoint": "modelscale.profile",
    "count_flops": "modelscale.profile",
    "plot_profile": "modelscale.profile",
    "profile_model": "modelscale.profile",
    "static_profile": "modelscale.profile",
    "OnProgress": "modelscale.progress",
    "ProgressEvent": "modelscale.progress",
    "Result": "modelscale.result",
    "Engine": "modelscale.runtime",
    "EngineOptions": "modelscale.runtime",
    "ServeResult": "modelscale.serve",
    "ServerProcess": "modelscale.serve",
    "run_server": "modelscale.serve",
    "start_server": "modelscale.serve",
    "ModelVersion": "modelscale.store",
    "Run": "modelscale.store",
    "Store": "modelscale.store",
    "open_store": "modelscale.store",
    "AssessOptions": "modelscale.workflow",
    "AssessResult": "modelscale.workflow",
    "Recorder": "modelscale.workflow",
    "Validation": "modelscale.workflow",
    "ValidationOptions": "modelscale.workflow",
    "assess_model": "modelscale.workflow",
    "compress_example": "modelscale.workflow",
    "record": "modelscale.workflow",
    "run_demo": "modelscale.workflow",
    "validate_plan": "modelscale.workflow",
}

__all__ = [
    "EXAMPLES",
    "Allocation",
    "AssessOptions",
    "AssessResult",
    "CompressOptions",
    "CompressResult",
    "ComputeOptimal",
    "DeploymentSpec",
    "Engine",
    "EngineOptions",
    "EvalSet",
    "ExampleBuild",
    "ExtrapolationWarning",
    "FitOptions",
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
    "OnProgress",
    "PlanOptions",
    "PlanResult",
    "ProfileOptions",
    "ProfileResult",
    "ProgressEvent",
    "PruneSpec",
    "Recorder",
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
    "Validation",
    "ValidationOptions",
    "__version__",
    "assess_model",
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
    "record",
    "run_demo",
    "run_load",
    "run_server",
    "simulate_batcher",
    "start_server",
    "static_profile",
    "validate_plan",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'modelscale' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """``modelscale.compress`` is both a subpackage and the exported function. Importing the
    subpackage sets the package attribute to the module, which a lazy export cannot undo; a data
    descriptor on the module's class wins over that attribute, so the name stays the function."""

    @property
    def compress(self) -> Any:
        from modelscale.compress import compress

        return compress

    @compress.setter
    def compress(self, value: Any) -> None:
        pass  # the import system's setattr of the subpackage: it stays in sys.modules only


sys.modules[__name__].__class__ = _Package
