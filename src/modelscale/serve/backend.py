"""The backend protocol: what the front needs from whatever runs a model version's replicas.

The front (routes, codec, auth, batching, metrics) is written once; a backend only runs batches.
Two implement it: the local replica pool (``LocalBackend``: OS processes on this machine) and Ray
Serve deployment handles (``RayBackend``: replicas placed by Ray across a cluster). The front forms a
batch, reserves a slot with ``acquire`` (a replica that can take it now), hands it over with ``run``
and splits the outcome back into per-request replies itself, so both backends see whole batches, one
call per batch, never one per request.

What crosses the boundary is typed: a ``Batch`` goes in, a ``BatchOutcome`` comes back (``BatchOk``,
``BatchSplit`` when a stacked batch failed and each request was run alone, ``BatchFailed``, or
``BatchLost`` when the replica went away without answering), ``BackendHealth`` and ``ReplicaStats``
describe the replicas, ``ReplicaSettings`` reconfigures them.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = [
    "Backend",
    "BackendHealth",
    "BackendState",
    "Batch",
    "BatchFailed",
    "BatchLost",
    "BatchOk",
    "BatchOutcome",
    "BatchSplit",
    "PartFailed",
    "ReplicaSettings",
    "ReplicaState",
    "ReplicaStats",
]


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch for a replica: stacked feeds, the rows each request holds, the outputs to return."""

    feeds: dict[str, np.ndarray]
    row_counts: tuple[int, ...]
    outputs: tuple[str, ...]

    @property
    def rows(self) -> int:
        """Rows in the batch."""
        return sum(self.row_counts)


@dataclass(frozen=True, slots=True)
class BatchOk:
    """The batch ran: one array per requested output, in ``Batch.outputs`` order, rows stacked."""

    outputs: list[np.ndarray]
    infer_s: float
    replica: str = ""
    """Which replica ran it (a pid on this machine, a Ray replica id on a cluster)."""


@dataclass(frozen=True, slots=True)
class PartFailed:
    """One request of a split batch that the model rejected."""

    status: int
    message: str


@dataclass(frozen=True, slots=True)
class BatchSplit:
    """The stacked batch failed, so each request ran alone: outputs or the reason, per request."""

    parts: list[list[np.ndarray] | PartFailed]
    infer_s: float
    replica: str = ""


@dataclass(frozen=True, slots=True)
class BatchFailed:
    """The model failed the whole batch (one request alone, or a failure not due to the input)."""

    status: int
    message: str
    infer_s: float
    replica: str = ""


@dataclass(frozen=True, slots=True)
class BatchLost:
    """The replica went away (died, was killed as hung, or is unreachable) before it answered."""

    reason: str
    replica: str = ""


BatchOutcome = BatchOk | BatchSplit | BatchFailed | BatchLost


class ReplicaState(enum.Enum):
    """Where one replica is in its life."""

    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    RESTARTING = "restarting"
    STOPPED = "stopped"


class BackendState(enum.Enum):
    """Whether a model version can take batches."""

    STARTING = "starting"
    """Not every replica has loaded yet."""
    READY = "ready"
    """Every replica is up."""
    DEGRADED = "degraded"
    """Some replicas are up, others are being replaced."""
    UNAVAILABLE = "unavailable"
    """No replica can take a batch."""
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class BackendHealth:
    """The replicas of one model version, as the readiness probe and the metrics see them."""

    state: BackendState
    ready: int
    desired: int
    restarts: int = 0

    @property
    def serving(self) -> bool:
        """Whether a batch can be run now."""
        return self.state in (BackendState.READY, BackendState.DEGRADED)


@dataclass(frozen=True, slots=True)
class ReplicaStats:
    """What one replica has done."""

    replica: str
    state: ReplicaState
    batches: int
    rows: int
    restarts: int = 0


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    """What can change on running replicas without restarting the server."""

    threads: int


class Backend(Protocol):
    """Runs one model version's batches on its replicas."""

    label: str
    """'model:version', for messages."""

    on_unavailable: Callable[[], None] | None
    """Called when the last replica that could take a batch is gone (the front then fails its
    queue rather than let requests wait for a replica that is not coming back soon)."""

    async def start(self) -> None:
        """Start the replicas; return once they can take batches (ServerError naming the cause)."""

    async def stop(self) -> None:
        """Stop the replicas (batches in flight finish or are answered as lost)."""

    async def acquire(self) -> Any:
        """Wait until a replica can take a batch now, and reserve it."""

    def release(self, slot: Any) -> None:
        """Give back a reservation that got no batch."""

    def run(self, slot: Any, batch: Batch) -> asyncio.Future[BatchOutcome]:
        """Hand ``batch`` to the reserved replica; the future never fails (``BatchLost`` instead).

        The slot is freed when the outcome arrives.
        """

    def health(self) -> BackendHealth:
        """The replicas' state now."""

    def serving(self) -> bool:
        """Whether a batch can be run now (asked for every request: cheap, no allocation)."""

    def stats(self) -> Sequence[ReplicaStats]:
        """Per-replica counters."""

    def in_flight_rows(self) -> int:
        """Rows handed to replicas and not answered yet."""

    async def reconfigure(self, settings: ReplicaSettings) -> None:
        """Apply ``settings`` to every replica (InvalidInput if this backend cannot)."""

    def drain(self) -> None:
        """The server is shutting down: let batches in flight finish and replace no replica."""
