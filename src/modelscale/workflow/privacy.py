"""Privacy audits and purges run from the command line: open the log and the knowledge base a
deployment names, run the capability, record the audit as a run and append to the audit log."""

from __future__ import annotations

import datetime as dt
import pathlib
from dataclasses import dataclass

from modelscale.config import DeploymentSpec, RetentionSpec, get_settings, load_deployment
from modelscale.errors import InvalidInput
from modelscale.observe import LogLocation
from modelscale.privacy import PrivacyAudit, PurgeReport, cli_actor, privacy_audit, purge
from modelscale.store import Store, open_store
from modelscale.workflow.record import record

__all__ = ["PrivacyTarget", "audit_access", "run_audit", "run_purge"]


@dataclass(frozen=True)
class PrivacyTarget:
    """What a privacy command works on: a deployment's log and knowledge base, or given ones."""

    spec: DeploymentSpec | None
    location: LogLocation | None
    store_url: str | None

    @classmethod
    def of(
        cls,
        deploy: str | pathlib.Path | None,
        *,
        log: str | None = None,
        db: str | None = None,
    ) -> PrivacyTarget:
        """From deploy.yaml (its log.path and store.url), overridden by ``log`` and ``db``."""
        spec = load_deployment(deploy) if deploy is not None else None
        if log is not None and "://" not in log and not pathlib.Path(log).expanduser().is_dir():
            raise InvalidInput(
                f"--log {log}: the directory does not exist. Expected a request log's directory "
                "(a server's log.path) or a filesystem URL.",
                field="log",
            )
        where = log
        if where is None and spec is not None and spec.log.enabled:
            where = spec.log.where
        if where is None and spec is None:
            where = get_settings().log_dir
        location = LogLocation.of(where, field="log") if where is not None else None
        url = db or (spec.store.url if spec is not None else None)
        return cls(spec, location, url)

    @property
    def retention(self) -> RetentionSpec:
        """The deployment's TTLs, or the defaults."""
        return self.spec.privacy.retention if self.spec is not None else RetentionSpec()

    def store(self) -> Store:
        """The knowledge base."""
        return open_store(self.store_url)


def run_audit(
    target: PrivacyTarget, *, since: dt.datetime | None = None, max_rows: int = 200_000
) -> tuple[PrivacyAudit, int]:
    """Audit, store the audit as a run, append it to the audit log; (audit, run id)."""
    store = target.store()
    try:
        audit = privacy_audit(
            store=store,
            location=target.location,
            spec=target.spec,
            retention=target.retention,
            since=since,
            max_rows=max_rows,
        )
        recorded = record(audit, store)
        store.append_audit(
            actor=cli_actor(),
            action="privacy.audit",
            target=target.location.display if target.location is not None else "",
            details={"run_id": recorded.run_id, "ok": audit.ok, "chain_ok": audit.chain_ok},
        )
        return audit, recorded.run_id
    finally:
        store.close()


def run_purge(target: PrivacyTarget, *, dry_run: bool = False) -> PurgeReport:
    """Purge what is past retention (``dry_run``: only say what)."""
    store = target.store()
    try:
        return purge(
            target.retention,
            location=target.location,
            store=store,
            actor=cli_actor(),
            dry_run=dry_run,
        )
    finally:
        store.close()


def audit_access(
    action: str, target: str, details: dict[str, object] | None = None, *, db: str | None = None
) -> None:
    """Append a read or export of stored data by this command line to the audit log."""
    store = open_store(db)
    try:
        store.append_audit(actor=cli_actor(), action=action, target=target, details=details)
    finally:
        store.close()
