"""The knowledge base: every finding is a run, linked to a model version and its lineage."""

from __future__ import annotations

from modelscale.store.api import ModelVersion, Run, Store, open_store
from modelscale.store.schema import RUN_KINDS

__all__ = ["RUN_KINDS", "ModelVersion", "Run", "Store", "open_store"]
