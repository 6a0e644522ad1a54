"""`modelscale laws`: fit, optimal, plots, storage, and one clear line with exit 2 on bad input."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from typer.testing import CliRunner, Result

import modelscale.cli.laws  # noqa: F401  (registers the `laws` commands)
from modelscale.cli.app import app
from modelscale.store import open_store

runner = CliRunner()


def laws(*args: str) -> Result:
    return runner.invoke(app, ["laws", *args])


def _write(path: pathlib.Path, header: str, rows: list[list[float]]) -> pathlib.Path:
    lines = [header] + [",".join(repr(float(v)) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def chinchilla_csv(tmp_path: pathlib.Path) -> pathlib.Path:
    """30 runs whose loss follows a known Chinchilla law exactly."""
    n, d = np.meshgrid(np.geomspace(5e7, 5e9, 6), np.geomspace(1e9, 1e11, 5))
    n, d = n.ravel(), d.ravel()
    loss = 1.7 + 400.0 / n**0.34 + 1500.0 / d**0.30
    return _write(
        tmp_path / "runs.csv", "params,tokens,loss", np.column_stack([n, d, loss]).tolist()
    )


@pytest.fixture
def compute_csv(tmp_path: pathlib.Path) -> pathlib.Path:
    c = np.geomspace(1e17, 1e21, 12)
    loss = 2.0 + 5.0e3 / c**0.2
    return _write(tmp_path / "compute.csv", "compute,val", np.column_stack([c, loss]).tolist())


def test_fit_then_optimal_from_the_store(
    chinchilla_csv: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    fitted = laws("fit", str(chinchilla_csv), "--bootstrap", "5")
    assert fitted.exit_code == 0, fitted.output
    for text in (
        "chinchilla law fitted on 30 points",
        "alpha",
        "Leave-largest-out",
        "Stored as run 1",
    ):
        assert text in fitted.stdout
    runs = open_store().runs(kind="laws")
    assert len(runs) == 1 and runs[0].results["analysis"] == "fit"
    assert runs[0].results["law"]["E"] == pytest.approx(1.7, rel=1e-5)

    table = laws("optimal", "--flops", "1e20", "--flops", "1e21,1e22")
    assert table.exit_code == 0, table.output
    assert "Using the newest stored fit, run 1" in table.stderr
    assert table.stdout.count("budget") == 3 and "Stored as run 2" in table.stdout

    page = tmp_path / "frontier.html"
    as_json = laws(
        "optimal",
        "--fit",
        "1",
        "--params",
        "1e9",
        "--target-loss",
        "2.6",
        "--json",
        "--plot",
        str(page),
    )
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    rows = data["optimal"]["allocations"]
    assert [r["given"] for r in rows] == ["params", "loss"]
    assert rows[0]["n_opt"] == pytest.approx(1e9) and data["fit_run"] == 1
    assert "data:image/png;base64," in page.read_text()
    stored = open_store().run(data["run_id"])
    assert stored.parent_run_id == 1 and stored.results["analysis"] == "optimal"


def test_power_c_json_plot_and_no_store(compute_csv: pathlib.Path, tmp_path: pathlib.Path) -> None:
    png = tmp_path / "fit.png"
    result = laws(
        "fit", str(compute_csv), "--form", "power-c", "--columns", "C=compute,L=val",
        "--bootstrap", "5", "--json", "--plot", str(png), "--no-store",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["run_id"] is None and data["fit"]["form"] == "power-c"
    assert {e["name"] for e in data["fit"]["estimates"]} == {"E", "A", "alpha"}
    assert len(data["optimal"]["allocations"]) == 3  # largest fitted budget, 10x and 100x
    assert png.read_bytes().startswith(b"\x89PNG")
    assert open_store().runs(kind="laws") == []


def test_optimal_fits_inline(compute_csv: pathlib.Path) -> None:
    result = laws(
        "optimal", "--from", str(compute_csv), "--form", "power-c", "--columns", "C=compute,L=val",
        "--target-loss", "2.5", "--bootstrap", "5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "target loss" in result.stdout
    kinds = [r.results["analysis"] for r in open_store().runs(kind="laws")]
    assert kinds == ["optimal", "fit"]


def test_optimal_without_a_fit() -> None:
    result = laws("optimal", "--flops", "1e21")
    assert result.exit_code == 2
    assert "No scaling-law fit in the knowledge base" in result.stderr


def _bad_csvs(tmp: pathlib.Path) -> dict[str, pathlib.Path]:
    files = {
        "negative": "params,tokens,loss\n1e8,1e9,3.0\n2e8,1e9,-2.0\n",
        "infinite": "params,tokens,loss\n1e8,1e9,3.0\n2e8,inf,2.9\n",
        "text": "params,tokens,loss\n1e8,1e9,3.0\n2e8,1e9,oops\n",
        "few": "params,tokens,loss\n1e8,1e9,3.0\n2e8,1e9,2.9\n3e8,1e9,2.8\n",
        "good": "params,tokens,loss\n" + "".join(f"{i}e8,1e9,{3 - i / 10}\n" for i in range(1, 9)),
    }
    out = {name: tmp / f"{name}.csv" for name in files}
    for name, text in files.items():
        out[name].write_text(text)
    out["binary"] = tmp / "binary.csv"
    out["binary"].write_bytes(bytes(range(256)))
    return out


@pytest.mark.parametrize(
    ("case", "extra", "message"),
    [
        ("negative", [], "Column 'loss' (loss) has a non-positive value -2.0 in row 2 (line 3)"),
        ("infinite", [], "Column 'tokens' (training tokens) has a non-finite value inf in row 2"),
        ("text", [], "Column 'loss' (loss) has 'oops' in row 2"),
        ("few", [], "has 5 parameters but"),
        ("binary", [], "is not a CSV file"),
        ("good", ["--columns", "N=size"], "Column 'size' (role N, parameters) is not in"),
        ("good", ["--columns", "Q=size"], "roles among N, D, C, L"),
        ("good", ["--form", "cubic"], "The --form parameter of laws fit must be one of"),
        ("good", ["--flops", "lots"], "--flops takes numbers such as 5.76e23. Got 'lots'"),
        ("good", ["--form", "power-n", "--flops", "1e21"], "--flops needs a law of compute"),
        ("good", ["--bootstrap", "-3"], "The --bootstrap parameter of laws fit"),
        ("good", ["--drop-highest-loss", "8"], "The --drop-highest-loss parameter"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: pathlib.Path, case: str, extra: list[str], message: str
) -> None:
    path = _bad_csvs(tmp_path)[case]
    result = laws("fit", str(path), "--bootstrap", "0", *extra)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert result.stderr.strip().count("\n") == 0  # one line


def test_missing_file_and_bad_optimal_requests(
    tmp_path: pathlib.Path, compute_csv: pathlib.Path
) -> None:
    missing = laws("fit", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    no_run = laws("optimal", "--fit", "99", "--flops", "1e21")
    assert no_run.exit_code == 2 and "No run with id 99" in no_run.stderr
    table = laws("optimal", "--from", str(compute_csv), "--form", "power-c",
                 "--columns", "C=compute,L=val", "--flops", "1e20", "--bootstrap", "0")  # fmt: skip
    assert table.exit_code == 0, table.output
    not_a_fit = laws("optimal", "--fit", "2", "--flops", "1e21")  # run 2 is the budget table
    assert (
        not_a_fit.exit_code == 2 and "(laws, optimal) is not a scaling-law fit" in not_a_fit.stderr
    )
    nothing = laws("optimal")
    assert nothing.exit_code == 2 and "Give at least one of" in nothing.stderr
