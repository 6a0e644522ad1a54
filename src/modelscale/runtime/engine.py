"""Engine: the one place that creates ONNX Runtime sessions and calls run().

Profiling, compression, serving and planning all go through it, so a latency measured in one place
means the same in another: threads, providers and graph optimisation are always explicit.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from modelscale.errors import InvalidInput, ModelLoadError, RuntimeFailure, invalid_parameter
from modelscale.model.artifact import ModelArtifact

__all__ = ["Engine", "EngineOptions", "GraphOptimization", "available_providers"]

GraphOptimization = Literal["disable", "basic", "extended", "all"]

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers."""
    return list(ort.get_available_providers())


@dataclass(frozen=True)
class EngineOptions:
    """How a session is built. Defaults match a plain ``InferenceSession`` with the thread count set."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    graph_optimization: GraphOptimization = "all"
    allow_spinning: bool = True
    """ORT's worker threads spin while waiting for work: faster alone, but they burn a core each, so
    replicas sharing a machine turn it off."""
    session_config: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise invalid_parameter(name, "an integer >= 1", value, where="Engine")
        if self.graph_optimization not in _OPT_LEVELS:
            raise invalid_parameter(
                "graph_optimization", f"one of {', '.join(_OPT_LEVELS)}", self.graph_optimization
            )
        if not self.providers:
            raise invalid_parameter("providers", "a non-empty list of providers", self.providers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as recorded with measurements."""
        return {
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "providers": list(self.providers),
            "graph_optimization": self.graph_optimization,
            "allow_spinning": self.allow_spinning,
        }

    def session_options(self) -> ort.SessionOptions:
        """The ORT SessionOptions these options stand for."""
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.intra_op_threads
        so.inter_op_num_threads = self.inter_op_threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = _OPT_LEVELS[self.graph_optimization]
        so.log_severity_level = 4  # ORT logs before raising; our errors say it once, clearly
        if not self.allow_spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        for key, value in self.session_config.items():
            so.add_session_config_entry(key, value)
        return so


def _provider_check(providers: Sequence[str]) -> None:
    have = available_providers()
    missing = [p for p in providers if p not in have]
    if missing:
        raise InvalidInput(
            f"Execution provider {', '.join(missing)} is not available in this onnxruntime build; "
            f"available: {', '.join(have)}.",
            field="provider",
        )


class Engine:
    """An ONNX Runtime session with explicit options."""

    def __init__(
        self,
        model: ModelArtifact | str | pathlib.Path | bytes,
        options: EngineOptions | None = None,
    ) -> None:
        self.options = options or EngineOptions()
        _provider_check(self.options.providers)
        if isinstance(model, ModelArtifact):
            source: str | bytes = str(model.path)
        elif isinstance(model, bytes):
            source = model
        else:
            source = str(model)
        label = "<in-memory model>" if isinstance(source, bytes) else source
        try:
            self.session = ort.InferenceSession(
                source,
                sess_options=self.options.session_options(),
                providers=list(self.options.providers),
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"ONNX Runtime cannot load {label}: {first}", path=label) from exc
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self._int_inputs = tuple(
            i.name for i in self.session.get_inputs() if re.fullmatch(r"tensor\(u?int\d+\)", i.type)
        )

    @property
    def providers(self) -> list[str]:
        """Providers the session actually uses (ORT may fall back to CPU)."""
        return list(self.session.get_providers())

    def bind(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], list[Any]]:
        """A zero-argument callable that runs the model on ``feeds``: the timing loops' hot path,
        with inputs checked once here instead of on every call."""
        self._check_feeds(feeds)
        run, fixed = self.session.run, dict(feeds)
        return lambda: run(None, fixed)

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise InvalidInput(
                f"Missing input(s) {', '.join(missing)}; the model needs {', '.join(self.input_names)}.",
                field="inputs",
            )

    def run(
        self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> list[Any]:
        """Run the model once; errors name the problem instead of surfacing ORT internals."""
        self._check_feeds(feeds)
        try:
            return self.session.run(list(output_names) if output_names else None, dict(feeds))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RuntimeFailure(
                f"ONNX Runtime failed to run the model: {first}{self._int_hint(str(exc))}"
            ) from exc

    def _int_hint(self, message: str) -> str:
        """Advice when the error names an integer input: models check such values (a sample rate,
        a token id), and synthetic ones are drawn from a default range that may not fit."""
        for name in self._int_inputs:
            # Letters and digits bound a name; '_' and '/' do not: node names such as 'check_sr'
            # or '/sr/Gather' name the input they check.
            if re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", message):
                return (
                    f" (The error names integer input {name!r}: if the model accepts only some "
                    f"values of it, give their range with 'int_ranges' {name}=LO,HI.)"
                )
        return ""
