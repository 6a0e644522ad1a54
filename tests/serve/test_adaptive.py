"""The SLO batching policy: the service-time curve it learns, and the batches and waits it picks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelscale.batching import RateMeter, ServiceCurve, SloPolicy

MS = 1e-3


def _line(a_ms: float, b_ms: float):
    return lambda n: (a_ms + b_ms * n) * MS


def _feed(curve: ServiceCurve, truth, rng, n: int, *, sizes=(1, 2, 4, 8, 16), noise=0.05):
    for _ in range(n):
        rows = int(rng.choice(sizes))
        curve.observe(rows, truth(rows) * float(rng.lognormal(0.0, noise)))


def test_curve_learns_the_line_from_noisy_batches() -> None:
    rng = np.random.default_rng(0)
    truth = _line(3.0, 8.0)
    curve = ServiceCurve(span=32)
    _feed(curve, truth, rng, 400)
    for n in (1, 4, 8, 16):
        assert curve.mean(n) == pytest.approx(truth(n), rel=0.08)
    # The tail is the 95th percentile of observed over predicted: lognormal(0, 0.05) -> ~1.09.
    assert 1.03 < curve.tail < 1.2


def test_curve_is_robust_to_rare_slow_batches() -> None:
    rng = np.random.default_rng(1)
    truth = _line(3.0, 8.0)
    curve = ServiceCurve(span=32)
    for i in range(600):
        rows = int(rng.choice((1, 2, 4, 8)))
        slow = 6.0 if i % 25 == 0 else 1.0  # 4% of batches hit a 6x stall
        curve.observe(rows, truth(rows) * slow * float(rng.lognormal(0.0, 0.03)))
    for n in (1, 4, 8):
        assert curve.mean(n) == pytest.approx(truth(n), rel=0.1)


def test_curve_follows_the_machine_when_it_slows_down_and_speeds_up() -> None:
    rng = np.random.default_rng(2)
    fast, slow = _line(3.0, 8.0), _line(6.0, 16.0)
    curve = ServiceCurve(span=32)
    _feed(curve, fast, rng, 300)
    _feed(curve, slow, rng, 600)
    assert curve.mean(8) == pytest.approx(slow(8), rel=0.12)
    _feed(curve, fast, rng, 600)
    assert curve.mean(8) == pytest.approx(fast(8), rel=0.12)


def test_curve_starts_from_a_prior_and_pins_the_slope_while_sizes_do_not_vary() -> None:
    curve = ServiceCurve(prior=(3 * MS, 8 * MS), span=32)
    assert curve.known
    assert curve.mean(4) == pytest.approx(35 * MS)
    for _ in range(200):  # only batches of 4, 20% slower than the prior said
        curve.observe(4, 42 * MS)
    assert curve.mean(4) == pytest.approx(42 * MS, rel=0.03)
    assert 0 < curve.b < 20 * MS  # the slope stays sane: no division by zero variance


def test_a_curve_without_prior_guesses_from_its_first_batch_and_corrects() -> None:
    truth = _line(3.0, 8.0)
    curve = ServiceCurve(span=32)
    assert not curve.known
    curve.observe(1, truth(1))
    assert curve.mean(1) == pytest.approx(truth(1))
    # The guess must not over-estimate larger batches (they would never be tried).
    assert curve.mean(8) <= truth(8)
    rng = np.random.default_rng(3)
    _feed(curve, truth, rng, 200, sizes=(1, 2, 3, 4))
    assert curve.mean(8) == pytest.approx(truth(8), rel=0.1)


def test_curve_ignores_nonsense_observations() -> None:
    curve = ServiceCurve(prior=(1 * MS, 1 * MS))
    for rows, s in ((0, 0.01), (4, 0.0), (4, -1.0), (4, math.nan), (4, math.inf)):
        curve.observe(rows, s)
    assert curve.batches == 0
    assert curve.mean(4) == pytest.approx(5 * MS)


def test_rate_meter_tracks_rows_per_second() -> None:
    meter = RateMeter(tau_s=1.0)
    assert meter.rate(0.0) == 0.0
    t = _steady(meter, 200, 10)
    assert meter.rate(t) == pytest.approx(200, rel=0.05)
    assert meter.rate(t + 3.0) < 200 * math.exp(-2.9)  # decays once traffic stops


def test_rate_meter_reads_a_burst_from_idle_at_its_rate_at_once() -> None:
    # 300 rows/s from nothing: after 0.2 s a plain decayed count reads ~55/s (18%); the meter
    # divides by the share of its window it has seen.
    meter = RateMeter(tau_s=1.0)
    t = _steady(meter, 300, 0.2)
    assert meter.rate(t) == pytest.approx(300, rel=0.1)
    one = RateMeter(tau_s=1.0)
    one.add(1, 5.0)  # a single row reads as at most 20 rows/s, not infinitely many
    assert 0 < one.rate(5.0) <= 21


def _steady(meter: RateMeter, rate: float, seconds: float) -> float:
    """One row every 1 / ``rate`` s for ``seconds``; the time of the last."""
    t = 0.0
    for _ in range(round(rate * seconds)):
        t += 1 / rate
        meter.add(1, t)
    return t


def _policy(a_ms=3.0, b_ms=8.0, objective_ms=100.0, max_batch=64, **kw) -> SloPolicy:
    curve = ServiceCurve(prior=(a_ms * MS, b_ms * MS), span=max_batch)
    curve.tail = 1.0
    return SloPolicy(objective_ms * MS, max_batch, curve=curve, **kw)


def test_cap_is_the_largest_batch_whose_time_fits_half_the_objective() -> None:
    p = _policy()  # half of 100 ms: 3 + 8n <= 50 -> n = 5
    assert p.cap() == 5
    assert _policy(objective_ms=200).cap() == 12  # 100 ms: n = 12
    assert _policy(objective_ms=200, max_batch=6).cap() == 6  # max_batch bounds it
    assert _policy(objective_ms=10).cap() == 1  # below one row: batches of 1
    assert _policy(objective_ms=10).below_one_row() and not _policy().below_one_row()
    # One row fits half the objective but two do not: batches of 1, and no warning.
    assert _policy(objective_ms=25).cap() == 1 and not _policy(objective_ms=25).below_one_row()
    slow = _policy()
    slow.service.observe(4, 0.070)  # the machine is twice as slow: the cap follows
    for _ in range(60):
        slow.service.observe(4, 0.070)
    assert slow.cap() == 2


def test_need_is_the_smallest_batch_that_keeps_up() -> None:
    p = _policy(spare=1.15)
    assert p.need(0.0, 2, 4) == 1
    assert p.need(50.0, 2, 4) == 1  # 2 replicas of batch 1 (11 ms): 181 rows/s
    # 180 rows/s x 1.15 over 2 replicas = 103.5/s each: n / (3 + 8n) ms >= 103.5/s -> n = 2
    assert p.need(180.0, 2, 4) == 2
    assert p.need(200.0, 2, 4) == 4  # 115/s each: 5 rows (116/s), beyond the cap
    assert p.need(10_000.0, 2, 4) == 4  # overloaded: the cap


def test_decide_sends_at_once_at_low_load() -> None:
    p = _policy()
    d = p.decide(age_s=0.0, rows=1, replicas=2, now=0.0)
    assert (d.rows, d.wait_s) == (1, 0.0)


def test_decide_waits_for_the_rows_the_rate_needs_but_not_past_the_oldest_request() -> None:
    p = _policy(spare=1.15)
    t = _steady(p.meter, 180, 4)
    d = p.decide(age_s=0.0, rows=1, replicas=2, now=t)
    assert d.rows == 0 and d.need == 2
    assert d.wait_s == pytest.approx(1 / 180, rel=0.1)  # one more row at 180/s
    # An old request cannot wait: 95 ms budget - 80 ms age leaves no time for a batch of 2.
    late = p.decide(age_s=0.080, rows=1, replicas=2, now=t)
    assert late.rows == 1 and late.wait_s == 0.0
    # Enough rows: sent at once, as many as the oldest request's slack and the cap allow.
    full = p.decide(age_s=0.0, rows=10, replicas=2, now=t)
    assert full.rows == 5 and full.wait_s == 0.0  # the cap
    tight = p.decide(age_s=0.060, rows=10, replicas=2, now=t)  # 35 ms left: 3 + 8n <= 35 -> 4
    assert tight.rows == 4
    tighter = p.decide(age_s=0.075, rows=10, replicas=2, now=t)  # 20 ms left -> 2
    assert tighter.rows == 2


def test_decide_honours_a_wait_bound() -> None:
    p = _policy(max_wait_s=0.002, spare=1.15)
    t = _steady(p.meter, 200, 2)
    d = p.decide(age_s=0.0, rows=1, replicas=2, now=t)
    assert d.wait_s == pytest.approx(0.002)
    assert p.decide(age_s=0.003, rows=1, replicas=2, now=t).rows == 1


def test_decide_without_any_knowledge_sends_one_row_to_learn_from() -> None:
    p = SloPolicy(0.1, 8)
    assert p.decide(age_s=0.0, rows=20, replicas=1, now=0.0) == (1, 0.0, 1)
    assert p.predict(ahead_rows=100, rows=1, busy_until=[], free=1, now=0.0) == 0.0


def test_predict_walks_the_queue_in_batches_of_the_cap() -> None:
    p = _policy()  # cap 5
    idle = p.predict(ahead_rows=0, rows=1, busy_until=[], free=2, now=0.0)
    assert idle == pytest.approx(11 * MS)
    # Both replicas busy for 10 and 20 ms more; 8 rows ahead: the first replica takes 5 of them
    # at 10 ms, the second the other 3 and this request at 20 ms: 20 + S(4) = 20 + 35 = 55 ms.
    behind = p.predict(ahead_rows=8, rows=1, busy_until=[0.010, 0.020], free=0, now=0.0)
    assert behind == pytest.approx(55 * MS)
    # 13 ahead: 5 at 10 ms, 5 at 20 ms, then 3 + this one when the first is free again at
    # 10 + S(5) = 53 ms: 53 + 35 = 88 ms.
    far = p.predict(ahead_rows=13, rows=1, busy_until=[0.010, 0.020], free=0, now=0.0)
    assert far == pytest.approx(88 * MS)
    # A replica's expected end already passed counts as free now.
    assert p.predict(ahead_rows=0, rows=1, busy_until=[-1.0], free=0, now=0.0) == pytest.approx(
        11 * MS
    )


def test_predict_fills_its_own_batch_as_the_rate_will() -> None:
    # With arrivals the replicas barely keep up with, the batch a request joins fills to the
    # cap behind it: it is predicted at the cap's time, not at the rows queued when it came.
    p = _policy()  # cap 5, S(n) = 3 + 8 n ms
    t = _steady(p.meter, 220, 3.0)  # 110 rows/s per replica: batches of 3 keep up (3 / 27 ms)
    assert p.need(p.meter.rate(t), 2, p.cap()) == 3
    alone = p.predict(ahead_rows=0, rows=1, busy_until=[t + 0.010, t + 0.020], free=0, now=t)
    assert alone == pytest.approx(10 * MS + p.service.mean(3), rel=0.01)
    # Without traffic the same request runs alone.
    q = _policy()
    assert q.predict(ahead_rows=0, rows=1, busy_until=[0.010, 0.020], free=0, now=0.0) == (
        pytest.approx(10 * MS + q.service.mean(1))
    )


def test_decide_gathers_dense_traffic_briefly_when_the_objective_has_slack() -> None:
    # A tiny model: 0.3 ms + 0.01 ms a row. At 2,000 rows/s one row keeps up, but rows arrive
    # every 0.5 ms: the batch waits up to 5% of the 95 ms budget for about 9 more.
    p = _policy(a_ms=0.3, b_ms=0.01)
    t = _steady(p.meter, 2000, 2)
    d = p.decide(age_s=0.0, rows=1, replicas=2, now=t)
    assert d.rows == 0
    assert d.wait_s == pytest.approx(0.05 * 0.095)
    assert d.need in (9, 10)  # the row there and the ~9.5 expected meanwhile
    # Once the oldest row has waited that long, the batch goes with what it has.
    assert p.decide(age_s=0.005, rows=3, replicas=2, now=t).rows == 3
    # Sparse traffic (one row in 10 ms) is not gathered: the row is sent at once.
    sparse = _policy(a_ms=0.3, b_ms=0.01)
    sparse.meter.add(1, 0.0)
    sparse.meter.add(1, 0.01)
    assert sparse.decide(age_s=0.0, rows=1, replicas=2, now=0.01).rows == 1
