"""Reading run tables: column roles, derived columns, best-per-point reduction, bad input."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest

from modelscale.errors import InvalidInput
from modelscale.laws.data import drop_highest_loss, load_runs, parse_columns, reduce_best_per_point

from .conftest import write_csv


def test_epoch_columns_detected_and_tokens_derived(epoch_csv: pathlib.Path) -> None:
    runs = load_runs(epoch_csv)
    assert dict(runs.columns) == {"N": "Model Size", "C": "Training FLOP", "L": "loss"}
    assert "D" in runs.derived and len(runs) == runs.n_rows == 245
    assert runs.D is not None and runs.N is not None and runs.C is not None
    np.testing.assert_allclose(runs.D, runs.C / (6 * runs.N))


def test_misfitting_columns_detected(misfitting_csv: pathlib.Path) -> None:
    runs = load_runs(misfitting_csv)
    # "D" wins over "train_tokens", "C" over "C_6ND", "loss" over "C4 Eval Loss".
    assert dict(runs.columns) == {"N": "N", "D": "D", "C": "C", "L": "loss"}
    assert not runs.derived


def test_best_per_point_keeps_the_lowest_loss(misfitting_csv: pathlib.Path) -> None:
    runs = load_runs(misfitting_csv)
    reduced = reduce_best_per_point(runs)
    assert len(runs) == 261 and len(reduced) == 81 and reduced.n_reduced == 180
    assert runs.N is not None and runs.D is not None
    assert reduced.N is not None and reduced.D is not None
    for n, d, loss in zip(reduced.N, reduced.D, reduced.L, strict=True):
        same = (n == runs.N) & (d == runs.D)
        assert loss == runs.L[same].min()
    assert len(set(zip(reduced.N.tolist(), reduced.D.tolist(), strict=True))) == 81


def test_derives_params_from_flops_and_tokens() -> None:
    runs = load_runs({"tokens": [1e9, 2e9], "flops": [6e18, 2.4e19], "loss": [3.0, 2.9]})
    assert runs.N is not None and runs.derived == {"N": "N = C / (6 D)"}
    np.testing.assert_allclose(runs.N, [1e9, 2e9])


def test_drop_highest_loss_reports_rows() -> None:
    runs = load_runs({"params": [1, 2, 3, 4, 5.0], "loss": [5, 1, 4, 2, 3.0]})
    kept = drop_highest_loss(runs, 2)
    assert sorted(kept.L.tolist()) == [1.0, 2.0, 3.0]
    assert kept.dropped_rows == (1, 3)
    with pytest.raises(InvalidInput, match="drop_highest_loss"):
        drop_highest_loss(runs, 5)
    with pytest.raises(InvalidInput, match="drop_highest_loss"):
        drop_highest_loss(runs, -1)


def test_parse_columns() -> None:
    assert parse_columns("N=params, D=tokens,C=flops,L=loss") == {
        "N": "params",
        "D": "tokens",
        "C": "flops",
        "L": "loss",
    }
    assert parse_columns("params=Model Size,loss=y") == {"N": "Model Size", "L": "y"}
    assert parse_columns(None) == {}
    with pytest.raises(InvalidInput, match="roles among N, D, C, L"):
        parse_columns("X=params")
    with pytest.raises(InvalidInput, match="'columns' parameter"):
        parse_columns("params")


def test_explicit_column_mapping(tmp_path: pathlib.Path) -> None:
    path = write_csv(tmp_path / "r.csv", {"size": [1e8, 2e8], "toks": [1e9, 1e9], "y": [3, 2.5]})
    runs = load_runs(path, columns="N=size,D=toks,L=y")
    assert dict(runs.columns) == {"N": "size", "D": "toks", "L": "y"}
    assert runs.C is not None and runs.C[0] == pytest.approx(6e17)


@pytest.mark.parametrize(
    ("cell", "words"),
    [
        ("-3.0", "non-positive value -3.0"),
        ("0", "non-positive value 0"),
        ("nan", "non-finite value nan"),
        ("inf", "non-finite value inf"),
        ("abc", "has 'abc'"),
        ("", "has an empty cell"),
    ],
)
def test_bad_value_names_column_and_row(tmp_path: pathlib.Path, cell: str, words: str) -> None:
    path = tmp_path / "runs.csv"
    path.write_text(f"params,tokens,loss\n1e8,1e9,3.1\n2e8,1e9,{cell}\n")
    with pytest.raises(InvalidInput) as err:
        load_runs(path)
    message = str(err.value)
    assert "Column 'loss'" in message and words in message and "row 2 (line 3)" in message
    assert err.value.field == "loss"


def test_missing_mapped_column_is_named(tmp_path: pathlib.Path) -> None:
    path = write_csv(tmp_path / "r.csv", {"params": [1e8], "loss": [3.0]})
    with pytest.raises(InvalidInput, match="Column 'tokens' \\(role D"):
        load_runs(path, columns="D=tokens")


def test_missing_loss_column(tmp_path: pathlib.Path) -> None:
    path = write_csv(tmp_path / "r.csv", {"params": [1e8], "tokens": [1e9], "y": [3.0]})
    with pytest.raises(InvalidInput, match="No loss column"):
        load_runs(path)


def test_not_a_csv(tmp_path: pathlib.Path) -> None:
    binary = tmp_path / "x.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    with pytest.raises(InvalidInput, match="is not a CSV file"):
        load_runs(binary)
    one_column = tmp_path / "y.csv"
    one_column.write_text("just some text\nmore text\n")
    with pytest.raises(InvalidInput, match="does not look like a CSV"):
        load_runs(one_column)
    ragged = tmp_path / "z.csv"
    ragged.write_text("params,tokens,loss\n1e8,1e9,3\n1e8,1e9\n")
    with pytest.raises(InvalidInput, match="row 2 \\(line 3\\) has 2 fields"):
        load_runs(ragged)
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(InvalidInput, match="is empty"):
        load_runs(empty)
    with pytest.raises(InvalidInput, match="does not exist"):
        load_runs(tmp_path / "nope.csv")


def test_arrays_are_checked() -> None:
    with pytest.raises(InvalidInput, match=r"Column 'N'.*row 2"):
        load_runs({"params": [1e8, -1.0], "loss": [3.0, 2.0]})
    with pytest.raises(InvalidInput, match="as many as the losses"):
        load_runs({"params": [1e8], "loss": [3.0, 2.0]})
    runs = load_runs({"params": [1e8, 2e8], "loss": [3.0, 2.0]})
    assert runs.C is None and runs.D is None and math.isclose(runs.L[1], 2.0)
