"""The sentences a plan speaks: assumptions, why an option is recommended, when to move on."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelscale.machine import MachineInfo
from modelscale.plan.catalog import Catalog
from modelscale.plan.results import PhasePlan, PlanOption
from modelscale.plan.service import ServiceModel

if TYPE_CHECKING:
    from modelscale.plan.planner import PlanOptions
    from modelscale.plan.search import ShapeResult

__all__ = ["assumptions", "next_step_text", "summary_text", "why_text"]


def _g(x: float) -> str:
    """3 significant digits; fitted zeros (1e-30 and the like) print as 0."""
    return "0" if abs(x) < 1e-9 else f"{x:.3g}"


def _money(x: float | None) -> str:
    return "-" if x is None else f"${x:,.0f}" if x >= 100 else f"${x:,.2f}"


def assumptions(
    service: ServiceModel, opts: PlanOptions, here: MachineInfo, catalog: Catalog | None
) -> tuple[str, ...]:
    """What every number in a plan rests on, one sentence each."""
    ov = opts.overheads
    out = [
        f"Service times: {service.source}; fitted S(n, T) = {_g(service.a_serial_ms)} + "
        f"{_g(service.a_parallel_ms)}/T + n x ({_g(service.b_serial_ms)} + "
        f"{_g(service.b_parallel_ms)}/T) ms, worst point off by {service.max_rel_residual:.1%}; "
        f"measured at batches {list(service.measured_batches)} and threads "
        f"{list(service.measured_threads)}.",
        *_noisy(service),
        "Requests arrive as a Poisson stream, one item each; machines behind a load balancer share "
        "it evenly.",
        f"Serving overheads ({opts.overheads_source}): {ov.front_ms:.3g} ms of front CPU per "
        f"request and {ov.front_batch_ms:.3g} ms per batch, {ov.batch_ms:.3g} ms hand-over per "
        f"batch, {ov.network_ms:g} ms network.",
        "Configurations keep replicas x threads within the machine's cores; the front's CPU shares "
        "them, modelled as a proportional slowdown of the front and "
        f"{ov.interference:g}x that for the replicas (preempted, their caches refilled); a "
        "finished replica waits for a busy front to read its reply.",
        "Max rates are searched up to 99.5% of saturation; max_batch is capped where one batch "
        "would take over half the p99 bound.",
    ]
    if catalog is not None and opts.machine != "local":
        out.append(
            f"Catalog machines: one vCPU is assumed to run like one usable core of this machine "
            f"({here.cpu_model}, {here.usable_cores} cores) times a core factor of "
            f"{opts.core_factor:g} (set --core-factor); every catalog prediction is extrapolated."
        )
        out.append(
            f"Prices: {'spot' if opts.spot else 'on-demand'} list prices from {catalog.path}"
            + (" (dated list prices, see instances.md beside it)" if catalog.bundled else "")
            + ", 730 hours a month, no discounts, storage or network."
        )
    return tuple(out)


def _noisy(service: ServiceModel) -> list[str]:
    """A warning when profile points disagree with the fit: a busy machine while profiling."""
    if service.max_rel_residual <= 0.15 or not service.points:
        return []
    worst = max(
        service.points,
        key=lambda p: (
            abs(float(service.time_ms(p.batch, p.threads)) * service.core_factor - p.mean_ms)
            / p.mean_ms
        ),
    )
    return [
        f"Profile points stray from the fit by up to {service.max_rel_residual:.0%} (worst: batch "
        f"{worst.batch} x {worst.threads} threads, {worst.mean_ms:.3g} ms measured): other "
        "processes were probably using the cores while profiling; the robust fit discounts such "
        "points, but re-profiling on a quiet machine makes the plan firmer."
    ]


def why_text(
    pick: PlanOption | None,
    options: Sequence[PlanOption],
    rate: float,
    p99_ms: float,
    headroom: float,
) -> str:
    """One sentence on why ``pick`` is the recommendation."""
    if pick is None:
        return (
            f"No configuration serves {rate:,.0f} req/s with p99 <= {p99_ms:g} ms and "
            f"{1 - headroom:.0%} spare capacity."
        )
    goal = f"keeps p99 <= {p99_ms:g} ms at {rate:,.0f} req/s with {1 - headroom:.0%} headroom"
    if pick.usd_per_month is None:
        return f"{pick.label()} {goal} on this machine (no price: not in a catalog)."
    others = [o for o in options if o.usd_per_month is not None and o is not pick]
    cost = (
        f"{_money(pick.usd_per_month)}/month ({_money(pick.usd_per_million)} per million requests)"
    )
    if not others:
        return f"{pick.label()} is the only priced option that {goal}: {cost}."
    nxt = min(others, key=lambda o: o.usd_per_month or 0.0)
    other = f"{nxt.machines} x {nxt.provider} {nxt.instance_type}, {nxt.category}"
    saving = 1.0 - (pick.usd_per_month or 0.0) / (nxt.usd_per_month or 1.0)
    if saving < 0.005:
        return f"{pick.label()} is the cheapest option that {goal}: {cost}, tied with {other}."
    return f"{pick.label()} is the cheapest option that {goal}: {cost}, {saving:.0%} below {other}."


def next_step_text(phases: Sequence[PhasePlan], headroom: float) -> list[PhasePlan]:
    """Fill in each phase's 'when to move on' sentence."""
    out = []
    for i, ph in enumerate(phases):
        pick = ph.recommended
        if pick is None:
            text = "Nothing to move from: no configuration meets this phase."
        elif i + 1 < len(phases):
            text = (
                f"Move to the next phase ({phases[i + 1].rate_rps:,.0f} req/s) before sustained "
                f"traffic passes {headroom * pick.max_rate_rps:,.0f} req/s, where this option's "
                "headroom is used up."
            )
        else:
            each = headroom * pick.per_machine_rps
            text = (
                f"Past {headroom * pick.max_rate_rps:,.0f} req/s add one more "
                f"{pick.instance_type} per {each:,.0f} req/s, or plan again with a higher --rps."
            )
        out.append(dataclasses.replace(ph, next_step=text))
    return out


def summary_text(
    name: str, phases: Sequence[PhasePlan], local: Sequence[ShapeResult], p99_ms: float
) -> str:
    """The plan in a few sentences: recommendation per phase, and horizontal vs vertical here."""
    parts = []
    for ph in phases:
        pick = ph.recommended
        if pick is None:
            parts.append(f"{ph.rate_rps:,.0f} req/s: no configuration meets p99 <= {p99_ms:g} ms.")
        else:
            price = (
                f" at {_money(pick.usd_per_month)}/month" if pick.usd_per_month is not None else ""
            )
            parts.append(f"{ph.rate_rps:,.0f} req/s: {pick.label()}{price}.")
    horizontal = [s for s in local if s.config.threads == 1 and s.config.replicas > 1]
    vertical = [s for s in local if s.config.replicas == 1 and s.config.threads > 1]
    if horizontal and vertical:
        h = max(horizontal, key=lambda s: s.estimate.rate_rps)
        v = max(vertical, key=lambda s: s.estimate.rate_rps)
        ratio = h.estimate.rate_rps / max(v.estimate.rate_rps, 1e-9)
        # Within 5% the two are a tie: the model's own inputs are not that precise.
        if ratio > 1.05:
            better = "horizontal beats vertical"
        elif ratio < 1 / 1.05:
            better = "vertical beats horizontal"
        else:
            better = "horizontal and vertical are even"
        parts.append(
            f"On this machine {better}: {h.config.label()} reaches {h.estimate.rate_rps:,.0f} "
            f"req/s, {v.config.label()} {v.estimate.rate_rps:,.0f} req/s at p99 <= {p99_ms:g} ms."
        )
    return f"{name}: " + " ".join(parts)
