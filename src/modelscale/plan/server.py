"""What one machine's server is: replicas x threads and a batch policy; its costs outside the model.

``ServerConfig`` is what deploy.yaml sets for one model version on one machine; ``Overheads`` are
the serving costs the profile does not see; ``Estimate`` is what a capacity method predicts for a
configuration (see ``capacity``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from modelscale.errors import invalid_parameter

__all__ = ["Estimate", "Overheads", "ServerConfig"]


@dataclass(frozen=True)
class ServerConfig:
    """One machine's server: replicas x threads and the batch policy.

    Attributes:
        replicas: Replica processes.
        threads: Intra-op threads per replica.
        max_batch: Largest batch (1 = no batching).
        max_wait_ms: How long a batch waits after its first request.
        objective_ms: With a p99 objective the server chooses each batch from it (its SLO policy,
            ``modelscale.batching``, which the simulator runs too): ``max_batch`` is then only the
            largest batch it may send and ``max_wait_ms`` is unused (0).
    """

    replicas: int
    threads: int
    max_batch: int = 1
    max_wait_ms: float = 0.0
    objective_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("replicas", "threads", "max_batch"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise invalid_parameter(name, "an integer >= 1", value, where="plan")
        if not (self.max_wait_ms >= 0 and math.isfinite(self.max_wait_ms)):
            raise invalid_parameter("max_wait_ms", "a number >= 0", self.max_wait_ms, where="plan")
        if self.objective_ms is not None:
            if not (self.objective_ms > 0 and math.isfinite(self.objective_ms)):
                raise invalid_parameter(
                    "objective_ms", "a p99 objective in ms > 0", self.objective_ms, where="plan"
                )
            if self.max_wait_ms != 0:
                raise invalid_parameter(
                    "max_wait_ms",
                    "0 when batches come from the objective (the policy chooses each wait)",
                    self.max_wait_ms,
                    where="plan",
                )

    @property
    def adaptive(self) -> bool:
        """Whether batches come from the p99 objective rather than a fixed size and wait."""
        return self.objective_ms is not None

    @property
    def cores(self) -> int:
        """Cores the replicas ask for: replicas x threads."""
        return self.replicas * self.threads

    def label(self) -> str:
        """E.g. '2 x 1 thr, batch 8 / 5 ms' or '2 x 1 thr, batches from the p99 (up to 8)'."""
        if self.objective_ms is not None:
            batch = f"batches from the p99 (up to {self.max_batch})"
        elif self.max_batch == 1:
            batch = "no batching"
        else:
            batch = f"batch {self.max_batch} / {self.max_wait_ms:g} ms"
        return f"{self.replicas} x {self.threads} thr, {batch}"


@dataclass(frozen=True)
class Overheads:
    """Serving costs outside the model, in milliseconds.

    The defaults are assumptions until a measurement calibrates them (``plan --validate``).

    Attributes:
        front_ms: Front CPU per request (HTTP, decoding, encoding).
        front_batch_ms: Front CPU per batch (handing it to a replica, reading and splitting its
            reply), spread over the batch's requests.
        batch_ms: Hand-over per batch between the front and a replica.
        network_ms: Latency added per request that uses no CPU here (network round trip).
        client_ms: CPU per request of a load generator on the same machine (validation only).
        interference: How many milliseconds a replica loses to each millisecond of front (or
            load-generator) CPU that lands on its cores: the stolen time itself and the caches
            refilled after each preemption. A plain factor, not milliseconds.
    """

    # Measured on the development machine (AMD EPYC, 2 cores) by plan --validate-local: the front
    # spent 0.1-0.2 ms of CPU per digits request and 0.3-0.5 ms per MiniLM request (its payload
    # and a loaded machine cost more), about 0.08 ms of it per batch; a replica was held 0.2-0.9 ms
    # per batch beyond its inference. Validating a model replaces these with its own figures.
    front_ms: float = 0.15
    front_batch_ms: float = 0.08
    batch_ms: float = 0.3
    network_ms: float = 0.0
    client_ms: float = 0.0
    # Measured here (MiniLM, 1 x 2 and 2 x 1 threads on 2 cores, profiled with spinning off):
    # inference inside the replicas ran 1.10-1.16x its profiled time, 1.4-2.2 times what the
    # CPU that the front and the load generator took explains.
    interference: float = 2.0

    def front_per_request_ms(self, mean_batch: float = 1.0) -> float:
        """Front CPU per request with the per-batch work spread over ``mean_batch`` requests."""
        return self.front_ms + self.front_batch_ms / max(mean_batch, 1.0)

    def __post_init__(self) -> None:
        for name in (
            "front_ms",
            "front_batch_ms",
            "batch_ms",
            "network_ms",
            "client_ms",
            "interference",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                what = "a factor >= 0" if name == "interference" else "a number of ms >= 0"
                raise invalid_parameter(name, what, value, where="plan")


@dataclass(frozen=True)
class Estimate:
    """What a method predicts for one configuration on one machine.

    Attributes:
        rate_rps: The arrival rate this is about (for ``max_rate``: the highest rate meeting p99).
        p99_ms: Predicted p99 latency at ``rate_rps``.
        mean_ms: Predicted mean latency.
        utilisation: Busy fraction of the replicas at ``rate_rps``.
        capacity_rps: Saturation throughput (every replica always busy with full batches).
        slowdown: Service-time factor from sharing the cores.
        method: Which method produced the numbers.
        notes: Anything the numbers depend on beyond the model.
    """

    rate_rps: float
    p99_ms: float
    mean_ms: float
    utilisation: float
    capacity_rps: float
    slowdown: float
    method: str
    notes: tuple[str, ...] = field(default=())
