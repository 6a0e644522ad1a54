"""Where alerts go: the server log, the knowledge base (runs), webhooks.

SLO alerts are stored as runs of kind ``slo``; other features' alerts (drift, data quality,
accuracy) as whatever ``as_result()`` of their event gives.

Deliveries run in a thread of their own, never on the request path nor in the thread that
evaluates the SLOs: a webhook that is down or slow costs retries with exponential backoff
(0.5 s, 1 s, 2 s, ... up to ``alerts.retries``), counted in ``/metrics``
(``modelscale_alert_deliveries_total{sink, result}``), and never delays serving. A knowledge base
that cannot take a run is logged and counted the same way.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from modelscale.observe.slo import SloAlert
from modelscale.result import Result

__all__ = ["Alert", "AlertDispatcher", "SloAlert"]

log = logging.getLogger("modelscale.observe")


class Alert(Protocol):
    """An alert event: an SLO's (``Alert``) or another feature's."""

    @property
    def model(self) -> str:
        """The model alerted on."""

    @property
    def state(self) -> str:
        """'firing' or 'resolved'."""

    @property
    def message(self) -> str:
        """One line for the server log."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the webhook's body)."""

    def as_result(self) -> Result:
        """The run the knowledge base keeps of it."""


class AlertDispatcher:
    """Delivers alert events to the log, the knowledge base and webhooks, in its own thread."""

    def __init__(
        self,
        *,
        webhooks: Sequence[str] = (),
        retries: int = 5,
        timeout_s: float = 5.0,
        store_url: str | None = None,
        model_versions: Callable[[str], str | None] | None = None,
        record: bool = True,
        backoff_s: float = 0.5,
    ) -> None:
        self.webhooks = tuple(webhooks)
        self.retries = retries
        self.timeout_s = timeout_s
        self.store_url = store_url
        self.model_versions = model_versions
        """model -> the sha256 of the version an alert is filed under."""
        self.record = record
        self.backoff_s = backoff_s
        self.deliveries: Counter[tuple[str, str]] = Counter()
        """(sink, 'ok' | 'failed' | 'retried') -> count."""
        self.events: list[Alert] = []
        """Every event sent, oldest first."""
        self._queue: queue.Queue[Alert | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, events: Sequence[Alert]) -> None:
        """Log each event now; queue its other deliveries (never blocks)."""
        for e in events:
            level = logging.WARNING if e.state == "firing" else logging.INFO
            log.log(level, "%s", e.message)
            self.events.append(e)
            self.deliveries["log", "ok"] += 1
            if self.webhooks or self.record:
                self._start()
                self._queue.put(e)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="alert deliveries", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            e = self._queue.get()
            if e is None:
                return
            if self.record:
                self._to_store(e)
            for url in self.webhooks:
                self._to_webhook(url, e)

    def _to_store(self, e: Alert) -> None:
        try:
            from modelscale.store import open_store

            store = open_store(self.store_url)
            try:
                sha = getattr(e, "sha256", None)
                if sha is None and self.model_versions is not None:
                    sha = self.model_versions(e.model)
                if sha is not None:
                    store.register_model(sha, name=e.model)
                store.record(e.as_result(), model_version=sha, note=e.message)
            finally:
                store.close()
        except Exception as exc:
            self.deliveries["store", "failed"] += 1
            log.warning("alert not recorded in the knowledge base: %s", exc)
            return
        self.deliveries["store", "ok"] += 1

    def _to_webhook(self, url: str, e: Alert) -> None:
        body = json.dumps({"source": "modelscale", **e.to_dict()}).encode()
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(
                url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                self.deliveries["webhook", "ok"] += 1
                return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                if attempt == self.retries:
                    self.deliveries["webhook", "failed"] += 1
                    log.warning(
                        "alert not delivered to %s after %d attempts: %s",
                        url,
                        attempt + 1,
                        exc,
                    )
                    return
                self.deliveries["webhook", "retried"] += 1
                time.sleep(delay)
                delay = min(delay * 2, 60.0)

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (waiting at most ``timeout_s``), then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout=timeout_s)
        self._thread = None
