"""The functional forms of scaling laws, their fitting objective, and the fitted law as a value.

Every form is a sum of power-law terms plus an irreducible loss, written in log space with the
log-sum-exp trick so the optimiser works on unconstrained scales:

    chinchilla   L(N, D) = E + A / N^alpha + B / D^beta
    power-n      L(N)    = E + A / N^alpha          (likewise power-d in D, power-c in C)

    log L = LSE(a - alpha log N, b - beta log D, e)      with A = e^a, B = e^b, E = e^e

The objective is the Huber loss (delta 1e-3) of the log-space residuals, summed over points: the
summed form keeps the objective large enough that L-BFGS-B's stopping rules do not end a fit early.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelscale.errors import InvalidInput, ModelscaleWarning, invalid_parameter

__all__ = [
    "FAR_FACTOR",
    "FORMS",
    "ExtrapolationWarning",
    "Form",
    "ScalingLaw",
    "get_form",
    "huber_objective",
]

FORMS = ("chinchilla", "power-n", "power-d", "power-c")

# How far outside the fitted range (as a ratio) a prediction may go before it is called an
# extrapolation worth a warning; the published laws are routinely used 10x beyond their data.
FAR_FACTOR = 10.0

_VARIABLES = {"chinchilla": ("N", "D"), "power-n": ("N",), "power-d": ("D",), "power-c": ("C",)}
_ROLE_TEXT = {"N": "parameters", "D": "tokens", "C": "FLOPs"}


class ExtrapolationWarning(ModelscaleWarning):
    """A prediction was asked for far outside the range of the fitted runs."""


@dataclass(frozen=True)
class Form:
    """One functional form: its variables, parameter layout, starting grid and bounds.

    The raw parameter vector is ``[a_1..a_k, e, alpha_1..alpha_k]`` for k variables, so for the
    Chinchilla form it is ``[a, b, e, alpha, beta]`` as in Hoffmann et al. (2022).
    """

    name: str
    variables: tuple[str, ...]

    @property
    def k(self) -> int:
        """Number of power-law terms."""
        return len(self.variables)

    @property
    def n_params(self) -> int:
        """Number of free parameters."""
        return 2 * self.k + 1

    @property
    def raw_names(self) -> tuple[str, ...]:
        """Names of the raw (log-space) parameters, in vector order."""
        return (*("ab"[: self.k]), "e", *(("alpha", "beta")[: self.k]))

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the law's parameters, in the order they are reported."""
        return ("E", *("AB"[: self.k]), *(("alpha", "beta")[: self.k]))

    def to_public(self, raw: np.ndarray) -> dict[str, float]:
        """Raw vector -> {E, A, (B), alpha, (beta)}."""
        k = self.k
        out = {"E": math.exp(raw[k])}
        for j, name in enumerate("AB"[:k]):
            out[name] = math.exp(raw[j])
        for j, name in enumerate(("alpha", "beta")[:k]):
            out[name] = float(raw[k + 1 + j])
        return {n: out[n] for n in self.param_names}

    def public_matrix(self, raw: np.ndarray) -> np.ndarray:
        """Raw vectors (rows) -> rows of public parameters in ``param_names`` order."""
        raw = np.atleast_2d(raw)
        k = self.k
        cols = [np.exp(raw[:, k])]
        cols += [np.exp(raw[:, j]) for j in range(k)]
        cols += [raw[:, k + 1 + j] for j in range(k)]
        return np.column_stack(cols)

    def bounds(self, log_loss: np.ndarray) -> list[tuple[float, float]]:
        """L-BFGS-B bounds, wide enough that a sensible law never touches them.

        E may not exceed the largest observed loss (every term is positive) and may go down to
        effectively zero; exponents stay in [0, 4] (a larger one would mean the loss falls faster
        than any reported language-model law).
        """
        k = self.k
        e_lo = float(np.min(log_loss)) - 20.0
        e_hi = float(np.max(log_loss))
        return [(-30.0, 80.0)] * k + [(e_lo, e_hi)] + [(0.0, 4.0)] * k

    def grid(self) -> np.ndarray:
        """The starting grid of Hoffmann et al. (2022).

        a, b in 0..25 step 5, e in -1..1 step 0.5, alpha, beta in 0..2 step 0.5: 4,500 starts for
        the Chinchilla form, 150 for a single-variable one.
        """
        a_vals = np.arange(0.0, 30.0, 5.0)
        e_vals = np.arange(-1.0, 1.5, 0.5)
        x_vals = np.arange(0.0, 2.5, 0.5)
        axes = [a_vals] * self.k + [e_vals] + [x_vals] * self.k
        return np.array(list(itertools.product(*axes)), dtype=float)


def get_form(name: str) -> Form:
    """The form called ``name`` (one of ``FORMS``)."""
    if name not in _VARIABLES:
        raise invalid_parameter("form", f"one of {', '.join(FORMS)}", name, where="laws fit")
    return Form(name=name, variables=_VARIABLES[name])


def huber_objective(
    theta: np.ndarray, logx: np.ndarray, log_loss: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Summed Huber loss of log-space residuals and its gradient.

    Args:
        theta: Raw parameters ``[a_1..a_k, e, alpha_1..alpha_k]``.
        logx: Logs of the variables, shape (k, n).
        log_loss: Logs of the observed losses, shape (n,).
        delta: Huber threshold on the log-loss residual.

    Returns:
        The objective and its gradient with respect to ``theta``.
    """
    k = logx.shape[0]
    a, e, alpha = theta[:k], theta[k], theta[k + 1 :]
    terms = np.empty((k + 1, logx.shape[1]))
    terms[:k] = a[:, None] - alpha[:, None] * logx
    terms[k] = e
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    resid = top + np.log(total) - log_loss
    size = np.abs(resid)
    quadratic = size <= delta
    value = np.where(quadratic, 0.5 * resid * resid, delta * (size - 0.5 * delta)).sum()
    slope = np.where(quadratic, resid, delta * np.sign(resid))
    weights *= slope / total
    grad = np.empty_like(theta)
    grad[:k] = weights[:k].sum(axis=1)
    grad[k] = weights[k].sum()
    grad[k + 1 :] = -(weights[:k] * logx).sum(axis=1)
    return float(value), grad


@dataclass(frozen=True)
class ScalingLaw:
    """A fitted law: its form, parameters and the ranges of the runs it was fitted on.

    Attributes:
        form: One of ``FORMS``.
        E: Irreducible loss.
        A: Coefficient of the first (or only) term.
        alpha: Exponent of the first (or only) term.
        B: Coefficient of the data term (Chinchilla form only).
        beta: Exponent of the data term (Chinchilla form only).
        ranges: Role (``N``, ``D``, ``C``) -> (smallest, largest) value among the fitted runs.
    """

    form: str
    E: float
    A: float
    alpha: float
    B: float | None = None
    beta: float | None = None
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def variables(self) -> tuple[str, ...]:
        """The roles the law is a function of."""
        return _VARIABLES[self.form]

    def loss(self, *, warn: bool = True, **values: Any) -> Any:
        """Predicted loss at ``N=..., D=...`` (Chinchilla), or at the one variable of a power form.

        For the Chinchilla form, ``C`` with one of ``N`` or ``D`` is accepted too (C = 6 N D).
        A prediction far outside the fitted range raises an ``ExtrapolationWarning`` when ``warn``.
        """
        unknown = set(values) - {"N", "D", "C"}
        if unknown:
            raise invalid_parameter("values", "N, D or C", sorted(unknown), where="ScalingLaw.loss")
        given = {k: np.asarray(v, dtype=float) for k, v in values.items() if v is not None}
        if self.form == "chinchilla" and "C" in given:
            if "N" in given and "D" not in given:
                given["D"] = given["C"] / (6.0 * given["N"])
            elif "D" in given and "N" not in given:
                given["N"] = given["C"] / (6.0 * given["D"])
        missing = [v for v in self.variables if v not in given]
        if missing:
            raise InvalidInput(
                f"The {self.form} law needs {' and '.join(self.variables)} to predict a loss; "
                f"missing {', '.join(missing)}.",
                field=missing[0],
            )
        for role in self.variables:
            if np.any(~np.isfinite(given[role]) | (given[role] <= 0)):
                bad = given[role].tolist()
                raise invalid_parameter(role, "finite positive numbers", bad, where="loss")
        if warn:
            notes = self.extrapolation(FAR_FACTOR, **{r: given[r] for r in self.variables})
            for note in notes:
                warnings.warn(note, ExtrapolationWarning, stacklevel=2)
        out = self.E + self.A / given[self.variables[0]] ** self.alpha
        if self.form == "chinchilla":
            assert self.B is not None and self.beta is not None  # set for this form by construction
            out = out + self.B / given["D"] ** self.beta
        return float(out) if np.ndim(out) == 0 else out

    def extrapolation(self, far: float = FAR_FACTOR, /, **values: Any) -> list[str]:
        """Messages for the values that lie more than ``far`` times outside the fitted range."""
        notes: list[str] = []
        for role, raw in values.items():
            if raw is None or role not in self.ranges:
                continue
            lo, hi = self.ranges[role]
            arr = np.atleast_1d(np.asarray(raw, dtype=float))
            big, small = float(np.max(arr)), float(np.min(arr))
            if big > hi * far:
                notes.append(
                    f"{role} = {big:.3g} ({_ROLE_TEXT[role]}) is {big / hi:,.0f}x the largest "
                    f"fitted value ({hi:.3g}); the prediction is an extrapolation."
                )
            if small < lo / far:
                notes.append(
                    f"{role} = {small:.3g} ({_ROLE_TEXT[role]}) is {lo / small:,.0f}x below the "
                    f"smallest fitted value ({lo:.3g}); the prediction is an extrapolation."
                )
        return notes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what a stored fit keeps under ``law``)."""
        return {
            "form": self.form,
            "E": self.E,
            "A": self.A,
            "alpha": self.alpha,
            "B": self.B,
            "beta": self.beta,
            "ranges": {k: [float(v[0]), float(v[1])] for k, v in self.ranges.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScalingLaw:
        """Rebuild a law from ``to_dict()`` output (e.g. a stored run's results)."""
        try:
            form = get_form(str(data["form"])).name
            ranges = {str(k): (float(v[0]), float(v[1])) for k, v in dict(data["ranges"]).items()}
            law = cls(
                form=form,
                E=float(data["E"]),
                A=float(data["A"]),
                alpha=float(data["alpha"]),
                B=None if data.get("B") is None else float(data["B"]),
                beta=None if data.get("beta") is None else float(data["beta"]),
                ranges=ranges,
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InvalidInput(
                f"The stored law is incomplete or malformed ({exc!r}); expected form, E, A, alpha, "
                "(B, beta) and ranges.",
                field="law",
            ) from None
        if form == "chinchilla" and (law.B is None or law.beta is None):
            raise InvalidInput("The stored Chinchilla law lacks B or beta.", field="law")
        return law
