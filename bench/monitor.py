"""Acceptance figures of `modelscale monitor`: drift from sketches against Evidently, false alarms,
power, accuracy, and the demo's end-to-end detection.

1. speed: reference 1,000,000 rows x 10 numeric features + 1 categorical against current
   1,000,000 rows (seeded shifts: f6 mean +0.5 sd, f7 variance x2, f8 10% of rows replaced by
   +-8 sd outliers, c0 one category's share 20% -> 30%; the rest unchanged), in the same run as
   Evidently's DataDriftPreset (its own venv, build/evidently-venv, see bench/evidently_drift.py):
   seconds from arrays in memory to per-feature verdicts, peak memory (RSS sampled every 10 ms,
   above the RSS before), the verdict per feature, and the fold rate of one KLL sketch on one
   core. Also the all-unchanged case.
2. false_alarms: 1,000 windows of 1,000 rows with no drift (10 numeric + 1 categorical feature,
   reference 100,000 rows): share of windows with any feature flagged after Benjamini-Hochberg;
   and the domain classifier on 100 such windows.
3. power: detection rate of a mean shift (in reference sd) by window size, over 50 windows a cell,
   with the default min_effect (0.1) and with min_effect 0 (what the test alone resolves); the
   smallest shift detected in >= 80% of windows per window size.
4. accuracy: bench/monitor_accuracy.py (digits: CBPE interval coverage under covariate shift, a
   concept shift where it fails, 30%-feedback interval coverage).
5. feedback: digits served with a baseline, every held-out row sent with an id and every label fed
   back: the window's realized accuracy against the offline accuracy of the same rows; then labels
   for a random 30%: does the window's interval cover the accuracy of all rows.
6. cost: the highest rate of digits at p99 <= 25 ms (2 x 1, batch 8 / 5 ms) with the monitor off,
   on (5-minute windows) and on with 1,000-request windows, alternating (``--only cost``; not in
   the default run: about 10 minutes).
7. e2e: the demo's monitor step (digits served, clean then shifted traffic through the load
   generator): the window that flags the shift, and the alerts recorded.

Run: .venv/bin/python bench/monitor.py [--only speed,false_alarms,power,accuracy,feedback,e2e,cost]
     [--rows 1000000] [--out bench/results/monitor.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np
import psutil

from modelscale.monitor import DriftOptions, Profile, compare_profiles, domain_test
from modelscale.monitor.sketch import CATEGORICAL, NUMERIC, NumericSketch

ROOT = pathlib.Path(__file__).resolve().parent.parent
EVIDENTLY_PY = ROOT / "build" / "evidently-venv" / "bin" / "python"


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _PeakRss:
    """Peak RSS above the RSS at start, sampled every 10 ms."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.01)

    def __enter__(self) -> _PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self._stop.set()
        self._t.join()

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def _kinds(num_names: list[str], cat_names: list[str]) -> dict[str, str]:
    return {**{n: NUMERIC for n in num_names}, **{c: CATEGORICAL for c in cat_names}}


def _profile(
    num: np.ndarray, cat: np.ndarray | None, num_names: list[str], cat_names: list[str]
) -> Profile:
    p = Profile.empty(_kinds(num_names, cat_names))
    numeric = {n: num[:, i] for i, n in enumerate(num_names)}
    categorical = {c: (cat[:, i], None) for i, c in enumerate(cat_names)} if cat is not None else {}
    p.update(numeric, categorical, rows=num.shape[0])
    return p


def ours(data: dict[str, Any], options: DriftOptions) -> dict[str, Any]:
    """Arrays in memory -> per-feature verdicts, timed, with peak memory."""
    num_names = [str(n) for n in data["num_names"]]
    cat_names = [str(n) for n in data.get("cat_names", [])]
    with _PeakRss() as mem:
        t0 = time.perf_counter()
        ref = _profile(data["ref_num"], data.get("ref_cat"), num_names, cat_names)
        cur = _profile(data["cur_num"], data.get("cur_cat"), num_names, cat_names)
        result = compare_profiles(ref, cur, options)
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "peak_rss_delta_mb": mem.delta_mb,
        "columns": {
            f.feature: {
                "test": f.test,
                "statistic": f.statistic,
                "p_adjusted": f.p_adjusted,
                "effect": f.effect,
                "psi": f.psi,
                "error_bound": f.error_bound,
                "drift": f.drift,
            }
            for f in result.features
        },
    }


def fold_rate(values: int = 10_000_000) -> float:
    """Values/s one KLL sketch folds on one core (float32 column, contiguous)."""
    x = np.random.default_rng(0).standard_normal(values).astype(np.float32)
    best = 0.0
    for _ in range(3):
        sk = NumericSketch()
        t0 = time.perf_counter()
        sk.update(x)
        best = max(best, values / (time.perf_counter() - t0))
    return best


def speed(rows: int) -> dict[str, Any]:
    ev_mod = _load("evidently_drift")
    out: dict[str, Any] = {"rows": rows, "fold_values_per_s": fold_rate()}
    with tempfile.TemporaryDirectory() as tmp:
        for case in ("shifted", "unchanged"):
            path = os.path.join(tmp, f"{case}.npz")
            ev_mod.make_demo(path, rows)
            if case == "unchanged":
                d = dict(np.load(path))
                rng = np.random.default_rng(11)
                d["cur_num"] = rng.standard_normal(d["ref_num"].shape)
                d["cur_cat"] = rng.choice(5, size=d["ref_cat"].shape, p=[0.2] * 5).astype(np.int64)
                np.savez(path, **d)
            with np.load(path) as f:
                data = {k: f[k] for k in f.files}
            mine = ours(data, DriftOptions())
            lenient = ours(data, DriftOptions(min_effect=0.05))
            res: dict[str, Any] = {"modelscale": mine, "modelscale_min_effect_0.05": lenient}
            if EVIDENTLY_PY.exists():
                report = os.path.join(tmp, f"{case}.json")
                subprocess.run(
                    [
                        str(EVIDENTLY_PY),
                        str(ROOT / "bench" / "evidently_drift.py"),
                        "--data",
                        path,
                        "--out",
                        report,
                    ],
                    check=True,
                    capture_output=True,
                )
                ev = json.loads(pathlib.Path(report).read_text())
                res["evidently"] = ev
                res["speedup"] = ev["seconds"] / mine["seconds"]
                res["same_verdicts"] = {
                    c: ev["columns"][c]["drift"] == mine["columns"][c]["drift"]
                    for c in mine["columns"]
                }
            out[case] = res
    return out


def _null_windows(
    n_windows: int, window: int, *, seed: int, shift: float = 0.0, options: DriftOptions
) -> tuple[int, list[str]]:
    names = [f"f{i}" for i in range(10)]
    rng = np.random.default_rng(seed)
    ref = _profile(
        rng.standard_normal((100_000, 10)), rng.integers(0, 5, (100_000, 1)), names, ["c0"]
    )
    flagged, which = 0, []
    for _ in range(n_windows):
        x = rng.standard_normal((window, 10))
        x[:, 0] += shift
        cur = _profile(x, rng.integers(0, 5, (window, 1)), names, ["c0"])
        r = compare_profiles(ref, cur, options)
        if r.drifted:
            flagged += 1
            which += r.drifted
    return flagged, which


def false_alarms(windows: int = 1_000) -> dict[str, Any]:
    t0 = time.perf_counter()
    flagged, which = _null_windows(windows, 1_000, seed=1, options=DriftOptions())
    stat_only, _ = _null_windows(windows, 1_000, seed=1, options=DriftOptions(min_effect=0.0))
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((1_000, 10))
    dom = [domain_test(ref, rng.standard_normal((1_000, 10)), seed=i) for i in range(100)]
    return {
        "windows": windows,
        "window_rows": 1_000,
        "flagged": flagged,
        "flagged_share": flagged / windows,
        "flagged_features": which,
        "flagged_min_effect_0": stat_only,
        "flagged_share_min_effect_0": stat_only / windows,
        "domain_windows": len(dom),
        "domain_flagged": sum(1 for d in dom if d and d["drift"]),
        "domain_auc_mean": float(np.mean([d["auc"] for d in dom if d])),
        "seconds": time.perf_counter() - t0,
    }


def power(per_cell: int = 50) -> dict[str, Any]:
    shifts = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
    sizes = (100, 300, 1_000, 3_000, 10_000)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for label, opt in (("default", DriftOptions()), ("min_effect_0", DriftOptions(min_effect=0.0))):
        rows: dict[str, dict[str, float]] = {}
        for size in sizes:
            cells = {}
            for shift in shifts:
                _, which = _null_windows(
                    per_cell, size, seed=int(shift * 1000) + size, shift=shift, options=opt
                )
                cells[str(shift)] = sum(1 for f in which if f == "f0") / per_cell
            rows[str(size)] = cells
        table[label] = rows
    smallest = {
        label: {
            size: next((float(s) for s, rate in cells.items() if rate >= 0.8), None)
            for size, cells in rows.items()
        }
        for label, rows in table.items()
    }
    return {
        "per_cell": per_cell,
        "shifts_sd": list(shifts),
        "sizes": list(sizes),
        "rate": table,
        "smallest_80": smallest,
    }


def accuracy() -> dict[str, Any]:
    out: dict[str, Any] = _load("monitor_accuracy").run()
    return out


def feedback() -> dict[str, Any]:
    """Digits served with a baseline; every held-out row sent with an id, all labels fed back:
    the window's realized accuracy against the offline one on the same rows; then the same with
    labels for a random 30% of the requests."""
    import httpx

    from modelscale.config import DeploymentSpec
    from modelscale.examples import build_example
    from modelscale.model import ModelArtifact, load_npz
    from modelscale.monitor import BaselineOptions, build_baseline
    from modelscale.serve import start_server
    from modelscale.store import open_store
    from modelscale.workflow import Recorder

    example = build_example("digits")
    assert example.eval_path is not None
    artifact = ModelArtifact.load(example.model_path, name="digits")
    pixels = load_npz(example.eval_path, artifact.signature)["pixels"]
    labels = np.load(example.eval_path)["labels"]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/kb.db")
        Recorder(store).run_id(
            build_baseline(artifact, {"pixels": pixels}, labels=labels, options=BaselineOptions())
        )
        store.close()
        n = len(labels)
        for share in (1.0, 0.3):
            spec = DeploymentSpec.from_dict(
                {
                    "models": {
                        "digits": {
                            "versions": {"1": {"path": str(example.model_path)}},
                            "monitor": {"window_s": 3600, "window_requests": n},
                        }
                    },
                    "log": {"path": f"{tmp}/logs"},
                    "store": {"url": f"sqlite:///{tmp}/kb.db"},
                }
            )
            rng = np.random.default_rng(7)
            with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
                served = []
                for i in range(n):
                    x = pixels[i : i + 1]
                    body = {
                        "id": f"r{i}",
                        "inputs": [
                            {
                                "name": "pixels",
                                "shape": list(x.shape),
                                "datatype": "FP32",
                                "data": x.ravel().tolist(),
                            }
                        ],
                    }
                    served.append(
                        int(
                            np.argmax(
                                c.post("/v2/models/digits/infer", json=body).json()["outputs"][0][
                                    "data"
                                ]
                            )
                        )
                    )
                chosen = np.flatnonzero(rng.random(n) < share) if share < 1 else np.arange(n)
                items = [{"id": f"r{i}", "label": int(labels[i])} for i in chosen]
                c.post("/v2/models/digits/feedback", json={"items": items}).raise_for_status()
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    views = c.get("/v2/monitor").json()["models"]
                    if views and views[0]["windows"]:
                        break
                    time.sleep(0.2)
                if not views or not views[0]["windows"]:
                    raise RuntimeError(f"no window closed: {views}\n{server.log_tail(40)}")
                window = views[0]["windows"][0]
            served_arr = np.asarray(served)
            realized = window["accuracy"]["realized"]
            full = float(np.mean(served_arr == labels))
            out[f"share_{share}"] = {
                "labelled": int(realized["n"]),
                "realized": realized,
                "offline_on_labelled_rows": float(np.mean(served_arr[chosen] == labels[chosen])),
                "offline_all_rows": full,
                "equal": realized["value"] == float(np.mean(served_arr[chosen] == labels[chosen])),
                "covers_full": realized["lo"] <= full <= realized["hi"],
                "estimate": window["accuracy"].get("estimate"),
            }
    return out


def _digits_spec(monitor: dict[str, Any], tmp: str) -> Any:
    from modelscale.config import DeploymentSpec
    from modelscale.examples import build_example

    example = build_example("digits")
    return DeploymentSpec.from_dict(
        {
            "models": {
                "digits": {
                    "versions": {"1": {"path": str(example.model_path)}},
                    "replicas": 2,
                    "threads": 1,
                    "batching": {"max_batch": 8, "max_wait_ms": 5, "max_queue": 4096},
                    "monitor": monitor,
                }
            },
            "log": {"path": f"{tmp}/logs"},
            "store": {"url": f"sqlite:///{tmp}/kb.db"},
        }
    )


def _fixed_rate(monitor: dict[str, Any], tmp: str, rate: float, seconds: float) -> dict[str, float]:
    """The front process's CPU per request and the p99 at a fixed open-loop rate."""
    from modelscale.examples import build_example
    from modelscale.loadgen import LoadOptions, run_load
    from modelscale.serve import start_server

    example = build_example("digits")
    with start_server(_digits_spec(monitor, tmp)) as server:
        proc = psutil.Process(server.pid)
        before = proc.cpu_times()
        r = run_load(
            server.url,
            model="digits",
            options=LoadOptions(
                rate=rate, duration_s=seconds, inputs=example.eval_path, warmup_s=1
            ),
        )
        after = proc.cpu_times()
    cpu = (after.user + after.system) - (before.user + before.system)
    sent = r.overall.achieved_rps * seconds
    return {"cpu_ms_per_request": 1000 * cpu / max(sent, 1), "p99_ms": r.overall.p99_ms}


def _findmax_digits(monitor: dict[str, Any], tmp: str, step: float) -> float:
    from modelscale.examples import build_example
    from modelscale.loadgen import LoadOptions, run_load
    from modelscale.serve import start_server

    example = build_example("digits")
    spec = _digits_spec(monitor, tmp)
    with start_server(spec) as server:
        r = run_load(
            server.url,
            model="digits",
            options=LoadOptions(
                find_max=True,
                rate=400,
                duration_s=step,
                inputs=example.eval_path,
                p99_ms=25.0,
                tolerance=0.05,
                warmup_s=2,
            ),
        )
    assert r.max_rate_rps is not None
    return float(r.max_rate_rps)


def cost(runs: int = 2, step: float = 8.0) -> dict[str, Any]:
    """The highest rate at p99 <= 25 ms of digits (2 x 1, batch 8 / 5 ms: a model so cheap that
    the server's own work is most of a request's cost, the worst case for monitoring), with the
    monitor off, on (5-minute windows), and on with 1,000-request windows, alternating."""
    import statistics

    from modelscale.examples import build_example
    from modelscale.model import ModelArtifact, load_npz
    from modelscale.store import open_store
    from modelscale.workflow import Recorder

    example = build_example("digits")
    assert example.eval_path is not None
    artifact = ModelArtifact.load(example.model_path, name="digits")
    configs = {
        "off": {"enabled": False},
        "on": {},
        "on_1000_requests": {"window_requests": 1000},
    }
    rates: dict[str, list[float]] = {k: [] for k in configs}
    fixed: dict[str, list[dict[str, float]]] = {k: [] for k in configs}
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/kb.db")
        data = load_npz(example.eval_path, artifact.signature)
        labels = np.load(example.eval_path)["labels"]
        from modelscale.monitor import build_baseline

        Recorder(store).run_id(build_baseline(artifact, data, labels=labels))
        store.close()
        for run in range(3):
            order = list(configs) if run % 2 == 0 else list(reversed(configs))
            for name in order:
                got = _fixed_rate(configs[name], tmp, 1_000, 10)
                fixed[name].append(got)
                print(f"cost: {name} at 1,000 req/s: {got} ({os.getloadavg()[0]:.2f})", flush=True)
        for run in range(runs):
            order = list(configs) if run % 2 == 0 else list(reversed(configs))
            for name in order:
                rate = _findmax_digits(configs[name], tmp, step)
                rates[name].append(rate)
                print(f"cost: {name}: {rate:.0f} req/s ({os.getloadavg()[0]:.2f})", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    cpu = {k: statistics.median(x["cpu_ms_per_request"] for x in v) for k, v in fixed.items()}
    p99 = {k: statistics.median(x["p99_ms"] for x in v) for k, v in fixed.items()}
    return {
        "fixed_1000": fixed,
        "cpu_ms_per_request": cpu,
        "p99_ms_at_1000": p99,
        "rates": rates,
        "median": med,
        "on_share": med["on"] / med["off"],
        "on_1000_share": med["on_1000_requests"] / med["off"],
    }


def e2e() -> dict[str, Any]:
    from modelscale.examples import build_example
    from modelscale.store import open_store
    from modelscale.workflow import Recorder, watch_example

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/kb.db")
        try:
            step = watch_example(
                build_example("digits"), pathlib.Path(tmp) / "w", recorder=Recorder(store)
            )
        finally:
            store.close()
    return {
        "flagged_after_windows": step.flagged_after,
        "windows": [
            {
                "verdict": w["verdict"],
                "rows": w["drift"]["rows"],
                "after_shift": w["end"] > step.shift_at,
                "drifted": w["drift"]["drifted"],
                "estimate": (w["accuracy"].get("estimate") or {}).get("value"),
            }
            for w in step.windows
        ],
        "alerts": [a["message"] for a in step.alerts],
    }


SECTIONS = {
    "speed": None,
    "false_alarms": false_alarms,
    "power": power,
    "accuracy": accuracy,
    "feedback": feedback,
    "e2e": e2e,
    "cost": cost,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--only", default=",".join(k for k in SECTIONS if k != "cost"))
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "monitor.json"))
    args = p.parse_args(argv)
    out_path = pathlib.Path(args.out)
    results: dict[str, Any] = json.loads(out_path.read_text()) if out_path.exists() else {}
    results["load_avg_at_start"] = os.getloadavg()
    for name in args.only.split(","):
        print(f"== {name}", flush=True)
        got = speed(args.rows) if name == "speed" else SECTIONS[name]()  # type: ignore[misc]
        results[name] = got
        print(json.dumps(got, indent=1, default=str)[:4000], flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
