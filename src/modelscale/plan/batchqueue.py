"""The batch-service queue: one replica that takes everything waiting, up to ``max_batch``, at once.

This is the server of Inoue (arXiv:1912.06322) with a batch cap: Poisson arrivals of rate ``rate``;
whenever the replica is free and requests wait, it takes ``b = min(waiting, B)`` of them as one
batch that takes ``s_b`` (deterministic, non-decreasing in ``b``); a request that finds the replica
idle starts a batch of one at once. That is the front's batcher with ``max_wait = 0`` and one
replica.

Method (exact up to truncation and quadrature):

1. ``Y``, the number waiting when a batch finishes, is a Markov chain:
   ``Y' = max(Y - B, 0) + Poisson(rate * s_b(Y))`` with ``b(Y) = min(max(Y, 1), B)``. Its stationary
   distribution is solved as a banded linear system.
2. A tagged request (Poisson arrivals see time averages) lands in an idle period, latency ``s_1``,
   or at elapsed time ``u`` of a batch that left ``x`` waiting. Then ``p = x + Poisson(rate u) + 1``
   is its place in line, ``m = ceil(p / B)`` the batch that takes it, the batches before it are
   full, and its own batch holds ``min(B, j + Poisson(rate D))`` where ``j = p - (m - 1) B`` and
   ``D = (s_b - u) + (m - 1) s_B`` is its wait. Latency is ``D + s_own``; integrating over ``u``
   (Gauss-Legendre panels) and ``p`` gives ``P(latency > t)``.

With ``B = 1`` this is M/D/1 exactly.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import linalg, optimize, special

from modelscale.errors import invalid_parameter

__all__ = ["BatchServiceQueue"]

_MAX_STATES = 40_000
_TAIL_MASS = 1e-8  # mass left beyond the kept states; p99 needs 1e-2
_PANELS, _NODES = 4, 6


def _poisson_support(mean: float) -> int:
    """How many Poisson values to keep so the dropped tail is below ~1e-15."""
    return int(mean + 12.0 * math.sqrt(mean) + 20)


def _poisson_pmf(mean: float, length: int) -> np.ndarray:
    k = np.arange(length)
    if mean <= 0:
        out = np.zeros(length)
        out[0] = 1.0
        return out
    return np.exp(k * math.log(mean) - mean - special.gammaln(k + 1))


class BatchServiceQueue:
    """Latency distribution of one replica with greedy batching (see the module docstring).

    Args:
        rate: Arrival rate (per time unit of ``service``).
        service: ``s_1 .. s_B``: service time of a batch of each size.
    """

    def __init__(self, *, rate: float, service: np.ndarray | list[float]) -> None:
        s = np.asarray(service, dtype=float)
        if s.ndim != 1 or s.size < 1 or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise invalid_parameter(
                "service", "a non-empty list of positive times", service, where="batch queue"
            )
        if not (rate > 0 and math.isfinite(rate)):
            raise invalid_parameter("rate", "a number > 0", rate, where="batch queue")
        # A bigger batch never finishes sooner here; a fitted curve that dips is noise, so flatten.
        self.service = np.maximum.accumulate(s)
        self.rate = float(rate)
        self.max_batch = int(s.size)
        self.stable = self.rate * self.service[-1] / self.max_batch < 1.0
        self.pi: np.ndarray | None = None
        if self.stable:
            self.pi = self._stationary()
            if self.pi is None:
                self.stable = False
        if self.stable:
            self._prepare()

    @property
    def utilisation(self) -> float:
        """Fraction of time the replica is busy (1 when unstable)."""
        if not self.stable:
            return 1.0
        return self._busy / self._cycle

    # -- step 1: the chain at batch completions -----------------------------------------------------
    def _stationary(self) -> np.ndarray | None:
        k = self._states_needed()
        while k <= _MAX_STATES:
            pi = self._solve(k)
            pi = pi / pi.sum()
            tail = pi[int(k * 0.9) :].sum()
            if np.all(pi >= -1e-9) and tail < _TAIL_MASS:
                pi = np.clip(pi, 0.0, None)
                return pi / pi.sum()
            k *= 2
        return None

    def _states_needed(self) -> int:
        """States to keep: the queue tail decays like z**-n with z**B = exp(rate s_B (z - 1))."""
        big_b, a = self.max_batch, self.rate * self.service[-1]
        base = big_b + _poisson_support(a) + 64
        if a <= 0:
            return base

        def g(log_z: float) -> float:
            return big_b * log_z - a * math.expm1(log_z)

        hi = 1.0
        while g(hi) > 0:
            hi *= 2.0
        lo = hi / 2.0
        while g(lo) <= 0 and lo > 1e-12:
            lo /= 2.0
        log_z = optimize.brentq(g, lo, hi) if g(lo) > 0 else lo
        return int(min(base + math.log(1e10) / log_z * 1.2, _MAX_STATES))

    def _solve(self, k: int) -> np.ndarray:
        """Stationary distribution on 0..k with pi_0 fixed at 1 (then normalised): a banded solve.

        Dropping the last balance equation (they are dependent) and moving pi_0 to the right leaves
        a matrix with B - 1 bands above the diagonal and as many below as a Poisson jump can reach.
        """
        big_b, lam = self.max_batch, self.rate
        ys = np.arange(1, k + 1)  # unknowns pi_1 .. pi_k, column y - 1
        left = np.maximum(ys - big_b, 0)
        size = np.clip(ys, 1, big_b)
        supports = {b: _poisson_support(lam * self.service[b - 1]) for b in range(1, big_b + 1)}
        lower = max(supports.values()) + 1
        upper = big_b
        ab = np.zeros((lower + upper + 1, k))
        rhs = np.zeros(k)
        for b in np.unique(size):
            members = ys[size == b]
            pmf = _poisson_pmf(lam * self.service[b - 1], supports[int(b)])
            rows = left[members - 1][:, None] + np.arange(pmf.size)[None, :]
            cols = np.broadcast_to((members - 1)[:, None], rows.shape)
            vals = np.broadcast_to(pmf[None, :], rows.shape)
            ok = rows <= k - 1  # equation k is the one dropped
            np.add.at(ab, (upper + rows[ok] - cols[ok], cols[ok]), vals[ok])
        # The identity: equation j has -pi_j, at column j - 1.
        diag_rows = np.arange(1, k)
        ab[upper + 1, diag_rows - 1] -= 1.0
        pmf0 = _poisson_pmf(lam * self.service[0], supports[1])
        n0 = min(pmf0.size, k)
        rhs[:n0] -= pmf0[:n0]
        rhs[0] += 1.0
        rest = linalg.solve_banded((lower, upper), ab, rhs)
        return np.concatenate([[1.0], rest])

    # -- step 2: what a tagged request sees ---------------------------------------------------------
    def _prepare(self) -> None:
        assert self.pi is not None  # only called when stable
        pi, big_b, lam, s = self.pi, self.max_batch, self.rate, self.service
        ys = np.arange(pi.size)
        left = np.maximum(ys - big_b, 0)
        size = np.clip(ys, 1, big_b)
        self._busy = float(np.sum(pi * s[size - 1]))
        self._cycle = pi[0] / lam + self._busy
        self._idle = (pi[0] / lam) / self._cycle
        gl_x, gl_w = np.polynomial.legendre.leggauss(_NODES)
        weights, waits, places, extra = [], [], [], []
        for b in range(1, big_b + 1):
            members = size == b
            if not members.any():
                continue
            w_left = np.bincount(left[members], weights=pi[members])
            sb = s[b - 1]
            edges = np.linspace(0.0, sb, _PANELS + 1)
            for lo, hi in itertools.pairwise(edges):
                us = lo + (gl_x + 1.0) * (hi - lo) / 2.0
                ws = gl_w * (hi - lo) / 2.0
                for u, wu in zip(us, ws, strict=True):
                    n_pmf = _poisson_pmf(lam * u, _poisson_support(lam * u))
                    q = np.convolve(w_left, n_pmf) * (wu / self._cycle)
                    keep = np.nonzero(q > 1e-16)[0]
                    p = keep + 1  # place in line: those ahead plus the tagged request
                    m = (p + big_b - 1) // big_b
                    wait = (sb - u) + (m - 1) * s[-1]
                    weights.append(q[keep])
                    waits.append(wait)
                    places.append(p - (m - 1) * big_b)
                    extra.append(lam * wait)
        self._w = np.concatenate(weights)
        self._wait = np.concatenate(waits)
        self._j = np.concatenate(places)
        self._mu = np.concatenate(extra)

    def sf(self, t: float) -> float:
        """``P(latency > t)``."""
        if not self.stable:
            return 1.0
        s, big_b = self.service, self.max_batch
        tau = t - self._wait
        # Batch sizes whose service fits in tau: the own batch must be larger to overrun t.
        fits = np.searchsorted(s, tau, side="right")
        need = fits - self._j  # later arrivals needed beyond j for the own batch to overrun
        over = np.where(
            tau < 0,
            1.0,
            np.where(
                fits >= big_b,
                0.0,
                np.where(need < 0, 1.0, special.pdtrc(np.maximum(need, 0), self._mu)),
            ),
        )
        idle = self._idle if s[0] > t else 0.0
        return float(min(1.0, idle + np.dot(self._w, over)))

    def quantile(self, q: float = 0.99) -> float:
        """The ``q`` quantile of latency (inf when unstable)."""
        if not 0 < q < 1:
            raise invalid_parameter("q", "a probability in (0, 1)", q, where="quantile")
        if not self.stable:
            return math.inf
        target = 1.0 - q
        hi = float(self.service[-1]) * 2.0
        while self.sf(hi) > target:
            hi *= 2.0
        return float(optimize.brentq(lambda t: self.sf(t) - target, 0.0, hi, xtol=1e-7 * hi))

    def mean_latency(self) -> float:
        """Mean latency (inf when unstable)."""
        if not self.stable:
            return math.inf
        s, big_b = self.service, self.max_batch
        # E[s_own] = s_j + sum_i (s_{j+i+1} - s_{j+i}) P(M > i) for i < B - j.
        steps = np.diff(s)
        own = s[self._j - 1].copy()
        for i in range(big_b - 1):
            idx = self._j + i  # batch size j+i -> j+i+1 costs steps[j+i-1]
            ok = idx <= big_b - 1
            if not ok.any():
                break
            own[ok] += steps[idx[ok] - 1] * special.pdtrc(i, self._mu[ok])
        return float(self._idle * s[0] + np.dot(self._w, self._wait + own))

    def mean_batch(self) -> float:
        """Mean number of requests per batch."""
        if not self.stable:
            return float(self.max_batch)
        assert self.pi is not None
        size = np.clip(np.arange(self.pi.size), 1, self.max_batch)
        return float(np.sum(self.pi * size))
