"""Workflows: what runs several capabilities together.

Validating a plan starts (or reaches) a server, load-tests it and meters it, then hands the
measurement to ``plan``'s calibration math (``validate_plan``, ``validate_local``,
``validate_server``); the demo runs build, profile, compress, serve, load, plan and validate in
one go (``run_demo``), watching the served model for drift on the way (``watch_example``) and rolling the compressed
model out as a canary (``canary_rollout``) and serving text with redaction
(``text_privacy_example``); ``compress_example`` compresses a built-in example with its own data; ``assess_model``
re-checks a model against its baseline run (``find_baseline``).
``record`` (or a ``Recorder``) is the one way results go into the knowledge base; a
``Recorder`` that cannot store saves the result as JSON instead (``NotStored``).
"""

from __future__ import annotations

from modelscale.workflow.assess import AssessOptions, AssessResult, assess_model
from modelscale.workflow.assess_baseline import find_baseline
from modelscale.workflow.demo import (
    DEMO_STEPS,
    PLAN_P99_MS,
    PLAN_RPS,
    CompressStep,
    DemoStep,
    ExampleStep,
    LoadStep,
    PlanStep,
    ProfileStep,
    run_demo,
)
from modelscale.workflow.example import compress_example
from modelscale.workflow.metering import (
    CpuMeter,
    OtherCpu,
    OtherCpuMeter,
    batch_deltas,
    batch_totals,
    inputs_file,
    is_local_url,
)
from modelscale.workflow.privacy import PrivacyTarget, audit_access, run_audit, run_purge
from modelscale.workflow.record import NotStored, Recorded, Recorder, record, save_json
from modelscale.workflow.reporting import ReportStep, report_example
from modelscale.workflow.rollout import RolloutStep, canary_rollout
from modelscale.workflow.scaling import LawsStep, laws_example
from modelscale.workflow.text import TextStep, text_privacy_example
from modelscale.workflow.validate import (
    Validation,
    ValidationOptions,
    check_server,
    speed_ratio,
    validate_local,
    validate_plan,
    validate_server,
)
from modelscale.workflow.watch import WatchStep, shift_digits, watch_example

__all__ = [
    "DEMO_STEPS",
    "PLAN_P99_MS",
    "PLAN_RPS",
    "AssessOptions",
    "AssessResult",
    "CompressStep",
    "CpuMeter",
    "DemoStep",
    "ExampleStep",
    "LawsStep",
    "LoadStep",
    "NotStored",
    "OtherCpu",
    "OtherCpuMeter",
    "PlanStep",
    "PrivacyTarget",
    "ProfileStep",
    "Recorded",
    "Recorder",
    "ReportStep",
    "RolloutStep",
    "TextStep",
    "Validation",
    "ValidationOptions",
    "WatchStep",
    "assess_model",
    "audit_access",
    "batch_deltas",
    "batch_totals",
    "canary_rollout",
    "check_server",
    "compress_example",
    "find_baseline",
    "inputs_file",
    "is_local_url",
    "laws_example",
    "record",
    "report_example",
    "run_audit",
    "run_demo",
    "run_purge",
    "save_json",
    "shift_digits",
    "speed_ratio",
    "text_privacy_example",
    "validate_local",
    "validate_plan",
    "validate_server",
    "watch_example",
]
