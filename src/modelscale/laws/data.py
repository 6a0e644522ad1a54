"""Training-run tables for scaling-law fits: reading, column roles, derived columns, reductions.

A run table has up to four roles: ``N`` (parameters), ``D`` (training tokens), ``C`` (training
FLOPs) and ``L`` (final loss). Missing ``D``, ``N`` or ``C`` are derived from the other two through
C = 6 N D. Runs repeated over hyper-parameters (several learning rates for one (N, D)) are reduced
to the best (lowest-loss) run per point, and how many rows that removed is kept for the report.
"""

from __future__ import annotations

import csv
import math
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from modelscale.errors import InvalidInput, invalid_parameter

__all__ = [
    "DEFAULT_COLUMN_NAMES",
    "ROLES",
    "RunsTable",
    "drop_highest_loss",
    "load_runs",
    "parse_columns",
    "reduce_best_per_point",
]

ROLES = ("N", "D", "C", "L")

_ROLE_TEXT = {"N": "parameters", "D": "training tokens", "C": "training FLOPs", "L": "loss"}

# Matched case-insensitively, first hit wins; the Epoch file uses "Model Size"/"Training FLOP" and
# the (Mis)Fitting file "N"/"D"/"C", so both work without --columns.
DEFAULT_COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "N": ("params", "n", "parameters", "model size", "model_size", "num_params", "n_params"),
    "D": ("tokens", "d", "training tokens", "training_tokens", "train_tokens", "num_tokens"),
    "C": ("flops", "c", "training flop", "training flops", "training_flops", "compute"),
    "L": ("loss", "l", "final_loss", "eval_loss", "val_loss"),
}

# Role aliases accepted on the left of --columns, so "params=size" works as well as "N=size".
_ROLE_ALIASES = {
    "n": "N",
    "params": "N",
    "d": "D",
    "tokens": "D",
    "c": "C",
    "flops": "C",
    "l": "L",
    "loss": "L",
}


@dataclass(frozen=True)
class RunsTable:
    """Training runs as arrays, one entry per point, with where each came from.

    Attributes:
        N: Parameters per run, or None when unknown.
        D: Training tokens per run, or None when unknown.
        C: Training FLOPs per run, or None when unknown.
        L: Final loss per run.
        rows: The 1-based data-row number in the source of each point.
        source: A path or a short description of where the runs came from.
        columns: Role -> source column name for the roles read from the source.
        derived: Roles computed through C = 6 N D, with the formula used.
        n_rows: Rows read from the source.
        n_reduced: Rows removed by keeping the best run per point.
        dropped_rows: Rows removed as the highest-loss ones.
    """

    L: np.ndarray
    N: np.ndarray | None = None
    D: np.ndarray | None = None
    C: np.ndarray | None = None
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    source: str = "arrays"
    columns: Mapping[str, str] = field(default_factory=dict)
    derived: Mapping[str, str] = field(default_factory=dict)
    n_rows: int = 0
    n_reduced: int = 0
    dropped_rows: tuple[int, ...] = ()

    def __len__(self) -> int:
        return int(self.L.shape[0])

    def role(self, name: str) -> np.ndarray | None:
        """The array of one role (``N``, ``D``, ``C`` or ``L``)."""
        out: np.ndarray | None = getattr(self, name)
        return out

    def take(self, index: np.ndarray) -> RunsTable:
        """The subset of points at ``index`` (row bookkeeping kept)."""

        def sub(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[index]

        return replace(
            self,
            L=self.L[index],
            N=sub(self.N),
            D=sub(self.D),
            C=sub(self.C),
            rows=self.rows[index],
        )


def parse_columns(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """Parse ``"N=params,D=tokens,C=flops,L=loss"`` (or a mapping) into role -> column name.

    Args:
        spec: The mapping text of ``--columns``, a mapping, or None for automatic detection.

    Returns:
        Role (``N``, ``D``, ``C``, ``L``) -> column name, only for the roles given.
    """
    if spec is None:
        return {}
    items: list[tuple[str, str]]
    if isinstance(spec, str):
        items = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            if "=" not in part:
                raise invalid_parameter(
                    "columns", "a list like 'N=params,D=tokens,C=flops,L=loss'", spec, where="laws"
                )
            role, _, name = part.partition("=")
            items.append((role.strip(), name.strip()))
    else:
        items = [(str(k), str(v)) for k, v in spec.items()]
    out: dict[str, str] = {}
    for role, name in items:
        key = _ROLE_ALIASES.get(role.lower())
        if key is None:
            raise invalid_parameter(
                "columns",
                "roles among N, D, C, L (or params, tokens, flops, loss)",
                role,
                where="laws",
            )
        if not name:
            raise invalid_parameter("columns", f"a column name for role {key}", "", where="laws")
        out[key] = name
    return out


def _read_csv(path: pathlib.Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, fields) rows of a CSV file, or InvalidInput saying what is wrong."""
    if not path.exists():
        raise InvalidInput(f"The runs file {path} does not exist.", field="runs")
    if not path.is_file():
        raise InvalidInput(f"The runs file {path} is not a file.", field="runs")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{path} is not a CSV file: it is not UTF-8 text (byte {exc.start}). Expected a header "
            "row such as params,tokens,loss and one row per training run.",
            field="runs",
        ) from None
    except OSError as exc:
        raise InvalidInput(
            f"Cannot read the runs file {path}: {exc.strerror}.", field="runs"
        ) from None
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise InvalidInput(
            f"The runs file {path} is empty; expected a CSV with a header row.", field="runs"
        )
    first = next(line for line in lines if line.strip())
    # A tab- or semicolon-separated export is still a table; anything else must use commas.
    delimiter = "," if "," in first else ("\t" if "\t" in first else (";" if ";" in first else ","))
    if "\x00" in text:
        raise InvalidInput(f"{path} is not a CSV file: it contains NUL bytes.", field="runs")
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header: list[str] | None = None
        rows: list[tuple[int, list[str]]] = []
        for fields in reader:
            if not fields or all(not f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip() for f in fields]
                continue
            if len(fields) != len(header):
                raise InvalidInput(
                    f"{path} is not a well-formed CSV: row {len(rows) + 1} "
                    f"(line {reader.line_num}) "
                    f"has {len(fields)} fields but the header has {len(header)}.",
                    field="runs",
                )
            rows.append((reader.line_num, fields))
    except csv.Error as exc:
        raise InvalidInput(
            f"{path} is not a CSV file: {exc} (line {reader.line_num}).", field="runs"
        ) from None
    if header is None or len(header) < 2:
        raise InvalidInput(
            f"{path} does not look like a CSV file: expected a header row with comma-separated "
            f"column names such as params,tokens,loss; found {first[:60]!r}.",
            field="runs",
        )
    return header, rows


def _resolve_columns(header: Sequence[str], given: Mapping[str, str], where: str) -> dict[str, str]:
    lower = {h.lower(): h for h in header}
    out: dict[str, str] = {}
    for role, name in given.items():
        if name in header:
            out[role] = name
        elif name.lower() in lower:
            out[role] = lower[name.lower()]
        else:
            raise InvalidInput(
                f"Column '{name}' (role {role}, {_ROLE_TEXT[role]}) is not in {where}. "
                f"Columns there: {', '.join(header)}. Fix 'columns'.",
                field="columns",
            )
    for role in ROLES:
        if role in out:
            continue
        for candidate in DEFAULT_COLUMN_NAMES[role]:
            if candidate in lower and lower[candidate] not in out.values():
                out[role] = lower[candidate]
                break
    return out


def _parse_column(
    values: Sequence[str], lines: Sequence[int], *, column: str, role: str, where: str
) -> np.ndarray:
    out = np.empty(len(values))
    for i, (raw, line) in enumerate(zip(values, lines, strict=True)):
        text = raw.strip()
        try:
            value = float(text)
        except ValueError:
            got = repr(text) if text else "an empty cell"
            raise InvalidInput(
                f"Column '{column}' ({_ROLE_TEXT[role]}) has {got} in row {i + 1} (line {line}) of "
                f"{where}; expected a positive number. Fix or remove that row.",
                field=column,
            ) from None
        if not math.isfinite(value) or value <= 0:
            kind = "a non-finite" if not math.isfinite(value) else "a non-positive"
            raise InvalidInput(
                f"Column '{column}' ({_ROLE_TEXT[role]}) has {kind} value {text} in row {i + 1} "
                f"(line {line}) of {where}; expected finite positive numbers. "
                "Fix or remove that row.",
                field=column,
            )
        out[i] = value
    return out


def _check_array(name: str, values: object, n: int | None) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise invalid_parameter(
            name, "a sequence of positive numbers", values, where="laws"
        ) from None
    if n is not None and arr.shape[0] != n:
        raise invalid_parameter(
            name, f"{n} values, as many as the losses", arr.shape[0], where="laws"
        )
    bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0))
    if bad.size:
        i = int(bad[0])
        raise InvalidInput(
            f"Column '{name}' ({_ROLE_TEXT[name]}) has the value {arr[i]!r} at row {i + 1}; "
            "expected finite positive numbers.",
            field=name,
        )
    return arr


def _derive(
    N: np.ndarray | None, D: np.ndarray | None, C: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, dict[str, str]]:
    derived: dict[str, str] = {}
    if D is None and N is not None and C is not None:
        D, derived["D"] = C / (6.0 * N), "D = C / (6 N)"
    elif N is None and D is not None and C is not None:
        N, derived["N"] = C / (6.0 * D), "N = C / (6 D)"
    if C is None and N is not None and D is not None:
        C, derived["C"] = 6.0 * N * D, "C = 6 N D"
    return N, D, C, derived


def load_runs(
    source: str | pathlib.Path | Mapping[str, object] | RunsTable,
    *,
    columns: str | Mapping[str, str] | None = None,
) -> RunsTable:
    """Read training runs from a CSV file or from arrays, map column roles and derive missing ones.

    Args:
        source: A CSV path, a mapping of column name -> values, or a table (returned as is).
        columns: Role -> column name (``{"N": "params"}`` or ``"N=params,L=loss"``); roles not given
            are detected from common names (``params``/``Model Size``/``N``, ``tokens``/``D``,
            ``flops``/``Training FLOP``/``C``, ``loss``).

    Returns:
        The runs, one point per row, every value checked to be finite and positive.
    """
    if isinstance(source, RunsTable):
        return source
    given = parse_columns(columns)
    if isinstance(source, Mapping):
        header = [str(k) for k in source]
        mapping = _resolve_columns(header, given, "the given columns")
        if "L" not in mapping:
            raise InvalidInput(
                f"No loss column among {', '.join(header) or 'none'}; name it 'loss' or pass "
                "columns={'L': ...}.",
                field="L",
            )
        L = _check_array("L", source[mapping["L"]], None)
        arrays: dict[str, np.ndarray] = {
            r: _check_array(r, source[mapping[r]], L.shape[0])
            for r in ("N", "D", "C")
            if r in mapping
        }
        where, lines = "the given columns", np.arange(1, L.shape[0] + 1)
    else:
        path = pathlib.Path(source)
        header, raw_rows = _read_csv(path)
        where = str(path)
        mapping = _resolve_columns(header, given, where)
        if "L" not in mapping:
            raise InvalidInput(
                f"No loss column in {where}: none of {', '.join(header)} is a known loss name. "
                "Name it in 'columns' (L=<column>).",
                field="columns",
            )
        index = {h: i for i, h in enumerate(header)}
        line_numbers = [line for line, _ in raw_rows]
        parsed = {
            role: _parse_column(
                [fields[index[name]] for _, fields in raw_rows],
                line_numbers,
                column=name,
                role=role,
                where=where,
            )
            for role, name in mapping.items()
        }
        L = parsed.pop("L")
        arrays = parsed
        lines = np.arange(1, L.shape[0] + 1)
    N, D, C, derived = _derive(arrays.get("N"), arrays.get("D"), arrays.get("C"))
    return RunsTable(
        L=L,
        N=N,
        D=D,
        C=C,
        rows=lines,
        source=where,
        columns={r: mapping[r] for r in ROLES if r in mapping},
        derived=derived,
        n_rows=int(L.shape[0]),
    )


def reduce_best_per_point(runs: RunsTable) -> RunsTable:
    """Keep the lowest-loss run of each point: one (N, D), or whatever of N, D, C is known.

    Runs repeated over hyper-parameters (several learning rates for one model and token count) are
    not independent observations of the law: only the best one approximates the loss the law
    describes, so the others are removed and counted in ``n_reduced``.
    """
    keys = [k for k in (runs.N, runs.D) if k is not None] or [k for k in (runs.C,) if k is not None]
    if not keys or len(runs) == 0:
        return runs
    best: dict[tuple[float, ...], int] = {}
    for i, key in enumerate(zip(*(k.tolist() for k in keys), strict=True)):
        j = best.get(key)
        if j is None or runs.L[i] < runs.L[j]:
            best[key] = i
    keep = np.array(sorted(best.values()), dtype=int)
    reduced = runs.take(keep)
    return replace(reduced, n_reduced=runs.n_reduced + len(runs) - keep.shape[0])


def drop_highest_loss(runs: RunsTable, count: int) -> RunsTable:
    """Remove the ``count`` highest-loss points (the Epoch replication drops 5 such outliers)."""
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
        raise invalid_parameter("drop_highest_loss", "an integer >= 0", count, where="laws fit")
    if count == 0:
        return runs
    if count >= len(runs):
        raise invalid_parameter(
            "drop_highest_loss",
            f"fewer than the {len(runs)} points available",
            count,
            where="laws fit",
        )
    order = np.argsort(runs.L, kind="stable")
    keep = np.sort(order[: len(runs) - count])
    dropped = tuple(sorted(int(r) for r in runs.rows[order[len(runs) - count :]]))
    return replace(runs.take(keep), dropped_rows=runs.dropped_rows + dropped)
