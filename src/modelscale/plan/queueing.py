"""Closed-form queueing results for servers without batching: M/M/c, M/D/1 and M/G/c.

Requests arrive as a Poisson stream of rate ``rate``; ``servers`` replicas each serve one request at
a time, with service times of mean ``mean`` and squared coefficient of variation ``scv`` (0 for
deterministic, 1 for exponential). Times are in any unit, rates per the same unit.

The latency (sojourn) is ``T = W + S`` with the wait's tail ``P(W > x) = min(Pw, C exp(-theta x))``:

- ``Pw = P(W > 0)`` is Erlang C (``rho`` for one server);
- ``C`` is Erlang C for several servers (exact for M/M/c) and the Cramer-Lundberg constant
  ``(1 - rho) / (rate * M'(theta) - 1)`` for one (exact in the tail of M/G/1); at light load that
  constant exceeds ``rho``, hence the cap;
- ``theta`` solves ``theta = rate * (M(theta / c) - 1)`` with ``M`` the moment generating function
  of a gamma service time: ``c * mu - rate`` for M/M/c, the Cramer-Lundberg exponent for M/G/1, and
  the decay rate of M/D/c (whose FCFS servers take every c-th request in turn).

So M/M/1 and M/M/c come out exact, M/D/1 exact in the tail; other M/G/c are approximations that the
batcher simulation cross-checks (see docs/plan.md). ``md1_wait_cdf`` is Erlang's exact M/D/1
waiting-time distribution, kept to check the approximation against.
"""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass

from scipy import integrate, optimize, special, stats

from modelscale.errors import invalid_parameter

__all__ = ["MGcQueue", "erlang_c", "md1_wait_cdf"]

# Below this scv the service time is treated as deterministic: a gamma with shape 1/scv that large
# is numerically a point mass and its functions overflow.
_DETERMINISTIC_SCV = 1e-6


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that a request waits in M/M/c with ``servers`` and load ``rate * mean``.

    Computed through the Erlang B recursion, which stays stable for hundreds of servers.
    """
    c = int(servers)
    a = float(offered_load)
    if c < 1:
        raise invalid_parameter("servers", "an integer >= 1", servers, where="erlang_c")
    if a < 0:
        raise invalid_parameter("offered_load", "a number >= 0", offered_load, where="erlang_c")
    if a >= c:
        return 1.0
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    rho = a / c
    return b / (1.0 - rho + rho * b)


def md1_wait_cdf(t: float, *, rate: float, service: float) -> float:
    """Erlang's exact M/D/1 waiting-time distribution ``P(W <= t)``.

    ``(1 - rho) * sum_{k=0}^{floor(t/D)} (rate (k D - t))^k / k! * exp(-rate (k D - t))``. The terms
    alternate and grow large, so the sum runs in decimal arithmetic with enough digits to survive
    the cancellation; meant for checks, it is slow beyond a few hundred service times.
    """
    rho = rate * service
    if not 0 <= rho < 1:
        raise invalid_parameter("rate", f"below 1/service = {1 / service:g}", rate, where="M/D/1")
    if t < 0:
        return 0.0
    n = math.floor(t / service)
    # Each term is at most e^(rate t) in size; keep that many digits plus 30 for the answer.
    digits = 30 + int(rate * t / math.log(10)) + 1
    with decimal.localcontext() as ctx:
        ctx.prec = digits
        lam, d, tt = decimal.Decimal(rate), decimal.Decimal(service), decimal.Decimal(t)
        total = decimal.Decimal(0)
        fact = decimal.Decimal(1)
        for k in range(n + 1):
            if k:
                fact *= k
            x = lam * (k * d - tt)
            total += (x**k if k else decimal.Decimal(1)) / fact * (-x).exp()
        value = float((1 - decimal.Decimal(rho)) * total)
    return min(max(value, 0.0), 1.0)


@dataclass(frozen=True)
class MGcQueue:
    """Latency of M/G/c (no batching): ``servers`` replicas, one request each at a time.

    Attributes:
        rate: Arrival rate.
        servers: Replicas.
        mean: Mean service time.
        scv: Squared coefficient of variation of the service time.
    """

    rate: float
    servers: int
    mean: float
    scv: float = 0.0

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise invalid_parameter("rate", "a number > 0", self.rate, where="M/G/c")
        if not (self.mean > 0 and math.isfinite(self.mean)):
            raise invalid_parameter("mean", "a number > 0", self.mean, where="M/G/c")
        if self.servers < 1:
            raise invalid_parameter("servers", "an integer >= 1", self.servers, where="M/G/c")
        if self.scv < 0:
            raise invalid_parameter("scv", "a number >= 0", self.scv, where="M/G/c")

    @property
    def utilisation(self) -> float:
        """Busy fraction of each replica, ``rate * mean / servers``."""
        return self.rate * self.mean / self.servers

    @property
    def stable(self) -> bool:
        """Whether the queue has a steady state (utilisation < 1)."""
        return self.utilisation < 1.0

    @property
    def _deterministic(self) -> bool:
        return self.scv < _DETERMINISTIC_SCV

    def _mgf_minus_one(self, x: float) -> float:
        # expm1/log1p: near x = 0 the root finder needs M(x) - 1 without cancellation.
        if self._deterministic:
            return math.expm1(x * self.mean)
        return math.expm1(-math.log1p(-x * self.mean * self.scv) / self.scv)

    def _mgf_prime(self, x: float) -> float:
        if self._deterministic:
            return self.mean * math.exp(x * self.mean)
        return float(self.mean * (1.0 - x * self.mean * self.scv) ** (-1.0 / self.scv - 1.0))

    def decay_rate(self) -> float:
        """``theta``: the exponential decay rate of the waiting-time tail."""
        if not self.stable:
            return 0.0
        c = self.servers

        def f(theta: float) -> float:
            try:
                return self.rate * self._mgf_minus_one(theta / c) - theta
            except OverflowError:
                return math.inf

        pole = math.inf if self._deterministic else c / (self.mean * self.scv)
        hi = min(c / self.mean, pole * 0.5)
        while f(hi) <= 0:
            hi = min(hi * 2.0, (hi + pole) / 2.0)
        lo = hi * 1e-9
        # f is convex with f(0) = 0 and f'(0) < 0, so f < 0 just right of 0: lo brackets the root.
        while f(lo) >= 0 and lo > 1e-300:
            lo *= 1e-3
        return float(optimize.brentq(f, lo, hi, xtol=1e-14 * hi, rtol=1e-12))

    def wait_probability(self) -> float:
        """``P(W > 0)``: Erlang C (``rho`` for one server)."""
        if not self.stable:
            return 1.0
        return erlang_c(self.servers, self.rate * self.mean)

    def tail_constant(self) -> float:
        """``C`` in ``P(W > x) ~ C exp(-theta x)``: Cramer-Lundberg for one server, else Erlang C."""
        if not self.stable:
            return 1.0
        if self.servers == 1:
            theta = self.decay_rate()
            rho = self.utilisation
            return float((1.0 - rho) / (self.rate * self._mgf_prime(theta) - 1.0))
        return erlang_c(self.servers, self.rate * self.mean)

    def sf(self, t: float) -> float:
        """``P(latency > t)`` with ``P(W > x) = min(P(W > 0), C exp(-theta x))``.

        The asymptote alone overstates short waits at light load (its C exceeds rho there), so
        the wait tail is capped by the exact probability of waiting at all.
        """
        if not self.stable:
            return 1.0
        if t <= 0:
            return 1.0
        p0 = self.wait_probability()
        c = self.tail_constant()
        theta = self.decay_rate()
        # Below x_star the asymptote is the smaller term; above it the cap P(W > 0) is.
        x_star = t - math.log(c / p0) / theta if c > p0 else t
        x_star = min(max(x_star, 0.0), t)
        asymptote = c * self._discounted(t, x_star, theta)
        capped = p0 * (self._service_cdf(t) - self._service_cdf(x_star))
        return min(1.0, self._service_sf(t) + asymptote + capped)

    def _service_sf(self, t: float) -> float:
        return 1.0 - self._service_cdf(t)

    def _service_cdf(self, t: float) -> float:
        if self._deterministic:
            return 1.0 if t >= self.mean else 0.0
        k = 1.0 / self.scv
        return float(stats.gamma.cdf(t, k, scale=self.mean / k))

    def _discounted(self, t: float, upper: float, theta: float) -> float:
        """``E[exp(-theta (t - S)); S <= upper]`` for ``upper <= t`` (at most 1, no overflow)."""
        if self._deterministic:
            return math.exp(-theta * (t - self.mean)) if upper >= self.mean else 0.0
        k = 1.0 / self.scv
        beta = k / self.mean
        if theta < beta:
            # Exponential tilting keeps this closed form: gamma(k, beta - theta) up to a constant.
            log_c = k * (math.log(beta) - math.log(beta - theta)) - theta * t
            if log_c < 700:  # else the constant overflows though the product is small: integrate
                return float(math.exp(log_c) * special.gammainc(k, (beta - theta) * upper))
        dist = stats.gamma(k, scale=1.0 / beta)
        val, _ = integrate.quad(lambda x: math.exp(dist.logpdf(x) - theta * (t - x)), 0.0, upper)
        return float(val)

    def quantile(self, q: float = 0.99) -> float:
        """The ``q`` quantile of latency (inf when unstable)."""
        if not 0 < q < 1:
            raise invalid_parameter("q", "a probability in (0, 1)", q, where="quantile")
        if not self.stable:
            return math.inf
        target = 1.0 - q
        hi = self.mean * 2.0
        while self.sf(hi) > target:
            hi *= 2.0
        return float(optimize.brentq(lambda t: self.sf(t) - target, 0.0, hi, xtol=1e-9 * hi))

    def mean_latency(self) -> float:
        """Mean latency: Pollaczek-Khinchine for one server, Allen-Cunneen for several.

        Both are exact for exponential service; P-K is exact for any M/G/1.
        """
        if not self.stable:
            return math.inf
        rho = self.utilisation
        pw = erlang_c(self.servers, self.rate * self.mean)  # rho itself for one server
        return self.mean + pw * self.mean / (self.servers * (1.0 - rho)) * (1.0 + self.scv) / 2.0
