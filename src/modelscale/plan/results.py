"""What a plan returns: options per growth phase, the recommendation, and what it rests on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelscale.plan.server import ServerConfig
from modelscale.plan.service import ServiceModel
from modelscale.result import ModelVersionInfo, Result, RunLinks

__all__ = ["NotPlanned", "PhasePlan", "PlanOption", "PlanResult"]


@dataclass(frozen=True)
class PlanOption:
    """One way to serve the target rate: machines x type, the server on each, and its cost.

    Attributes:
        category: 'vertical' (one machine, one replica using its threads), 'horizontal' (replicas
            of one thread, on as many machines as needed) or 'mixed'.
        provider: Cloud provider, or 'local' for this machine.
        instance_type: The machine type ('local' for this machine).
        region: Where the price applies.
        machines: How many machines.
        vcpus: vCPUs (or usable cores) per machine.
        memory_gib: Memory per machine.
        replicas: Replica processes per machine.
        threads: Intra-op threads per replica.
        max_batch: Largest batch.
        max_wait_ms: Batch wait after its first request.
        per_machine_rps: Highest rate one machine sustains with p99 within the bound.
        max_rate_rps: The same for all machines together.
        capacity_rps: Saturation throughput of all machines together.
        utilisation: Replica busy fraction at the target rate.
        p99_at_target_ms: Predicted p99 at the target rate.
        mean_at_target_ms: Predicted mean latency at the target rate.
        usd_per_hour: Cost per hour of all machines (None for the local machine).
        usd_per_month: Cost per month (730 hours).
        usd_per_million: Cost per million requests at the target rate.
        method: What produced the rate ('analytic:M/G/c', 'analytic:batch-queue', 'simulation').
        extrapolated: True when the numbers rest on the local profile scaled to another CPU, or
            on thread counts or batch sizes beyond those measured.
        notes: Caveats.
        objective_ms: Set when the server chooses batches from the p99 objective (``max_batch`` is
            then the largest batch this profile lets it send within it, ``max_wait_ms`` 0).
    """

    category: str
    provider: str
    instance_type: str
    region: str | None
    machines: int
    vcpus: int
    memory_gib: float | None
    replicas: int
    threads: int
    max_batch: int
    max_wait_ms: float
    per_machine_rps: float
    max_rate_rps: float
    capacity_rps: float
    utilisation: float
    p99_at_target_ms: float | None
    mean_at_target_ms: float | None
    usd_per_hour: float | None
    usd_per_month: float | None
    usd_per_million: float | None
    method: str
    extrapolated: bool
    notes: tuple[str, ...] = field(default=())
    objective_ms: float | None = None

    @property
    def config(self) -> ServerConfig:
        """The server configuration on each machine."""
        return ServerConfig(
            self.replicas,
            self.threads,
            self.max_batch,
            self.max_wait_ms,
            objective_ms=self.objective_ms,
        )

    def label(self) -> str:
        """E.g. '3 x aws c7i.xlarge (4 x 1 thr, batch 8 / 0 ms)'."""
        where = (
            "this machine" if self.provider == "local" else f"{self.provider} {self.instance_type}"
        )
        return f"{self.machines} x {where} ({self.config.label()})"


@dataclass(frozen=True)
class PhasePlan:
    """The options and the recommendation for one target rate.

    Attributes:
        rate_rps: The phase's target rate.
        options: The cheapest option per category and provider that meets the SLO with headroom,
            cheapest first (local options, which have no price, last).
        recommended: The cheapest option that meets the SLO with headroom, or None.
        why: One sentence on why it is recommended.
        next_step: When to move to the next phase.
        not_possible: Categories no machine can serve, with the reason.
    """

    rate_rps: float
    options: tuple[PlanOption, ...]
    recommended: PlanOption | None
    why: str
    next_step: str
    not_possible: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotPlanned:
    """A catalog machine listed with its price but not planned, and why."""

    provider: str
    instance_type: str
    usd_per_hour: float
    reason: str


@dataclass(frozen=True)
class PlanResult(Result):
    """A capacity and cost plan for one model, an SLO and growth phases."""

    kind: ClassVar[str] = "plan"

    model: dict[str, Any]
    target: dict[str, Any]
    service: ServiceModel
    machine: dict[str, Any]
    local: PlanOption | None
    """The best configuration on this machine (what ``--validate-local`` would start)."""
    phases: tuple[PhasePlan, ...]
    not_planned: tuple[NotPlanned, ...]
    assumptions: tuple[str, ...]
    catalog: dict[str, Any]
    summary: str
    params: dict[str, Any]

    def links(self) -> RunLinks:
        """Filed under the planned model's version, which is registered first."""
        if not self.model.get("sha256"):
            return RunLinks()
        return RunLinks(str(self.model["sha256"]), models=(ModelVersionInfo.of(self.model),))

    def phase(self, rate_rps: float) -> PhasePlan:
        """The phase planned for ``rate_rps``."""
        for p in self.phases:
            if p.rate_rps == rate_rps:
                return p
        raise KeyError(f"no phase at {rate_rps} req/s")
