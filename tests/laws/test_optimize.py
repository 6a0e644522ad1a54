"""The multi-start engine: exact recovery; identical results serially and in worker processes."""

from __future__ import annotations

import numpy as np
import pytest

from modelscale.errors import InvalidInput
from modelscale.laws.forms import get_form
from modelscale.laws.optimize import Problem, Runner, bootstrap_fits, choose_workers, multistart
from modelscale.progress import ProgressEvent


def _power_c_problem(noise: float = 0.0) -> Problem:
    c = np.geomspace(1e17, 1e21, 25)
    loss = 1.9 + 3.0e4 / c**0.25
    if noise:
        loss = loss * np.exp(np.random.default_rng(0).normal(0, noise, c.shape))
    log_loss = np.log(loss)
    return Problem(np.log(c)[None, :], log_loss, 1e-3, tuple(get_form("power-c").bounds(log_loss)))


def test_multistart_recovers_a_known_single_variable_law() -> None:
    form = get_form("power-c")
    with Runner(1) as runner:
        best = multistart(_power_c_problem(), form.grid(), runner)
    assert best.success and best.n_starts == 150
    assert form.to_public(best.x) == pytest.approx({"E": 1.9, "A": 3.0e4, "alpha": 0.25}, rel=1e-6)


def test_worker_processes_give_the_same_answer() -> None:
    form = get_form("power-c")
    problem = _power_c_problem(noise=0.01)
    index_sets = np.random.default_rng(5).integers(0, problem.n_points, (12, problem.n_points))
    results = []
    for workers in (1, 2):
        with Runner(workers) as runner:
            best = multistart(problem, form.grid(), runner, chunk=40)
            boot = bootstrap_fits(problem, best.x[None, :], index_sets, runner, chunk=5)
        results.append((best.x, boot[0]))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert results[0][1].shape == (12, 3)


def test_progress_counts_every_start() -> None:
    seen: list[ProgressEvent] = []
    with Runner(1) as runner:
        multistart(
            _power_c_problem(),
            get_form("power-c").grid(),
            runner,
            chunk=50,
            on_progress=seen.append,
        )
    assert [(e.stage, e.done, e.total) for e in seen] == [
        ("fit", 0, 150),
        ("fit", 50, 150),
        ("fit", 100, 150),
        ("fit", 150, 150),
    ]


def test_choose_workers() -> None:
    assert choose_workers(3, 10) == 3
    assert choose_workers(None, 10) == 1  # too little work to pay for starting processes
    assert choose_workers(None, 10**7) >= 1
    with pytest.raises(InvalidInput, match="'workers' parameter"):
        choose_workers(0, 10)
