"""The server's upkeep of stored data: the retention purge and the audit of reads.

``Purger`` is a ticking recorder of the request pipeline: every ``privacy.retention.purge_every``
it deletes what is past its TTL (``modelscale.privacy.retention``). ``AuditStage`` runs before the
feature routes and appends each read of the stored request log and each admin action to the
knowledge base's hash-chained audit log before the route answers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from modelscale.config import DeploymentSpec
from modelscale.serve import ApiError, Endpoint, Exchange

__all__ = ["AuditStage", "Purger"]

log = logging.getLogger("modelscale.privacy")


class Purger:
    """Purges the request log and the audit log past retention, every ``purge_every``."""

    name = "privacy-purge"
    threaded = True

    def __init__(self, spec: DeploymentSpec, location: Any) -> None:
        self.retention = spec.privacy.retention
        self.location = location
        self.store_url = spec.store.url
        self.tick_s = self.retention.seconds("purge_every")
        self.purges = 0
        self.deleted = 0
        self.failures = 0

    def record(self, records: Any) -> None:
        """Nothing to do per request."""

    def tick(self, *, final: bool = False) -> None:
        """Purge (not when the server stops: a stop should not delete)."""
        if final:
            return
        from modelscale.privacy.retention import purge
        from modelscale.store import open_store

        try:
            store = open_store(self.store_url)
        except Exception as exc:
            self.failures += 1
            log.warning("retention purge: cannot open the knowledge base (%s)", exc)
            store = None
        try:
            report = purge(self.retention, location=self.location, store=store, actor="server")
            self.purges += 1
            self.deleted += sum(c.deleted for c in report.classes)
            if not report.ok:
                self.failures += 1
                log.warning("retention purge left data past its TTL: %s", report.to_dict())
        except Exception:
            self.failures += 1
            log.exception("retention purge failed; retrying at the next interval")
        finally:
            if store is not None:
                store.close()


_AUDITED_READS = frozenset({"/v2/logs"})
"""Feature routes that read stored data (the request log); the live views and status routes
answer from memory and are not audited, or a dashboard's polling would flood the audit log."""


class AuditStage:
    """Append each read of stored data and each admin action to the audit log before it runs.

    The entry is written first, in a thread: when the audit log cannot be written the request is
    refused (503), so nothing is read without a trace.
    """

    name: ClassVar[str] = "audit"
    endpoints: ClassVar[frozenset[Endpoint]] = frozenset({Endpoint.FEATURE})
    place = ("before", "feature_routes")

    def __init__(self, store_url: str | None) -> None:
        self.store_url = store_url
        self._store: Any = None
        self.appended = 0
        self.failures = 0

    def _append(self, **entry: Any) -> None:
        if self._store is None:
            from modelscale.store import open_store

            self._store = open_store(self.store_url)
        self._store.append_audit(**entry)

    async def __call__(self, ex: Exchange) -> None:
        """Append an entry for an audited request, or refuse it when that fails."""
        tail = ex.path.rsplit("/", 1)[-1]
        if ex.path in _AUDITED_READS and ex.method in ("GET", "HEAD"):
            action = "logs.read"
        elif ex.method == "POST" and ex.model is not None and tail == "experiment":
            action = "experiment.change"
        else:
            return
        query = ex.scope.get("query_string", b"").decode("latin-1")
        try:
            await asyncio.to_thread(
                self._append,
                actor=ex.key_id or "anonymous",
                action=action,
                target=ex.path + (f"?{query}" if query else ""),
                details={"model": ex.model} if ex.model else {},
            )
            self.appended += 1
        except Exception as exc:
            self.failures += 1
            log.error("audit log: cannot append %s on %s (%s)", action, ex.path, exc)
            raise ApiError(
                503,
                "the audit log cannot be written now, so this request is refused; retry later.",
                headers={"retry-after": "5"},
            ) from None

    def close(self) -> None:
        """Close the knowledge base connection."""
        if self._store is not None:
            self._store.close()
