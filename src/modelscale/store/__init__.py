"""The knowledge base: every finding is a run, linked to a model version and its lineage."""

from __future__ import annotations

from modelscale.store.api import ModelVersion, Run, Store, open_store
from modelscale.store.audit import AuditCheck, AuditEntry, verify_chain
from modelscale.store.migrate import SchemaState, SchemaStatus, Upgrade, schema_status, upgrade
from modelscale.store.schema import RUN_KINDS

__all__ = [
    "RUN_KINDS",
    "AuditCheck",
    "AuditEntry",
    "ModelVersion",
    "Run",
    "SchemaState",
    "SchemaStatus",
    "Store",
    "Upgrade",
    "open_store",
    "schema_status",
    "upgrade",
    "verify_chain",
]
