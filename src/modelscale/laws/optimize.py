"""Multi-start L-BFGS-B fitting and bootstrap resampling, serial or over worker processes.

No existing package fits scaling laws the careful way (Huber loss on log loss, log-sum-exp
parametrisation, many starts, summed objective, seeded bootstrap), so this is our own code on top of
``scipy.optimize.minimize``:

1. every start of the grid is run with L-BFGS-B at SciPy's default tolerances, exactly the published
   procedure (Hoffmann et al. 2022; Besiroglu et al. 2024);
2. the best few distinct end points are polished with tolerances near machine precision: the summed
   Huber objective is ~1e-3 at the optimum, where the default stopping rule (an absolute change
   below 2.2e-9) can end a fit early, which matters most for bootstrap fits started nearby;
3. bootstrap resamples start from the point estimate (and any near-equal alternative optimum) with
   the tight tolerances.

Work is cut into chunks so results do not depend on how many processes ran them.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from modelscale.errors import invalid_parameter
from modelscale.laws.forms import huber_objective
from modelscale.progress import OnProgress, report

__all__ = [
    "TIGHT_OPTIONS",
    "MultiStart",
    "Problem",
    "Runner",
    "bootstrap_fits",
    "choose_workers",
    "minimise_from",
    "multistart",
]

TIGHT_OPTIONS: dict[str, Any] = {"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000, "maxfun": 20000}

# Below this many (starts x points) the cost of starting worker processes (~1 s each, they import
# NumPy and SciPy) is more than the work saved.
_PARALLEL_MIN_WORK = 200_000
_MAX_AUTO_WORKERS = 8


@dataclass(frozen=True)
class Problem:
    """Data of one fit in the form the objective wants: logs of variables and losses."""

    logx: np.ndarray
    log_loss: np.ndarray
    delta: float
    bounds: tuple[tuple[float, float], ...]

    @property
    def n_points(self) -> int:
        """Number of points."""
        return int(self.log_loss.shape[0])

    def subset(self, index: np.ndarray) -> Problem:
        """The same problem on the points at ``index`` (repeats allowed, as in a bootstrap)."""
        return Problem(self.logx[:, index], self.log_loss[index], self.delta, self.bounds)


@dataclass(frozen=True)
class MultiStart:
    """Outcome of a multi-start fit.

    Attributes:
        x: Best raw parameters.
        fun: Objective at ``x``.
        success: Whether L-BFGS-B reported convergence for ``x``.
        message: L-BFGS-B's message for ``x``.
        alternatives: Other distinct polished optima as (x, fun), best first.
        n_starts: Starts run.
        n_failed: Starts whose optimisation ended in a non-finite objective.
    """

    x: np.ndarray
    fun: float
    success: bool
    message: str
    alternatives: tuple[tuple[np.ndarray, float], ...]
    n_starts: int
    n_failed: int


def minimise_from(
    problem: Problem, starts: np.ndarray, tight: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Run L-BFGS-B from each start; return end points, objectives, success flags and messages."""
    xs = np.empty_like(starts)
    funs = np.empty(starts.shape[0])
    ok = np.zeros(starts.shape[0], dtype=bool)
    messages: list[str] = []
    options = TIGHT_OPTIONS if tight else {}
    lows = np.array([b[0] for b in problem.bounds])
    highs = np.array([b[1] for b in problem.bounds])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for i, start in enumerate(starts):
            res = minimize(
                huber_objective,
                np.clip(start, lows, highs),
                args=(problem.logx, problem.log_loss, problem.delta),
                jac=True,
                method="L-BFGS-B",
                bounds=problem.bounds,
                options=options,
            )
            success, message = bool(res.success), str(res.message)
            if tight and res.status == 2 and np.isfinite(res.fun):
                # Near machine precision the line search can fail on the Huber kinks although the
                # point is optimal; a default-tolerance restart that cannot improve confirms it.
                again = minimize(
                    huber_objective,
                    res.x,
                    args=(problem.logx, problem.log_loss, problem.delta),
                    jac=True,
                    method="L-BFGS-B",
                    bounds=problem.bounds,
                )
                if again.success and again.fun >= res.fun - 1e-12 * max(1.0, abs(res.fun)):
                    success, message = True, f"{message} (confirmed optimal by a restart)"
                elif again.fun < res.fun:
                    res = again
                    success, message = bool(again.success), str(again.message)
            xs[i] = res.x
            funs[i] = res.fun if np.isfinite(res.fun) else np.inf
            ok[i] = success
            messages.append(message)
    return xs, funs, ok, messages


def _bootstrap_chunk(
    problem: Problem, starts: np.ndarray, index_sets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs = np.empty((index_sets.shape[0], starts.shape[1]))
    funs = np.empty(index_sets.shape[0])
    ok = np.zeros(index_sets.shape[0], dtype=bool)
    for r, index in enumerate(index_sets):
        x, f, s, _ = minimise_from(problem.subset(index), starts, True)
        best = int(np.argmin(f))
        xs[r], funs[r], ok[r] = x[best], f[best], s[best] and np.isfinite(f[best])
    return xs, funs, ok


def choose_workers(workers: int | None, work: int) -> int:
    """Worker processes: ``workers`` if given, else the available cores when the work is big."""
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise invalid_parameter("workers", "an integer >= 1 or None", workers, where="laws fit")
        return workers
    if work < _PARALLEL_MIN_WORK:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform (macOS)
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_AUTO_WORKERS))


def _blas_limits(threads: int) -> Any:
    """Limit BLAS threads (a context manager), or a no-op when threadpoolctl is unavailable.

    L-BFGS-B calls BLAS on 5-vectors; a threaded OpenBLAS then spends most of its time waking and
    spinning threads, which made a grid fit six times slower here, and worse across processes.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # a scikit-learn dependency, so normally present; speed is all it affects
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def _init_worker() -> None:
    _blas_limits(1)  # threadpool_limits applies on creation; the worker keeps it for its lifetime


class Runner:
    """Runs chunks of work in this process or in a pool of worker processes, in submission order.

    Workers are forked when this process has a single thread (fast, and scripts need no
    ``if __name__ == "__main__"`` guard); otherwise, e.g. under the CLI's progress bar thread, they
    are spawned, because forking a process that has threads can deadlock.
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._pool: Executor | None = None
        self._limits: Any = None

    def __enter__(self) -> Runner:
        self._limits = _blas_limits(1)
        self._limits.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes, if any were started, and restore BLAS threading."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._limits is not None:
            self._limits.__exit__(None, None, None)
            self._limits = None

    def map(
        self,
        fn: Callable[..., Any],
        tasks: Sequence[tuple[Any, ...]],
        *,
        sizes: Sequence[int] | None = None,
        on_done: Callable[[int], None] | None = None,
    ) -> list[Any]:
        """``fn(*task)`` for every task, in task order; ``on_done(size)`` after each task."""
        sizes = list(sizes) if sizes is not None else [1] * len(tasks)
        if self.workers <= 1 or len(tasks) <= 1:
            out = []
            for task, size in zip(tasks, sizes, strict=True):
                out.append(fn(*task))
                if on_done:
                    on_done(size)
            return out
        if self._pool is None:
            methods = multiprocessing.get_all_start_methods()
            method = "fork" if threading.active_count() == 1 and "fork" in methods else "spawn"
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context(method),
                initializer=_init_worker,
            )
        futures: dict[Future[Any], int] = {
            self._pool.submit(fn, *task): i for i, task in enumerate(tasks)
        }
        results: list[Any] = [None] * len(tasks)
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            if on_done:
                on_done(sizes[i])
        return results


def _counter(on_progress: OnProgress | None, stage: str, total: int) -> Callable[[int], None]:
    """A ``Runner.map`` hook that reports ``stage`` as finished work adds up to ``total``."""
    done = [0]
    report(on_progress, stage, 0, total)

    def step(size: int) -> None:
        done[0] += size
        report(on_progress, stage, done[0], total)

    return step


def _chunks(n: int, size: int) -> Iterable[slice]:
    for lo in range(0, n, size):
        yield slice(lo, min(n, lo + size))


def _distinct(xs: np.ndarray, funs: np.ndarray, keep: int, tol: float = 0.05) -> list[int]:
    """Indices of up to ``keep`` best end points differing by more than ``tol`` in a parameter."""
    chosen: list[int] = []
    for i in np.argsort(funs, kind="stable"):
        if not np.isfinite(funs[i]):
            break
        if all(np.max(np.abs(xs[i] - xs[j])) > tol for j in chosen):
            chosen.append(int(i))
            if len(chosen) == keep:
                break
    return chosen


def multistart(
    problem: Problem,
    grid: np.ndarray,
    runner: Runner,
    *,
    polish: int = 8,
    chunk: int = 150,
    on_progress: OnProgress | None = None,
    stage: str = "fit",
) -> MultiStart:
    """Fit from every start of ``grid``, then polish the ``polish`` best distinct end points.

    ``on_progress`` is told ``stage`` with the starts done so far.
    """
    slices = list(_chunks(grid.shape[0], chunk))
    parts = runner.map(
        minimise_from,
        [(problem, grid[s], False) for s in slices],
        sizes=[s.stop - s.start for s in slices],
        on_done=_counter(on_progress, stage, grid.shape[0]),
    )
    xs = np.concatenate([p[0] for p in parts])
    funs = np.concatenate([p[1] for p in parts])
    picks = _distinct(xs, funs, polish)
    n_failed = int(np.sum(~np.isfinite(funs)))
    if not picks:
        return MultiStart(xs[0], math.inf, False, "every start failed", (), grid.shape[0], n_failed)
    px, pf, pok, pmsg = minimise_from(problem, xs[picks], True)
    order = [int(i) for i in np.argsort(pf, kind="stable")]
    best = order[0]
    alternatives = tuple((px[i], float(pf[i])) for i in _distinct(px, pf, polish) if i != best)
    return MultiStart(
        x=px[best],
        fun=float(pf[best]),
        success=bool(pok[best]),
        message=pmsg[best],
        alternatives=alternatives,
        n_starts=int(grid.shape[0]),
        n_failed=n_failed,
    )


def bootstrap_fits(
    problem: Problem,
    starts: np.ndarray,
    index_sets: np.ndarray,
    runner: Runner,
    *,
    chunk: int = 5,
    on_progress: OnProgress | None = None,
    stage: str = "bootstrap",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refit each resample (rows of ``index_sets``) from ``starts``; keep each one's best fit.

    ``on_progress`` is told ``stage`` with the resamples done so far.
    """
    slices = list(_chunks(index_sets.shape[0], chunk))
    parts = runner.map(
        _bootstrap_chunk,
        [(problem, starts, index_sets[s]) for s in slices],
        sizes=[s.stop - s.start for s in slices],
        on_done=_counter(on_progress, stage, index_sets.shape[0]),
    )
    if not parts:
        empty = np.empty((0, starts.shape[1]))
        return empty, np.empty(0), np.empty(0, dtype=bool)
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )
