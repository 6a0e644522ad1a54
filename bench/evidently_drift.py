"""Evidently side of the drift benchmark: DataDriftPreset on the same arrays, timed end to end.

Standalone: does not import modelscale. Runs under its own venv, because Evidently 0.7 does not
import with pandas 3:

    python3.11 -m venv build/evidently-venv
    build/evidently-venv/bin/pip install 'evidently>=0.7,<0.8' 'pandas<3' numpy psutil
    build/evidently-venv/bin/python bench/evidently_drift.py --data D.npz --out R.json
    build/evidently-venv/bin/python bench/evidently_drift.py --demo-data D.npz --rows 10000

Input npz: ``ref_num`` float64 [n_ref, k], ``cur_num`` float64 [n_cur, k], ``num_names`` (k str);
optionally ``ref_cat``/``cur_cat`` int64 [n, m] with ``cat_names`` (m str).

Timed part (arrays already in memory -> per-column verdicts): build the two pandas DataFrames,
declare column types explicitly (``DataDefinition(numerical_columns=..., categorical_columns=...)``
+ ``Dataset.from_pandas``), run ``Report([DataDriftPreset()])`` with default settings, read the
per-column method / score / threshold / verdict. Not timed: the Evidently import and loading the
npz. Memory: RSS sampled by a psutil thread every 10 ms during the timed part; ``peak_rss_mb`` is
the sampled peak, ``peak_rss_delta_mb`` that peak minus the RSS just before the timed part.
``ru_maxrss_mb`` (getrusage, process-lifetime high-water mark) is reported next to it as a check
that the 10 ms sampling did not miss a short spike.

Default drift tests in Evidently 0.7 (read from the installed evidently 0.7.23 source)
----------------------------------------------------------------------------------------
Choice of test: ``evidently/legacy/calculations/stattests/registry.py::_get_default_stattest``,
called via ``get_stattest`` from ``evidently/legacy/calculations/data_drift.py::
get_one_column_drift`` when no method is set. (``DataDriftPreset.generate_metrics`` in
``evidently/presets/drift.py`` builds one ``ValueDrift`` per column with method/threshold None
when the preset has default settings; ``ValueDriftCalculation.calculate`` in
``evidently/metrics/column_statistics.py`` calls ``get_one_column_drift``.) Inputs to the rule:
``n_ref`` = number of reference rows of that column after ``inf -> NaN`` and ``dropna``, and
``n_values`` = ``pd.concat([reference, current]).nunique()`` (distinct values over both samples).

  * n_ref <= 1000 ("small"):
      - numerical, n_values > 5  -> ``ks``          two-sample Kolmogorov-Smirnov p-value
      - numerical, 3..5 values   -> ``chisquare``   chi-square p-value
      - numerical, <= 2 values   -> ``z``           two-proportion Z-test p-value
      - categorical, n_values > 2 -> ``chisquare``
      - categorical, <= 2 values (binary) -> ``z``
  * n_ref > 1000 ("large"):
      - numerical, n_values > 5  -> ``wasserstein`` Wasserstein distance normed by the reference std
      - numerical, <= 5 values   -> ``jensenshannon``
      - categorical (any number of values, binary included) -> ``jensenshannon``
  * text columns: ``abs_text_content_drift`` if n_ref > 1000 else ``perc_text_content_drift``.

Note the cut is on the REFERENCE row count only (``reference_data.shape[0] <= 1000``), not on the
current one.

Thresholds (``StatTest.default_threshold`` in each test's module under
``evidently/legacy/calculations/stattests/``; ``StatTest`` defaults to 0.05 in ``registry.py``) and
decision rule (the return line of each test function):

  ============  ==========================================  =========  ==========================
  name          function (module)                           threshold  drift when
  ============  ==========================================  =========  ==========================
  ks            ``_ks_stat_test`` (ks_stattest.py)          0.05       p_value <= threshold
  chisquare     ``_chi_stat_test`` (chisquare_stattest.py)  0.05       p_value <  threshold
  z             ``_z_stat_test`` (z_stattest.py)            0.05       p_value <  threshold
  wasserstein   ``_wasserstein_distance_norm``              0.1        distance >= threshold
                (wasserstein_distance_norm.py)
  jensenshannon ``_jensenshannon`` (jensenshannon.py)       0.1        distance >= threshold
  ============  ==========================================  =========  ==========================

Details of the statistics:
  * ks: ``scipy.stats.ks_2samp(reference, current)[1]`` (two-sided, method='auto').
  * chisquare: observed = current counts per value; expected = reference counts x n_cur/n_ref, over
    the union of values; ``scipy.stats.chisquare`` p-value.
  * z: two-sided two-proportion z test on "value == smallest value" in reference vs current.
  * wasserstein: ``scipy.stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)``.
  * jensenshannon: ``scipy.spatial.distance.jensenshannon`` (natural log, so range 0..sqrt(ln 2)
    ~= 0.833) of two histograms from ``stattests/utils.py::get_binned_data`` (n_bins=30 argument
    unused on this path): numerical with more than 20 distinct REFERENCE values -> bins =
    ``np.histogram_bin_edges(concat(ref, cur), bins="sturges")``; otherwise (categorical, or
    numerical with <= 20 distinct values) -> relative frequency of each distinct value. No zero
    filling (``feel_zeroes=False``).

Dataset-level verdict (not a per-column one): ``DriftedColumnsCount`` with ``drift_share=0.5``;
``get_dataset_drift`` in ``legacy/calculations/data_drift.py`` flags the dataset when
share of drifted columns >= 0.5.

Cost note: with default settings ``Report([DataDriftPreset()]).run`` runs each column's test three
times: once in its ``ValueDrift`` metric, once in the legacy ``DatasetDriftMetric`` behind
``DriftedColumnsCount`` (reused by ``DataDriftPreset.render``), and once in the legacy
``DataDriftTable`` that ``DataDriftPreset.render`` computes for the widgets. It also builds plot
data (histograms, binned index plots, correlations) for every column. All of it is in the timed
part, because that is what the default report costs.

Where the per-column output comes from: method and threshold are the values Evidently resolved
into each ``ValueDrift`` metric's config, score is that metric's value (``Snapshot.dict()``);
the boolean verdict is Evidently's own ``drift_detected`` for the column from the
``DataDriftTable`` result the preset computed (a private cache, ``snapshot.context.
_legacy_metrics``), checked to have the same method and score. If that cache is not found, the
verdict falls back to the rule in the table above.

Demo data (``--demo-data PATH --rows N``): seed 0, ``numpy.random.default_rng(0)``, n_ref = n_cur
= N; draws in this order: reference numerics N(0,1) [N,10]; current numerics N(0,1) [N,10]; then
f6 += 0.5; f7 *= sqrt(2); f8: N//10 rows chosen without replacement are replaced by outliers at
+-8 (sign drawn uniformly); f0-f5, f9 unchanged. Categorical ``c0`` with 5 categories: reference
p = 0.2 each; current p = 0.3 for category 0 and 0.175 for each of 1..4.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import threading
import time
from typing import Any

import numpy as np
import psutil

MB = 1024.0 * 1024.0

# direction of each default test's decision (used only as a fallback, see the docstring)
_P_VALUE_TESTS = {"ks": "<=", "chisquare": "<", "z": "<"}
_DISTANCE_TESTS = {"wasserstein": ">=", "jensenshannon": ">="}


class RssSampler:
    """Samples this process's RSS every `interval_s` seconds in a daemon thread."""

    def __init__(self, interval_s: float = 0.010) -> None:
        self._proc = psutil.Process(os.getpid())
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak = 0
        self.samples = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self._proc.memory_info().rss
            self.samples += 1
            if rss > self.peak:
                self.peak = rss
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        rss = self._proc.memory_info().rss
        self.peak = max(self.peak, rss)


def _ru_maxrss_bytes() -> int:
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru if sys.platform == "darwin" else ru * 1024  # Linux reports KiB


def load_npz(path: str) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        data: dict[str, Any] = {
            "ref_num": np.asarray(z["ref_num"], dtype=np.float64),
            "cur_num": np.asarray(z["cur_num"], dtype=np.float64),
            "num_names": [str(s) for s in z["num_names"]],
        }
        if "ref_cat" in z.files:
            data["ref_cat"] = np.asarray(z["ref_cat"], dtype=np.int64)
            data["cur_cat"] = np.asarray(z["cur_cat"], dtype=np.int64)
            data["cat_names"] = [str(s) for s in z["cat_names"]]
    k = data["ref_num"].shape[1]
    if data["cur_num"].shape[1] != k or len(data["num_names"]) != k:
        raise ValueError("ref_num, cur_num and num_names disagree on the number of numeric columns")
    if "ref_cat" in data:
        m = data["ref_cat"].shape[1]
        if data["cur_cat"].shape[1] != m or len(data["cat_names"]) != m:
            raise ValueError(
                "ref_cat, cur_cat and cat_names disagree on the number of categorical columns"
            )
    return data


def _frame(num: np.ndarray, num_names: list[str], cat: np.ndarray | None, cat_names: list[str]):
    import pandas as pd

    cols: dict[str, np.ndarray] = {name: num[:, j] for j, name in enumerate(num_names)}
    if cat is not None:
        for j, name in enumerate(cat_names):
            cols[name] = cat[:, j]
    return pd.DataFrame(cols)


def run_evidently(data: dict[str, Any]) -> dict[str, Any]:
    """The timed part: arrays -> DataFrames -> Dataset with explicit types -> Report -> verdicts."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests
    from evidently.presets import DataDriftPreset

    num_names: list[str] = data["num_names"]
    cat_names: list[str] = data.get("cat_names", [])
    ref_df = _frame(data["ref_num"], num_names, data.get("ref_cat"), cat_names)
    cur_df = _frame(data["cur_num"], num_names, data.get("cur_cat"), cat_names)
    definition = DataDefinition(
        numerical_columns=list(num_names), categorical_columns=list(cat_names)
    )
    ref_ds = Dataset.from_pandas(ref_df, data_definition=definition)
    cur_ds = Dataset.from_pandas(cur_df, data_definition=definition)

    snapshot = Report([DataDriftPreset()]).run(cur_ds, ref_ds)

    display_to_name = {
        st.display_name: name
        for name, by_type in _registered_stat_tests.items()
        for st in by_type.values()
    }

    # Evidently's own per-column verdicts, from the legacy DataDriftTable the preset computed.
    legacy: dict[str, Any] = {}
    for result, _widgets in getattr(snapshot.context, "_legacy_metrics", {}).values():
        if type(result).__name__ == "DataDriftTableResults":
            legacy = dict(result.drift_by_columns)

    columns: dict[str, dict[str, Any]] = {}
    dataset_share = None
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        kind = config.get("type", "")
        if kind.endswith(":DriftedColumnsCount"):
            dataset_share = float(metric["value"]["share"])
            continue
        if not kind.endswith(":ValueDrift"):
            continue
        name = config["column"]
        display = config["method"]
        method = display_to_name.get(display, display)
        score = float(metric["value"])
        threshold = float(config["threshold"])
        col = legacy.get(name)
        if col is not None:
            if col.stattest_name != display or not np.isclose(
                float(col.drift_score), score, rtol=1e-9, atol=0.0
            ):
                raise RuntimeError(f"ValueDrift and DataDriftTable disagree on column {name!r}")
            drift = bool(col.drift_detected)
            source = "evidently"
        elif method in _P_VALUE_TESTS:
            drift = score <= threshold if _P_VALUE_TESTS[method] == "<=" else score < threshold
            source = "rule"
        elif method in _DISTANCE_TESTS:
            drift = score >= threshold
            source = "rule"
        else:
            raise RuntimeError(f"no verdict for column {name!r} (method {display!r})")
        columns[name] = {
            "method": method,
            "method_display": display,
            "score": score,
            "threshold": threshold,
            "drift": drift,
            "verdict_source": source,
        }
    return {"columns": columns, "drifted_share": dataset_share}


def bench(data_path: str, out_path: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    import evidently
    import pandas as pd
    import scipy

    import_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    data = load_npz(data_path)
    load_s = time.perf_counter() - t0

    gc.collect()
    proc = psutil.Process(os.getpid())
    rss_before = proc.memory_info().rss
    ru_before = _ru_maxrss_bytes()
    with RssSampler(0.010) as sampler:
        t0 = time.perf_counter()
        res = run_evidently(data)
        seconds = time.perf_counter() - t0
    ru_after = _ru_maxrss_bytes()

    out = {
        "evidently_version": evidently.__version__,
        "pandas_version": pd.__version__,
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "python_version": platform.python_version(),
        "seconds": seconds,
        "peak_rss_mb": sampler.peak / MB,
        "peak_rss_delta_mb": (sampler.peak - rss_before) / MB,
        "rss_before_mb": rss_before / MB,
        "ru_maxrss_mb": ru_after / MB,
        "ru_maxrss_before_mb": ru_before / MB,
        "rss_samples": sampler.samples,
        "import_seconds": import_s,
        "load_seconds": load_s,
        "n_ref": int(data["ref_num"].shape[0]),
        "n_cur": int(data["cur_num"].shape[0]),
        "drifted_share": res["drifted_share"],
        "columns": res["columns"],
    }
    with open(out_path, "w", encoding="utf8") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    return out


def make_demo(path: str, rows: int) -> None:
    """Writes the demo npz described in the module docstring."""
    if rows < 10:
        raise ValueError("--rows must be >= 10")
    rng = np.random.default_rng(0)
    k = 10
    ref_num = rng.standard_normal((rows, k))
    cur_num = rng.standard_normal((rows, k))
    cur_num[:, 6] += 0.5
    cur_num[:, 7] *= np.sqrt(2.0)
    idx = rng.choice(rows, size=rows // 10, replace=False)
    cur_num[idx, 8] = rng.choice(np.array([-8.0, 8.0]), size=idx.size)
    ref_cat = rng.choice(5, size=rows, p=[0.2] * 5).astype(np.int64)
    cur_cat = rng.choice(5, size=rows, p=[0.3] + [0.7 / 4] * 4).astype(np.int64)
    np.savez(
        path,
        ref_num=ref_num,
        cur_num=cur_num,
        num_names=np.array([f"f{j}" for j in range(k)]),
        ref_cat=ref_cat[:, None],
        cur_cat=cur_cat[:, None],
        cat_names=np.array(["c0"]),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data", help="input .npz (see module docstring)")
    p.add_argument("--out", help="output .json")
    p.add_argument("--demo-data", help="write a demo .npz here and exit")
    p.add_argument("--rows", type=int, default=10_000, help="rows per sample for --demo-data")
    a = p.parse_args(argv)
    if a.demo_data:
        make_demo(a.demo_data, a.rows)
        return 0
    if not (a.data and a.out):
        p.error("--data and --out are required (or --demo-data)")
    out = bench(a.data, a.out)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
