"""The runtime: every ONNX Runtime session in modelscale is made here."""

from __future__ import annotations

from modelscale.runtime.engine import Engine, EngineOptions, GraphOptimization, available_providers

__all__ = ["Engine", "EngineOptions", "GraphOptimization", "available_providers"]
