"""Closed forms: Erlang C, M/M/1, M/M/c and M/D/1."""

from __future__ import annotations

import math

import pytest
from scipy import optimize

from modelscale.errors import InvalidInput
from modelscale.plan import MGcQueue, erlang_c, md1_wait_cdf


def test_erlang_c_known_values() -> None:
    assert erlang_c(1, 0.7) == pytest.approx(0.7)
    # c = 2, a = 1: C = (a^2/2 * 2/(2-1)) / (1 + a + a^2/2 * 2/(2-1)) = 1/3.
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(3, 3.5) == 1.0
    assert 0 < erlang_c(400, 380.0) < 1  # stable for many servers


def test_mm1_latency_is_exponential() -> None:
    q = MGcQueue(rate=8.0, servers=1, mean=0.1, scv=1.0)  # mu = 10
    assert q.quantile(0.99) == pytest.approx(math.log(100) / (10 - 8), rel=1e-6)
    assert q.mean_latency() == pytest.approx(1 / (10 - 8), rel=1e-9)
    assert q.sf(0.3) == pytest.approx(math.exp(-2 * 0.3), rel=1e-6)


@pytest.mark.parametrize(("c", "rate"), [(2, 1.5), (4, 3.6), (8, 5.0)])
def test_mmc_sojourn_matches_the_closed_form(c: int, rate: float) -> None:
    mu = 1.0
    q = MGcQueue(rate=rate, servers=c, mean=1 / mu, scv=1.0)
    pw = erlang_c(c, rate / mu)
    assert q.mean_latency() == pytest.approx(1 / mu + pw / (c * mu - rate), rel=1e-9)
    # Exact M/M/c sojourn tail: S ~ Exp(mu) plus, with probability Pw, W ~ Exp(c mu - rate).
    d = c * mu - rate
    for t in (0.5, 2.0, 5.0):
        tail_w_plus_s = (d * math.exp(-mu * t) - mu * math.exp(-d * t)) / (d - mu)
        exact = (1 - pw) * math.exp(-mu * t) + pw * tail_w_plus_s
        assert q.sf(t) == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize("rho", [0.5, 0.8, 0.95])
def test_md1_p99_matches_erlangs_exact_distribution(rho: float) -> None:
    service = 2.0
    q = MGcQueue(rate=rho / service, servers=1, mean=service, scv=0.0)

    def over(t: float) -> float:
        return 1 - md1_wait_cdf(t, rate=rho / service, service=service) - 0.01

    exact_wait = optimize.brentq(over, 0.0, 200 * service)
    assert q.quantile(0.99) == pytest.approx(exact_wait + service, rel=0.01)
    assert q.mean_latency() == pytest.approx(service + rho * service / (2 * (1 - rho)), rel=1e-9)


def test_md1_exact_cdf_basics() -> None:
    assert md1_wait_cdf(0.0, rate=0.5, service=1.0) == pytest.approx(0.5)  # P(no wait) = 1 - rho
    assert md1_wait_cdf(-1.0, rate=0.5, service=1.0) == 0.0
    assert md1_wait_cdf(60.0, rate=0.9, service=1.0) == pytest.approx(1.0, abs=1e-3)


def test_unstable_and_bad_input() -> None:
    q = MGcQueue(rate=3.0, servers=2, mean=1.0)
    assert not q.stable
    assert q.quantile(0.99) == math.inf
    assert q.sf(100.0) == 1.0
    with pytest.raises(InvalidInput, match="rate"):
        MGcQueue(rate=0.0, servers=1, mean=1.0)
    with pytest.raises(InvalidInput, match="servers"):
        MGcQueue(rate=1.0, servers=0, mean=1.0)
    with pytest.raises(InvalidInput, match="rate"):
        md1_wait_cdf(1.0, rate=2.0, service=1.0)


def test_many_servers_near_deterministic_service() -> None:
    # theta / c passes the gamma rate here, so the tail takes the integral path: no overflow.
    q = MGcQueue(rate=60 * 0.9 / 8.0, servers=60, mean=8.0, scv=0.01)
    ts = [8.5, 10.0, 12.0, 16.0, 30.0]
    tails = [q.sf(t) for t in ts]
    assert all(0.0 <= a <= 1.0 for a in tails)
    assert tails == sorted(tails, reverse=True)
    assert 8.0 < q.quantile(0.99) < 30.0
