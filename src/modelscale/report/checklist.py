"""The scaling checklist as a scorecard: each item pass / warn / fail / missing with its evidence.

The policy (``checklist.yaml``) sets which items are required, thresholds and how old evidence may
be. A missing item names the command that would produce its evidence. ``Scorecard.exit_code`` is
what a CI gate reads: 1 when any item fails or a required item is missing.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelscale.errors import InvalidInput
from modelscale.report.evidence import Evidence
from modelscale.report.items import ITEMS, Finding
from modelscale.result import jsonable

__all__ = ["CheckPolicy", "Item", "ItemPolicy", "Scorecard", "Status", "check", "load_policy"]


class Status(StrEnum):
    """An item's verdict."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    MISSING = "missing"


class ItemPolicy(BaseModel):
    """How one checklist item is judged."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    required: bool = True
    max_age_days: float | None = Field(default=None, gt=0)
    stale: Status = Status.WARN
    # item-specific thresholds (validated by the item itself)
    tolerance: float | None = Field(default=None, gt=0, le=10)
    max_metric_drop: float | None = Field(default=None, ge=0, le=1)


_DEFAULTS: dict[str, dict[str, Any]] = {
    "scaling_laws": {"required": False},
    "slo": {"max_age_days": 30},
    "drift": {"max_age_days": 30},
    "privacy": {"max_age_days": 30},
    "assessment": {"max_age_days": 7},
}


class CheckPolicy(BaseModel):
    """The whole policy: a default evidence age and per-item settings."""

    model_config = ConfigDict(extra="forbid")

    max_age_days: float = Field(default=90, gt=0)
    items: dict[str, ItemPolicy] = Field(default_factory=dict)

    def item(self, key: str) -> ItemPolicy:
        """The settings of item ``key``: the defaults, overridden by the policy file."""
        base = dict(_DEFAULTS.get(key, {}))
        given = self.items.get(key)
        if given is not None:
            base.update(given.model_dump(exclude_unset=True))
        return ItemPolicy(**base)


def load_policy(path: str | pathlib.Path | None) -> CheckPolicy:
    """Read ``checklist.yaml`` (None: the defaults).

    Raises:
        InvalidInput: the file is missing, not YAML, names an unknown item or has a bad value.
    """
    if path is None:
        return CheckPolicy()
    p = pathlib.Path(path)
    where = f"The policy file {p}"
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{where} does not exist.", field="policy") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(f"{where} could not be read as YAML: {first}", field="policy") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidInput(
            f"{where} must be a mapping (max_age_days, items). Got {type(raw).__name__}.",
            field="policy",
        )
    unknown = (
        sorted(set(raw.get("items") or {}) - set(ITEMS))
        if isinstance(raw.get("items"), dict)
        else []
    )
    if unknown:
        raise InvalidInput(
            f"{where} names unknown checklist item(s) {', '.join(unknown)}. Expected some of: "
            f"{', '.join(ITEMS)}.",
            field="policy",
        )
    try:
        return CheckPolicy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        raise InvalidInput(f"{where} has bad values: {problems}.", field="policy") from None


@dataclass(frozen=True)
class Item:
    """One scored item.

    Attributes:
        key: Its id (``compression``).
        title: What it asks.
        status: Its verdict.
        detail: Why, with the values that decided it.
        runs: The runs it rests on.
        age_days: How old the newest of them is.
        command: What to run when the evidence is missing, stale or failing.
        required: Whether a missing item fails the check.
    """

    key: str
    title: str
    status: Status
    detail: str
    runs: tuple[int, ...] = ()
    age_days: float | None = None
    command: str = ""
    required: bool = True


@dataclass(frozen=True)
class Scorecard:
    """Every item of the checklist for one model."""

    model: str
    items: tuple[Item, ...]

    def count(self, status: Status) -> int:
        """How many items have ``status``."""
        return sum(i.status is status for i in self.items)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed and no required item is missing, else 1."""
        bad = any(
            i.status is Status.FAIL or (i.status is Status.MISSING and i.required)
            for i in self.items
        )
        return 1 if bad else 0

    @property
    def summary(self) -> str:
        """One line: the counts."""
        return f"{self.model}: " + ", ".join(
            f"{self.count(s)} {s.value}" for s in Status if self.count(s)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = jsonable(self)
        out["exit_code"] = self.exit_code
        out["summary"] = self.summary
        return out


def _judge(
    key: str, title: str, evaluate: Callable[..., Finding], ev: Evidence, policy: CheckPolicy
) -> Item | None:
    settings = policy.item(key)
    if not settings.enabled:
        return None
    found = evaluate(ev, settings)
    status = Status(found.status)
    age = None
    if found.runs:
        newest = max(
            (r for r in ev.runs if r.id in found.runs), key=lambda r: r.created_at, default=None
        )
        age = ev.age_days(newest) if newest is not None else None
    max_age = settings.max_age_days or policy.max_age_days
    detail = found.detail
    if age is not None and age > max_age and status in (Status.PASS, Status.WARN):
        status = settings.stale
        detail += f" The evidence is {age:.1f} days old (policy: at most {max_age:g})."
    return Item(
        key=key,
        title=title,
        status=status,
        detail=detail,
        runs=tuple(found.runs),
        age_days=age,
        command=found.command,
        required=settings.required,
    )


def check(ev: Evidence, policy: CheckPolicy | None = None) -> Scorecard:
    """Score ``ev`` against the scaling checklist under ``policy`` (default: the defaults)."""
    policy = policy or CheckPolicy()
    items = tuple(
        item
        for key, (title, evaluate) in ITEMS.items()
        if (item := _judge(key, title, evaluate, ev, policy)) is not None
    )
    return Scorecard(model=ev.name, items=items)
