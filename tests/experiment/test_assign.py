"""Assignment by a salted hash of the unit key: stable, uniform, independent per experiment,
and a rising share only moves units into the treatment."""

from __future__ import annotations

import itertools

import numpy as np
from scipy import stats

from modelscale.experiment.assign import Assigner


def test_the_same_key_gets_the_same_place_in_every_assigner_of_an_experiment() -> None:
    a, b = Assigner("exp-1"), Assigner("exp-1")
    keys = [f"user-{i}" for i in range(1000)]
    assert [a.position(k) for k in keys] == [b.position(k) for k in keys]


def test_places_are_uniform_and_independent_between_experiments() -> None:
    keys = [f"user-{i}" for i in range(20_000)]
    one = np.array([Assigner("exp-1").position(k) for k in keys])
    two = np.array([Assigner("exp-2").position(k) for k in keys])
    assert ((one >= 0) & (one < 1)).all()
    assert stats.kstest(one, "uniform").pvalue > 0.001
    # Being treated in one experiment says nothing about the other.
    table = np.histogram2d(one < 0.5, two < 0.5, bins=2)[0]
    assert stats.chi2_contingency(table).pvalue > 0.001


def test_raising_the_share_moves_units_only_from_control_to_treatment() -> None:
    a = Assigner("canary")
    keys = [f"u{i}" for i in range(5000)]
    treated = [{k for k in keys if a.position(k) < share} for share in (0.01, 0.05, 0.25, 0.5)]
    assert all(x <= y for x, y in itertools.pairwise(treated))
    assert abs(len(treated[2]) / 5000 - 0.25) < 0.03


def test_no_key_draws_a_fresh_place_per_request() -> None:
    a = Assigner("x")
    draws = {a.position(None) for _ in range(100)}
    assert len(draws) == 100
