"""The planner: options per growth phase across machine types, the recommendation, and why.

For every machine it can plan (this machine, catalog CPU machines of this machine's architecture,
and GPU machines for which a GPU profile is given), the capacity search gives each configuration's
max rate at the p99 bound. A phase's target rate then needs ``ceil(rate / (headroom * max rate))``
machines of a configuration; its cost is machines x price. Per category (vertical, horizontal,
mixed) and provider the cheapest is listed; the recommendation is the cheapest of all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from modelscale.errors import InvalidInput, invalid_parameter
from modelscale.machine import MachineInfo, machine_info
from modelscale.plan.capacity import predict
from modelscale.plan.catalog import Catalog, InstanceType
from modelscale.plan.results import NotPlanned, PhasePlan, PlanOption, PlanResult
from modelscale.plan.search import (
    DEFAULT_POLICIES,
    BatchPolicy,
    CapacitySearch,
    ShapeResult,
    machines_needed,
)
from modelscale.plan.server import Overheads
from modelscale.plan.service import ServiceModel
from modelscale.plan.text import assumptions, next_step_text, summary_text, why_text
from modelscale.progress import OnProgress

__all__ = ["ASSUMED_OVERHEADS", "PlanOptions", "check_targets", "plan_capacity"]

_GIB = 2**30
_BASE_BYTES = _GIB // 2  # the front process and the OS


ASSUMED_OVERHEADS = (
    "assumed: the front's cost varies with the model and the load, 0.07-0.5 ms per request "
    "measured here; plan --validate-local once to measure this model's"
)
"""Where default overheads come from, as a plan's assumptions say it."""


@dataclass(frozen=True)
class PlanOptions:
    """How to plan.

    Attributes:
        headroom: Plan so the target is at most this share of the max rate at the p99 bound.
        phases: Further target rates (growth phases); the target rate is always one of them.
        core_factor: Per-core speed of catalog machines relative to this one (an assumption).
        machine: None for this machine and the catalog, 'local' for this machine only, or one
            catalog instance type.
        spot: Price with spot instead of on-demand prices.
        overheads: Serving costs outside the model.
        overheads_source: Where ``overheads`` come from (said in the plan's assumptions).
        policies: Batch policies to try.
        sim_requests: Requests per simulation run.
    """

    headroom: float = 0.7
    phases: tuple[float, ...] = ()
    core_factor: float = 1.0
    machine: str | None = None
    spot: bool = False
    overheads: Overheads = field(default_factory=Overheads)
    overheads_source: str = ASSUMED_OVERHEADS
    policies: tuple[BatchPolicy, ...] = DEFAULT_POLICIES
    sim_requests: int = 12_000

    def check(self) -> None:
        """Raise InvalidInput for values outside their range."""
        if not (isinstance(self.headroom, int | float) and 0 < self.headroom <= 1):
            raise invalid_parameter("headroom", "a number in (0, 1]", self.headroom, where="plan")
        for r in self.phases:
            if not (isinstance(r, int | float) and math.isfinite(r) and r > 0):
                raise invalid_parameter(
                    "phases", "a list of rates > 0 (requests/s)", list(self.phases), where="plan"
                )
        if not (math.isfinite(self.core_factor) and self.core_factor > 0):
            raise invalid_parameter("core_factor", "a number > 0", self.core_factor, where="plan")


@dataclass(frozen=True)
class _Machine:
    provider: str
    name: str
    region: str | None
    cores: int
    memory_gib: float | None
    price: float | None
    factor: float
    search: CapacitySearch


_ADAPTIVE_PREFERENCE = 1.03
"""How much more a fixed batch policy must sustain to be chosen over batches from the objective."""


def check_targets(rps: float, p99_ms: float) -> None:
    """Raise InvalidInput unless the target rate and the p99 bound are positive numbers."""
    if not (isinstance(rps, int | float) and math.isfinite(rps) and rps > 0):
        raise invalid_parameter("rps", "a rate > 0 (requests/s)", rps, where="plan")
    if not (isinstance(p99_ms, int | float) and math.isfinite(p99_ms) and p99_ms > 0):
        raise invalid_parameter("p99_ms", "a latency > 0 (ms)", p99_ms, where="plan")


def _check_possible(service: ServiceModel, p99_ms: float, ov: Overheads, local_cores: int) -> None:
    threads = [t for t in service.measured_threads if t <= local_cores] or [
        min(service.measured_threads)
    ]
    best_t = min(threads, key=lambda t: float(service.time_ms(1, t)))
    alone = float(service.time_ms(1, best_t))
    total = alone + ov.front_per_request_ms() + ov.batch_ms + ov.network_ms
    if p99_ms < total:
        raise InvalidInput(
            f"A p99 of {p99_ms:g} ms is impossible: one request alone takes {total:.2f} ms here "
            f"(the model {alone:.2f} ms at batch 1 on {best_t} thread(s), plus "
            f"{total - alone:.2f} ms of serving overhead), before any queueing. Ask for a p99 "
            "of at least a few times that, or make the model faster (modelscale compress).",
            field="p99_ms",
        )


def _machines(
    service: ServiceModel,
    catalog: Catalog | None,
    opts: PlanOptions,
    here: MachineInfo,
    search: Callable[[ServiceModel], CapacitySearch],
    gpu_services: Mapping[str, ServiceModel],
) -> tuple[list[_Machine], list[NotPlanned]]:
    local_search = search(service)
    gpu_searches = {k.lower(): search(v) for k, v in gpu_services.items()}
    local = _Machine(
        "local", "local", None, here.usable_cores, here.memory_bytes / _GIB, None, 1.0, local_search
    )
    if opts.machine == "local":
        return [local], []
    here_arch = "arm64" if any(f in here.isa_flags for f in ("asimd", "sve")) else "x86_64"
    rows: Sequence[InstanceType] = catalog.instances if catalog else ()
    if opts.machine is not None:
        if catalog is None:
            raise InvalidInput("A 'machine' type needs a catalog.", field="machine")
        rows = [catalog.find(opts.machine)]
    machines = [] if opts.machine else [local]
    skipped = []
    for inst in rows:
        price = inst.price(spot=opts.spot)
        if inst.is_gpu:
            gpu = gpu_searches.get((inst.gpu_model or "").lower())
            if gpu is None:
                skipped.append(
                    NotPlanned(
                        inst.provider,
                        inst.name,
                        price,
                        f"GPU ({inst.gpu_count} x {inst.gpu_model}): no profile of this model "
                        f"measured on a {inst.gpu_model}; GPU machines are planned only from one",
                    )
                )
                continue
            machines.append(
                _Machine(inst.provider, inst.name, inst.region, inst.gpu_count, inst.memory_gib,
                         price, 1.0, gpu)
            )  # fmt: skip
            continue
        if inst.arch != here_arch:
            skipped.append(
                NotPlanned(
                    inst.provider,
                    inst.name,
                    price,
                    f"{inst.arch} CPU: the profile was measured on {here_arch}; per-core speed "
                    "does not carry across instruction sets",
                )
            )
            continue
        machines.append(
            _Machine(inst.provider, inst.name, inst.region, inst.vcpus, inst.memory_gib, price,
                     opts.core_factor, local_search)
        )  # fmt: skip
    return machines, skipped


def _category(replicas: int, threads: int, machines: int) -> str:
    if replicas == 1 and machines == 1:
        return "vertical"
    if threads == 1:
        return "horizontal"
    return "mixed"


def _fits(sr: ShapeResult, m: _Machine, replica_bytes: int) -> bool:
    if m.memory_gib is None:
        return True
    return sr.config.replicas * replica_bytes + _BASE_BYTES <= m.memory_gib * _GIB * 0.9


def _option(
    m: _Machine, sr: ShapeResult, count: int, rate: float, opts: PlanOptions, p99_ms: float
) -> PlanOption:
    service = m.search.service.with_core_factor(m.factor)
    cfg, est = sr.config, sr.estimate
    at = predict(
        service, cfg, cores=m.cores, rate_rps=rate / count, overheads=opts.overheads,
        sim_requests=opts.sim_requests,
    )  # fmt: skip
    hourly = None if m.price is None else m.price * count
    notes = []
    if m.factor != 1.0 or m.provider != "local":
        notes.append(f"extrapolated: local per-core speed x {m.factor:g} assumed on {m.name}")
    if sr.extrapolated and m.provider == "local":
        notes.append("extrapolated: beyond the measured batch sizes or thread counts")
    return PlanOption(
        category=_category(cfg.replicas, cfg.threads, count),
        provider=m.provider,
        instance_type=m.name,
        region=m.region,
        machines=count,
        vcpus=m.cores,
        memory_gib=m.memory_gib,
        replicas=cfg.replicas,
        threads=cfg.threads,
        max_batch=cfg.max_batch,
        max_wait_ms=cfg.max_wait_ms,
        per_machine_rps=est.rate_rps,
        max_rate_rps=est.rate_rps * count,
        capacity_rps=est.capacity_rps * count,
        utilisation=at.utilisation,
        p99_at_target_ms=at.p99_ms if math.isfinite(at.p99_ms) else None,
        mean_at_target_ms=at.mean_ms if math.isfinite(at.mean_ms) else None,
        usd_per_hour=hourly,
        usd_per_month=None if hourly is None else hourly * 730.0,
        usd_per_million=None if hourly is None else hourly / (rate * 3600.0) * 1e6,
        method=est.method,
        extrapolated=sr.extrapolated or m.provider != "local",
        notes=tuple(notes),
        objective_ms=cfg.objective_ms,
    )


def _phase(
    rate: float,
    machines: Sequence[_Machine],
    shapes: Mapping[str, list[ShapeResult]],
    opts: PlanOptions,
    p99_ms: float,
    replica_bytes: int,
) -> tuple[list[tuple[_Machine, ShapeResult, int]], list[str]]:
    """The best (machine, shape, count) per category and provider for ``rate``."""
    best: dict[tuple[str, str], tuple[tuple[float, ...], _Machine, ShapeResult, int]] = {}
    vertical_best = (0.0, "")
    for m in machines:
        for sr in shapes[m.name]:
            r = sr.estimate.rate_rps
            if r <= 0 or not _fits(sr, m, replica_bytes):
                continue
            if sr.config.replicas == 1 and r > vertical_best[0]:
                vertical_best = (r, m.name)
            count = machines_needed(rate, r, opts.headroom)
            cat = _category(sr.config.replicas, sr.config.threads, count)
            cost = math.inf if m.price is None else m.price * count
            # At equal cost, batches from the objective are preferred unless a fixed policy
            # sustains 3% more: they follow the machine's speed where a fixed size does not.
            key = (cost, count, -r * (_ADAPTIVE_PREFERENCE if sr.config.adaptive else 1.0))
            slot = (cat, m.provider)
            if slot not in best or key < best[slot][0]:
                best[slot] = (key, m, sr, count)
    chosen = [(m, sr, n) for _, m, sr, n in best.values()]
    not_possible = []
    if not any(cat == "vertical" for cat, _ in best):
        r, name = vertical_best
        where = f"the best is {name} at {r:,.0f} req/s" if name else "none meets the bound"
        not_possible.append(
            f"vertical: no single machine serves {rate:,.0f} req/s with one replica at p99 <= "
            f"{p99_ms:g} ms and {opts.headroom:.0%} headroom ({where})"
        )
    return chosen, not_possible


def plan_capacity(
    service: ServiceModel,
    *,
    rps: float,
    p99_ms: float,
    catalog: Catalog | None,
    options: PlanOptions | None = None,
    model: Mapping[str, object] | None = None,
    replica_bytes: int = 0,
    gpu_services: Mapping[str, ServiceModel] | None = None,
    machine: MachineInfo | None = None,
    on_progress: OnProgress | None = None,
) -> PlanResult:
    """Plan serving ``rps`` requests/s with p99 <= ``p99_ms`` from a fitted performance model.

    Args:
        service: Service times measured on this machine.
        rps: The target rate now.
        p99_ms: The p99 latency bound.
        catalog: Machine types and prices (None: this machine only).
        options: Headroom, phases, core factor, machine restriction, overheads, policies.
        model: Name and sha256 of the model, kept with the result.
        replica_bytes: Memory one replica needs.
        gpu_services: Performance models measured on GPUs, by GPU model name.
        machine: This machine (default: ``machine_info()``).
        on_progress: Told as machine sizes are searched.
    """
    opts = options or PlanOptions()
    opts.check()
    check_targets(rps, p99_ms)
    here = machine or machine_info()
    _check_possible(service, p99_ms, opts.overheads, here.usable_cores)

    def new_search(svc: ServiceModel) -> CapacitySearch:
        return CapacitySearch(
            svc, p99_ms=p99_ms, overheads=opts.overheads, policies=opts.policies,
            sim_requests=opts.sim_requests, on_progress=on_progress,
        )  # fmt: skip

    machines, skipped = _machines(service, catalog, opts, here, new_search, gpu_services or {})
    shapes = {m.name: m.search.evaluate(m.cores, m.factor) for m in machines}
    rates = tuple(sorted({float(rps), *map(float, opts.phases)}))
    phases: list[PhasePlan] = []
    for rate in rates:
        chosen, not_possible = _phase(rate, machines, shapes, opts, p99_ms, replica_bytes)
        options_ = [_option(m, sr, n, rate, opts, p99_ms) for m, sr, n in chosen]
        options_.sort(key=lambda o: (o.usd_per_month is None, o.usd_per_month or 0.0, o.machines))
        priced = [o for o in options_ if o.usd_per_month is not None]
        pick = priced[0] if priced else (options_[0] if options_ else None)
        phases.append(
            PhasePlan(rate, tuple(options_), pick, why_text(pick, options_, rate, p99_ms, opts.headroom),
                      "", tuple(not_possible))
        )  # fmt: skip
    phases = next_step_text(phases, opts.headroom)
    local_shapes = shapes.get("local", [])
    local_best = max(local_shapes, key=lambda s: s.estimate.rate_rps, default=None)
    local_machine = next((m for m in machines if m.name == "local"), None)
    local = None
    if local_machine is not None and local_best is not None and local_best.estimate.rate_rps > 0:
        at = min(rps, opts.headroom * local_best.estimate.rate_rps)
        local = _option(local_machine, local_best, 1, at, opts, p99_ms)
    result_model = dict(model or {})
    target = {"rps": rps, "p99_ms": p99_ms, "headroom": opts.headroom, "phases": list(rates)}
    return PlanResult(
        model=result_model,
        target=target,
        service=service,
        machine={
            "cpu_model": here.cpu_model,
            "usable_cores": here.usable_cores,
            "isa_flags": list(here.isa_flags),
            "memory_gib": round(here.memory_bytes / _GIB, 1),
        },
        local=local,
        phases=tuple(phases),
        not_planned=tuple(skipped),
        assumptions=assumptions(service, opts, here, catalog),
        catalog={
            "path": catalog.path if catalog else None,
            "bundled": catalog.bundled if catalog else None,
            "rows": len(catalog.instances) if catalog else 0,
            "flagged_skipped": list(catalog.flagged) if catalog else [],
            "prices": "spot" if opts.spot else "on-demand",
        },
        summary=summary_text(str(result_model.get("name", "model")), phases, local_shapes, p99_ms),
        params={
            "rps": rps,
            "p99_ms": p99_ms,
            "headroom": opts.headroom,
            "phases": list(opts.phases),
            "core_factor": opts.core_factor,
            "machine": opts.machine,
            "spot": opts.spot,
            "overheads": opts.overheads,
            "overheads_source": opts.overheads_source,
            "policies": list(opts.policies),
            "sim_requests": opts.sim_requests,
            "replica_bytes": replica_bytes,
        },
    )
