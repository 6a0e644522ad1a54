"""The SLOs of a deployment as Prometheus recording and alerting rules, with a promtool test file.

Per model with objectives, one rule group (a slow group never delays another's evaluation):

- recording rules ``modelscale:slo_errors:ratio_rate<window>{model, sli}``: the error ratio of
  each SLI over each window the alerts read (``WINDOWS_S``, 5m to 3d), each straight from the
  server's counters summed over versions. Nothing longer than the longest alert window is
  recorded: long-window rules over many series are what makes rule groups time out.
- alerting rules ``ModelscaleSLOBurn``: one per SLI and alert pair of the SRE workbook
  (``ALERT_PAIRS``), so the labels say which windows fired. Each fires when both windows burn
  faster than the pair's burn rate and the long window holds at least ``slo.min_events``
  requests and ``slo.min_bad_events`` bad ones, so a trickle of traffic cannot page.

The SLIs are the server's (``modelscale.observe.slo`` tracks the same ones):

- availability: bad = requests answered 5xx (503 shedding included), total = every request.
- latency: ``modelscale_request_duration_seconds``: good = the bucket at ``latency.threshold_ms``
  (which must be one of the histogram's bounds), total = its count.

The promtool test file replays, for every model and SLI, a full outage after steady good traffic
(the fastest page fires when the workbook says it should), errors at exactly the budget rate (no
page) and a trickle of failures below ``min_events`` (nothing fires).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

import yaml
from prometheus_client.utils import floatToGoString

from modelscale.config import DeploymentSpec, ModelSpec
from modelscale.errors import InvalidInput
from modelscale.observe.windows import ALERT_PAIRS, WINDOWS_S, AlertPair, window_name

__all__ = ["ALERT_NAME", "PrometheusRules", "prometheus_rules"]

ALERT_NAME = "ModelscaleSLOBurn"
"""The name of every burn-rate alert; its labels say which model, SLI and windows."""

_REQUESTS = "modelscale_requests_total"
_LATENCY = "modelscale_request_duration_seconds"
_ERROR_STATUS = "503"  # the status the test series fail with (any 5xx is bad)

_RULES_HEADER = """\
# Prometheus rules for the SLOs of a modelscale deployment, written by `modelscale monitor rules`.
# The alerts have no `for:`: each also needs its short window (1/12 of the long one) to burn, which
# already ignores a blip and stops the alert soon after the burn does; a `for:` would only delay
# the page.
"""

_TESTS_HEADER = """\
# promtool unit tests of the rules beside this file, written by `modelscale monitor rules`.
# Run: promtool test rules <this file>
"""


@dataclasses.dataclass(frozen=True)
class PrometheusRules:
    """A Prometheus rule file and the promtool test file that checks it."""

    rules: dict[str, Any]
    """The rule file (``groups:``)."""
    tests: dict[str, Any]
    """The ``promtool test rules`` file; its ``rule_files`` names the rule file."""
    alerts: int
    records: int
    models: tuple[str, ...] = ()
    """The models that have objectives, hence rules."""
    warnings: tuple[str, ...] = ()
    """Alerts that can never fire: the objective leaves too little budget for the burn rate."""

    def to_yaml(self) -> str:
        """The rule file as YAML text."""
        return _RULES_HEADER + _dump(self.rules)

    def tests_yaml(self) -> str:
        """The promtool test file as YAML text."""
        return _TESTS_HEADER + _dump(self.tests)


@dataclasses.dataclass(frozen=True)
class _Sli:
    """One objective of one model, with what the rules and the tests need to know of it."""

    model: str
    version: str
    name: str  # 'availability' or 'latency'
    objective: float
    window_days: float
    min_events: int
    min_bad_events: int
    bad: str  # what a bad request did, for the annotations
    le: str | None = None  # latency: the histogram bucket the threshold is

    def error_ratio(self, window: str) -> str:
        """PromQL: the share of bad requests over ``window``, summed over versions."""
        model = f"model={_quote(self.model)}"
        total = f"sum by (model) (rate({_REQUESTS}{{{model}}}[{window}]))"
        if self.le is None:
            errors = f'sum by (model) (rate({_REQUESTS}{{{model},status=~"5.."}}[{window}]))'
            # Without a 5xx yet there is no 5xx series: the ratio is then 0, not absent.
            return f"(\n  {errors}\n  or\n  0 * {total}\n)\n/\n{total}"
        good = f"sum by (model) (rate({_LATENCY}_bucket{{{model},le={_quote(self.le)}}}[{window}]))"
        count = f"sum by (model) (rate({_LATENCY}_count{{{model}}}[{window}]))"
        return f"1 - (\n  {good}\n  /\n  {count}\n)"

    def threshold(self, pair: AlertPair) -> Fraction:
        """The error ratio both windows of ``pair`` must exceed, exactly."""
        return Fraction(repr(pair.burn_rate)) * (1 - Fraction(repr(self.objective)))

    def alert_labels(self, pair: AlertPair) -> dict[str, str]:
        """The labels of the alert of ``pair`` (besides ``alertname``)."""
        return {
            "severity": pair.severity,
            "sli": self.name,
            "model": self.model,
            "long_window": window_name(pair.long_s),
            "short_window": window_name(pair.short_s),
        }

    def annotations(self, pair: AlertPair) -> dict[str, str]:
        """Summary and description of the alert of ``pair``."""
        long, short = window_name(pair.long_s), window_name(pair.short_s)
        budget = 1 - Fraction(repr(self.objective))
        lasts = self.window_days / pair.burn_rate
        spent = pair.burn_rate * pair.long_s / (self.window_days * 86_400)
        return {
            "summary": f"{self.model}: {self.name} error budget burning at "
            f"{_num(pair.burn_rate)}x over {long} and {short}",
            "description": f"Over both the last {long} and the last {short} more than "
            f"{_pct(self.threshold(pair))} of requests to {self.model} {self.bad}, "
            f"{_num(pair.burn_rate)}x the {_pct(budget)} error budget of its "
            f"{_pct(Fraction(repr(self.objective)))} {self.name} objective over "
            f"{_num(self.window_days)} days. At this rate the budget lasts {lasts:.3g} days; "
            f"each {long} spends {spent:.2%} of it.",
        }


def prometheus_rules(
    spec: DeploymentSpec, *, rules_file_name: str = "rules.yaml", source: str = "deploy.yaml"
) -> PrometheusRules:
    """Recording and alerting rules for every SLO in ``spec``, and promtool tests of them.

    Args:
        spec: The deployment; models without ``slo.availability`` or ``slo.latency`` get no rules.
        rules_file_name: What the test file's ``rule_files`` calls the rule file (relative to
            the test file's folder).
        source: The spec's file, named in errors.

    Raises:
        InvalidInput: No model has an objective, or a latency threshold is not a bucket bound
            of the request latency histogram (``server.latency_buckets_ms``).
    """
    slis = [sli for name, model in spec.models.items() for sli in _slis(spec, name, model)]
    if not slis:
        raise InvalidInput(
            f"no model in {source} has an SLO (slo.availability or slo.latency); nothing to write",
            field="config",
        )
    groups: dict[str, list[dict[str, Any]]] = {}
    records = alerts = 0
    warnings: list[str] = []
    for sli in slis:
        rules = groups.setdefault(sli.model, [])
        for seconds in WINDOWS_S:
            rules.append(
                {
                    "record": _record_name(seconds),
                    "expr": sli.error_ratio(window_name(seconds)),
                    "labels": {"model": sli.model, "sli": sli.name},
                }
            )
            records += 1
    for sli in slis:  # alerts after every record, so each reads this evaluation's ratios
        for pair in ALERT_PAIRS:
            groups[sli.model].append(
                {
                    "alert": ALERT_NAME,
                    "expr": _alert_expr(sli, pair),
                    "labels": sli.alert_labels(pair),
                    "annotations": sli.annotations(pair),
                }
            )
            alerts += 1
            if sli.threshold(pair) >= 1:
                warnings.append(
                    f"{sli.model} {sli.name}: the {pair.name} {pair.severity} alert can never "
                    f"fire: it needs more than {_pct(sli.threshold(pair))} of requests to fail "
                    f"(burn rate {_num(pair.burn_rate)} x budget "
                    f"{_pct(1 - Fraction(repr(sli.objective)))})."
                )
    return PrometheusRules(
        rules={
            "groups": [
                {"name": f"modelscale-slo-{model}", "rules": rules}
                for model, rules in groups.items()
            ]
        },
        tests={
            "rule_files": [rules_file_name],
            "evaluation_interval": "1m",
            "tests": _tests(slis),
        },
        alerts=alerts,
        records=records,
        models=tuple(groups),
        warnings=tuple(warnings),
    )


def _slis(spec: DeploymentSpec, name: str, model: ModelSpec) -> list[_Sli]:
    slo = model.slo
    base = _Sli(
        model=name,
        version=next(iter(model.versions)),
        name="availability",
        objective=slo.availability or 0.0,
        window_days=slo.window_days,
        min_events=slo.min_events,
        min_bad_events=slo.min_bad_events,
        bad="were answered 5xx",
    )
    out = [base] if slo.availability is not None else []
    if slo.latency is not None:
        threshold_ms = slo.latency.threshold_ms
        out.append(
            dataclasses.replace(
                base,
                name="latency",
                objective=slo.latency.objective,
                bad=f"took longer than {_num(threshold_ms)} ms",
                le=_bucket_label(spec, name, threshold_ms),
            )
        )
    return out


def _bucket_label(spec: DeploymentSpec, model: str, threshold_ms: float) -> str:
    """The ``le`` label of the bucket at ``threshold_ms``, as the server's histogram writes it."""
    buckets = spec.server.latency_buckets_ms
    for bound in buckets:
        if math.isclose(bound, threshold_ms, rel_tol=1e-9):
            return floatToGoString(bound / 1000)  # the server's bounds are seconds
    below = [b for b in buckets if b < threshold_ms]
    above = [b for b in buckets if b > threshold_ms]
    nearest = " and ".join(f"{_num(b)} ms" for b in (below[-1:] + above[:1]))
    raise InvalidInput(
        f"models.{model}.slo.latency.threshold_ms must be one of the request latency "
        f"histogram's bucket bounds (server.latency_buckets_ms), as the latency SLI counts the "
        f"requests within one. Got {_num(threshold_ms)} ms instead (nearest bounds: {nearest}); "
        f"add {_num(threshold_ms)} to server.latency_buckets_ms or use a bound.",
        field=f"models.{model}.slo.latency.threshold_ms",
    )


def _record_name(seconds: int) -> str:
    return f"modelscale:slo_errors:ratio_rate{window_name(seconds)}"


def _alert_expr(sli: _Sli, pair: AlertPair) -> str:
    labels = f"{{model={_quote(sli.model)},sli={_quote(sli.name)}}}"
    threshold = f"({_num(pair.burn_rate)} * (1 - {_num(sli.objective)}))"
    events = (
        f"sum by (model) (increase({_REQUESTS}{{model={_quote(sli.model)}}}"
        f"[{window_name(pair.long_s)}])) >= {sli.min_events}"
    )
    model, long = f"model={_quote(sli.model)}", window_name(pair.long_s)
    if sli.le is None:
        bad = f'sum by (model) (increase({_REQUESTS}{{{model},status=~"5.."}}[{long}]))'
    else:
        bad = (
            f"(sum by (model) (increase({_LATENCY}_count{{{model}}}[{long}]))"
            f" - sum by (model) (increase({_LATENCY}_bucket{{{model},le={_quote(sli.le)}}}"
            f"[{long}])))"
        )
    return (
        f"{_record_name(pair.long_s)}{labels} > {threshold}\n"
        f"and\n{_record_name(pair.short_s)}{labels} > {threshold}\n"
        f"and on (model)\n{events}\n"
        f"and on (model)\n{bad} >= {sli.min_bad_events}"
    )


# -- the promtool tests ------------------------------------------------------------------------
#
# Each test replays one scenario for one SLI of every model at once (promtool evaluates every rule
# group in every test, so a test per model would cost the square of the models). Every series has
# a sample each minute from 0 on and every evaluation falls on one, so each window starts on a
# sample and rate() needs no extrapolation: Prometheus computes the ratios of the whole-minute
# counts below, to rounding. _firing() predicts the alerts from those counts exactly, and no test
# looks at a time where a ratio is within rounding of a threshold.

_TOO_CLOSE = Fraction(1, 10**9)
"""Relative distance from a threshold within which float rounding could decide an alert."""

_PAGE_HISTORY = max(p.long_s for p in ALERT_PAIRS if p.severity == "page") // 60
"""Minutes of good traffic before an outage: the longest page window fills with it."""


@dataclasses.dataclass(frozen=True)
class _Traffic:
    """One SLI's requests per minute (minute i ends at i + 1 min): good and bad ones."""

    sli: _Sli
    good: tuple[int, ...]
    bad: tuple[int, ...]

    @functools.cached_property
    def _totals(self) -> tuple[list[int], list[int]]:
        """Bad and all requests before each minute."""
        return [0, *itertools.accumulate(self.bad)], [
            0,
            *itertools.accumulate(g + b for g, b in zip(self.good, self.bad, strict=True)),
        ]

    def count(self, end: int, minutes: int) -> tuple[int, int]:
        """(bad, all) requests in the ``minutes`` before minute ``end``."""
        start = max(0, end - minutes)
        bad, total = self._totals
        return bad[end] - bad[start], total[end] - total[start]

    def fires(self, pair: AlertPair, t: int) -> bool | None:
        """Whether the alert of ``pair`` fires at minute ``t``; None if rounding could decide."""
        bad_long, all_long = self.count(t, pair.long_s // 60)
        if all_long < self.sli.min_events or bad_long < self.sli.min_bad_events:
            return False
        threshold = self.sli.threshold(pair)
        states = []
        for seconds in (pair.long_s, pair.short_s):
            bad, total = self.count(t, seconds // 60)
            if total == 0:  # 0/0 is NaN, and NaN > x is false
                return False
            ratio = Fraction(bad, total)
            close = abs(ratio - threshold) <= threshold * _TOO_CLOSE
            states.append(None if close else ratio > threshold)
        if False in states:
            return False
        return None if None in states else True


def _firing(traffic: Sequence[_Traffic], t: int) -> list[tuple[_Sli, AlertPair]] | None:
    """The alerts firing at minute ``t``; None when rounding could decide one."""
    states = {(tr.sli, pair): tr.fires(pair, t) for tr in traffic for pair in ALERT_PAIRS}
    if None in states.values():
        return None
    return [key for key, fires in states.items() if fires]


def _tests(slis: Sequence[_Sli]) -> list[dict[str, Any]]:
    """Per SLI: an outage that pages on time, budget-rate errors that do not, a trickle."""
    out = []
    for name in ("availability", "latency"):
        group = [sli for sli in slis if sli.name == name]
        if group:
            out += [_outage_test(name, group), _budget_test(name, group)]
            out += [test for test in [_trickle_test(name, group)] if test is not None]
    return out


def _rates(sli: _Sli) -> tuple[int, int]:
    """Requests a minute and, of them, errors at the budget rate (exactly, where it can be)."""
    per_minute = max(600, math.ceil(2 * sli.min_events / 60))  # the shortest long window: 1 h
    budget = 1 - Fraction(repr(sli.objective))
    if budget.denominator <= 10**7:
        per_minute = math.ceil(per_minute / budget.denominator) * budget.denominator
    return per_minute, math.floor(per_minute * budget)


def _outage_test(name: str, slis: Sequence[_Sli]) -> dict[str, Any]:
    """Good traffic, then every request fails: the first page of each model fires on time."""
    longest = _PAGE_HISTORY + 1  # the longest page window fills with failures
    traffic = [
        _Traffic(sli, (n,) * _PAGE_HISTORY + (0,) * longest, (0,) * _PAGE_HISTORY + (n,) * longest)
        for sli in slis
        for n in [_rates(sli)[0]]
    ]
    firing_at = functools.cache(lambda t: _firing(traffic, t))
    times, notes = set(), []
    for sli in slis:
        pages = [p for p in ALERT_PAIRS if p.severity == "page" and sli.threshold(p) < 1]
        if not pages:
            continue  # prometheus_rules warns of alerts that can never fire
        page = pages[0]
        after = next(
            (
                t
                for t in range(_PAGE_HISTORY + 1, _PAGE_HISTORY + longest + 1)
                if (firing := firing_at(t)) is not None and (sli, page) in firing
            ),
            None,
        )
        if after is None:  # every minute it could be shown at is too close to call
            continue
        before = max(t for t in range(_PAGE_HISTORY, after) if firing_at(t) is not None)
        times |= {before, after}
        seconds = float(sli.threshold(page)) * page.long_s
        notes.append(
            f"{sli.model} {page.name} after {seconds:.0f} s ({_num(page.burn_rate)} x "
            f"{_pct(1 - Fraction(repr(sli.objective)))} of {window_name(page.long_s)}): "
            f"not at {before}m, at {after}m"
        )
    span = max(times, default=_PAGE_HISTORY + 1)
    return _test(
        f"{name}: every request fails after {window_name(_PAGE_HISTORY * 60)} of good traffic; "
        f"each model's first page fires when the workbook says: {'; '.join(notes) or 'none can'}",
        [_Traffic(tr.sli, tr.good[:span], tr.bad[:span]) for tr in traffic],
        sorted(times) or [span],
    )


def _budget_test(name: str, slis: Sequence[_Sli]) -> dict[str, Any]:
    """Errors at exactly the budget rate for two hours: no page."""
    # The first half hour is clean so the 3-day ticket, whose threshold is exactly this error
    # rate, is decided by that rather than by rounding; the page windows see the budget rate.
    clean, failing = 30, 120
    traffic = [
        _Traffic(sli, (n,) * clean + (n - e,) * failing, (0,) * clean + (e,) * failing)
        for sli in slis
        for n, e in [_rates(sli)]
    ]
    return _test(
        f"{name}: errors at exactly the budget rate page no one",
        traffic,
        range(60, clean + failing + 1, 30),
    )


def _trickle_test(name: str, slis: Sequence[_Sli]) -> dict[str, Any] | None:
    """Every request fails, but fewer than ``min_events`` of them: nothing fires."""
    span = 65  # the 1h/5m page's windows, and more
    traffic = []
    for sli in slis:
        n = min(sli.min_events - 1, span)  # min_events 1: a single failure may alert
        if n > 0:
            bad = tuple((i + 1) * n // span - i * n // span for i in range(span))
            traffic.append(_Traffic(sli, (0,) * span, bad))
    if not traffic:
        return None
    return _test(
        f"{name}: a trickle of failures, fewer than min_events, alerts no one",
        traffic,
        (30, 60, span),
    )


def _test(name: str, traffic: Sequence[_Traffic], times: Sequence[int]) -> dict[str, Any]:
    alert_tests = []
    for t in times:
        firing = _firing(traffic, t)
        if firing is None:  # the scenarios above never test at such a time
            raise ValueError(f"the alerts of {name!r} at {t}m depend on rounding")
        alert_tests.append(
            {
                "eval_time": f"{t}m",
                "alertname": ALERT_NAME,
                "exp_alerts": [
                    {"exp_labels": sli.alert_labels(p), "exp_annotations": sli.annotations(p)}
                    for sli, p in firing
                ],
            }
        )
    return {
        "name": name,
        "interval": "1m",
        "input_series": [series for tr in traffic for series in _series(tr)],
        "alert_rule_test": alert_tests,
    }


def _series(traffic: _Traffic) -> list[dict[str, str]]:
    """The server's counters for ``traffic``, in promtool's expanding notation."""
    sli = traffic.sli
    model, version = f"model={_quote(sli.model)}", f"version={_quote(sli.version)}"
    total = tuple(g + b for g, b in zip(traffic.good, traffic.bad, strict=True))
    if sli.le is None:
        counters = {
            f'{_REQUESTS}{{{model},{version},status="200"}}': traffic.good,
            f"{_REQUESTS}{{{model},{version},status={_quote(_ERROR_STATUS)}}}": traffic.bad,
        }
    else:  # slow requests are answered 200, late
        counters = {
            f'{_REQUESTS}{{{model},{version},status="200"}}': total,
            f"{_LATENCY}_bucket{{{model},{version},le={_quote(sli.le)}}}": traffic.good,
            f"{_LATENCY}_count{{{model},{version}}}": total,
        }
    return [{"series": name, "values": _values(counts)} for name, counts in counters.items()]


def _values(per_minute: Sequence[int]) -> str:
    """A counter that starts at 0 and grows by ``per_minute``: '0+600x360 216000+0x10'."""
    values = [0]
    for n in per_minute:
        values.append(values[-1] + n)
    parts, i = [], 0
    while i < len(values):
        if i + 1 == len(values):
            parts.append(str(values[i]))
            break
        step, j = values[i + 1] - values[i], i + 1
        while j + 1 < len(values) and values[j + 1] - values[j] == step:
            j += 1
        parts.append(f"{values[i]}+{step}x{j - i}")
        i = j + 1
    return " ".join(parts)


# -- text ---------------------------------------------------------------------------------------


def _quote(value: str) -> str:
    """A PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _num(x: float) -> str:
    """14.4 -> '14.4', 6.0 -> '6', 0.999 -> '0.999' (the shortest exact form)."""
    text = repr(float(x))
    return text.removesuffix(".0")


def _pct(x: Fraction) -> str:
    """Fraction(999, 1000) -> '99.9%', without rounding away the digits that matter."""
    d = Decimal(x.numerator) * 100 / Decimal(x.denominator)
    return f"{d.normalize():f}%"


class _Dumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings (PromQL) as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
