"""Acceptance figures of the request log, SLO alerts and their cost to serving.

1. writer: the log writer alone, on digits requests (summaries of real inputs and outputs, no
   payloads): records/s written, and 20,000 records/s offered through the pipeline's bounded
   queue for 10 s with nothing dropped.
2. stats: `logs stats` over 1,000,000 generated records (2 models x 2 versions, 100 files):
   seconds per answer, and its p99 against numpy's over the same numbers.
3. replay: the SLO tracker on simulated traffic: outages after 6 h of good traffic (detection
   time, reset time) and clean days at 10 requests/min with 0.1% errors (pages: must be 0);
   precision and recall over all of them.
4. outage: a real server (digits, 2 replicas, availability 0.999) under load, then every replica
   stopped (killed, its model file broken so none restarts): seconds from the kill to the page.
5. kill9: a real server under load killed with SIGKILL: every Parquet file left is readable, and
   how many answered requests the log lacks against flush_s x rate.
6. cost: MiniLM fp32 seq 32, 2 x 1, batch 8 / 2 ms: find-max at p99 <= 100 ms with the request
   log of every request on and off, alternating, --runs pairs of --step-second probes.

Run: .venv/bin/python bench/observe.py [--only writer,stats,replay,outage,kill9,cost] [--step 30]
     [--runs 3] [--out bench/results/observe.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

import numpy as np
import onnxruntime as ort
import psutil
import pyarrow.parquet as pq

from modelscale.config import DeploymentSpec, SloSpec
from modelscale.examples import build_example
from modelscale.loadgen import LoadOptions, run_load
from modelscale.machine import machine_info
from modelscale.observe import LogLocation, LogWriter, log_stats, query_log
from modelscale.observe.replay import outage, replay, steady
from modelscale.serve import RequestRecord, start_server
from modelscale.serve.codec import DecodedRequest
from modelscale.serve.records import RecordQueue

SEQ = 32
KEYS = ("input_ids", "attention_mask", "token_type_ids")


def log(*args: object) -> None:
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


def load_avg() -> str:
    a, b, c = os.getloadavg()
    return f"load {a:.2f} {b:.2f} {c:.2f}"


# -- 1. the writer alone ---------------------------------------------------------------------------
def digits_records(n: int, *, t0: float, spacing_s: float, models: int = 1) -> list[RequestRecord]:
    """``n`` records of real digits requests: 1-row inputs and the model's real outputs."""
    example = build_example("digits")
    sess = ort.InferenceSession(str(example.model_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    from sklearn.datasets import load_digits

    x = (load_digits().data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    outs = sess.run(None, {name: x})
    out_names = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        k = i % len(x)
        req = DecodedRequest(
            id=None,
            inputs={name: x[k : k + 1]},
            rows=1,
            outputs=tuple(out_names),
            binary_outputs=frozenset(),
            timeout_s=None,
            key=(),
        )
        records.append(
            RequestRecord(
                time=t0 + i * spacing_s,
                request_id=f"r{i}",
                model=f"digits{i % models}" if models > 1 else "digits",
                version=str(1 + (i // models) % 2) if models > 1 else "1",
                status=503 if rng.random() < 0.001 else 200,
                latency_s=float(rng.gamma(4.0, 0.001)),
                queue_s=0.0005,
                batch_wait_s=0.0002,
                infer_s=0.0004,
                roundtrip_s=0.0006,
                batch_rows=8,
                rows=1,
                request=req,
                outputs={o: v[k : k + 1] for o, v in zip(out_names, outs, strict=True)},
            )
        )
    return records


def bench_writer(tmp: pathlib.Path) -> dict[str, Any]:
    records = digits_records(200_000, t0=time.time(), spacing_s=1 / 20_000)
    writer = LogWriter(LogLocation.of(tmp / "w1"), flush_s=2.0)
    started = time.perf_counter()
    for i in range(0, len(records), 40_000):  # what 2 s of 20,000 records/s hand over
        writer.record(records[i : i + 40_000])
        writer.flush()
    capacity = len(records) / (time.perf_counter() - started)
    log(f"writer: {capacity:,.0f} records/s written ({writer.files} files)")
    # Sustained: offered through the pipeline's queue at 20,000/s for 10 s, flushing every 2 s.
    writer2 = LogWriter(LogLocation.of(tmp / "w2"), flush_s=2.0)
    queue = RecordQueue(writer2, capacity=65_536)
    queue.start()
    rate, seconds = 20_000, 10.0
    started = time.perf_counter()
    sent = 0
    while sent < rate * seconds:
        due = int((time.perf_counter() - started) * rate)
        while sent < min(due, rate * seconds):
            queue.offer(records[sent % len(records)])
            sent += 1
        time.sleep(0.001)
    offered_s = time.perf_counter() - started
    queue.close()
    rows = sum(pq.read_metadata(f).num_rows for f in (tmp / "w2").rglob("*.parquet"))
    log(
        f"writer at {rate:,}/s for {offered_s:.1f} s: offered {sent:,}, dropped {queue.dropped}, "
        f"written {writer2.written:,}, in files {rows:,}"
    )
    return {
        "capacity_records_per_s": capacity,
        "sustained": {
            "rate": rate,
            "seconds": offered_s,
            "offered": sent,
            "dropped": queue.dropped,
            "failed": writer2.failed,
            "written": writer2.written,
            "rows_in_files": rows,
        },
    }


# -- 2. stats over a million records ---------------------------------------------------------------
def bench_stats(tmp: pathlib.Path, n: int = 1_000_000) -> dict[str, Any]:
    root = tmp / "million"
    writer = LogWriter(LogLocation.of(root), summaries=True)
    t0 = time.time() - 86_400
    chunk = 10_000
    lat_by_group: dict[tuple[str, str], list[np.ndarray]] = {}
    base = digits_records(chunk, t0=t0, spacing_s=86_400 / n, models=2)
    for start in range(0, n, chunk):
        part = [r._replace(time=r.time + start * 86_400 / n) for r in base]
        writer.record(part)
        writer.flush()
        for r in part:
            lat_by_group.setdefault((r.model, r.version), []).append(np.array([r.latency_s * 1000]))
    files = len(list(root.rglob("*.parquet")))
    log(f"stats: {n:,} records in {files} files")
    times = []
    result = None
    for _ in range(5):
        started = time.perf_counter()
        result = log_stats(str(root), by=["model", "version"])
        times.append(time.perf_counter() - started)
    assert result is not None
    # numpy over the same stored numbers (5xx included, as the stats; no 4xx here).
    stored = query_log(str(root), "SELECT model, version, latency_ms FROM requests").rows
    groups: dict[tuple[str, str], list[float]] = {}
    for m, v, lat in stored:
        groups.setdefault((m, v), []).append(lat)
    compare = []
    for row in result.rows:
        key = (row.group["model"], row.group["version"])
        ref = float(np.percentile(np.array(groups[key]), 99))
        compare.append(
            {"group": key, "requests": row.requests, "p99_ms": row.p99_ms, "numpy_p99_ms": ref}
        )
    log(
        f"stats: first {times[0]:.3f} s, best {min(times):.3f} s, median "
        f"{statistics.median(times):.3f} s; p99 equal to numpy: "
        f"{all(c['p99_ms'] == c['numpy_p99_ms'] for c in compare)}"
    )
    return {
        "records": n,
        "files": files,
        "seconds": times,
        "groups": compare,
        "p99_equal": all(c["p99_ms"] == c["numpy_p99_ms"] for c in compare),
        "max_abs_diff": max(abs(c["p99_ms"] - c["numpy_p99_ms"]) for c in compare),
    }


# -- 3. replayed traffic ---------------------------------------------------------------------------
def bench_replay() -> dict[str, Any]:
    slo = SloSpec(availability=0.999)
    incidents, pages, true_pages, detected = 0, 0, 0, 0
    detection, reset, clean_pages = [], [], []
    started = time.perf_counter()
    for seed, minutes in enumerate((3, 5, 10, 30, 60)):
        t = outage(
            rate_per_s=5, before_s=6 * 3_600, outage_s=minutes * 60, after_s=3_600, seed=seed
        )
        r = replay(t, slo, sli="availability")
        incidents += r.incidents
        detected += r.detected
        pages += r.pages
        true_pages += r.true_pages
        detection += r.detection_s
        reset += r.reset_s
        log(
            f"replay outage {minutes} min: pages {r.pages}, detected in {r.detection_s} s, "
            f"reset after {r.reset_s} s"
        )
    for seed in range(5):
        t = steady(rate_per_s=10 / 60, duration_s=86_400, error_share=0.001, seed=100 + seed)
        r = replay(t, slo)
        pages += r.pages
        clean_pages.append(r.pages)
        tickets = sum(1 for a in r.alerts if a.severity == "ticket" and a.state == "firing")
        log(f"replay clean day {seed}: pages {r.pages}, tickets {tickets}")
    out = {
        "incidents": incidents,
        "detected": detected,
        "pages": pages,
        "true_pages": true_pages,
        "precision": true_pages / pages if pages else None,
        "recall": detected / incidents if incidents else None,
        "detection_s": detection,
        "reset_s": reset,
        "clean_day_pages": clean_pages,
        "replay_seconds": time.perf_counter() - started,
    }
    log(f"replay: precision {out['precision']}, recall {out['recall']}")
    return out


# -- 4. a real outage ------------------------------------------------------------------------------
def _live(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/v2/observe/live?window_s=60", timeout=5) as r:
        return json.loads(r.read())


def bench_outage(tmp: pathlib.Path, rate: float = 50, warm_s: float = 120) -> dict[str, Any]:
    example = build_example("digits")
    model = tmp / "outage" / "digits.onnx"
    model.parent.mkdir(parents=True)
    shutil.copy(example.model_path, model)
    spec = DeploymentSpec.from_dict(
        {
            "models": {
                "digits": {
                    "versions": {"1": {"path": str(model)}},
                    "replicas": 2,
                    "slo": {"availability": 0.999},
                }
            },
            "log": {"path": str(tmp / "outage" / "logs")},
        }
    )
    result: dict[str, Any] = {"rate": rate, "warm_s": warm_s}
    with start_server(spec) as server:
        loader = threading.Thread(
            target=run_load,
            args=(server.url,),
            kwargs={
                "model": "digits",
                "options": LoadOptions(rate=rate, duration_s=warm_s + 90, warmup_s=0),
            },
            daemon=True,
        )
        loader.start()
        time.sleep(warm_s)
        model.write_bytes(b"not a model")  # a replica started now fails to load
        assert server.proc is not None
        replicas = psutil.Process(server.proc.pid).children(recursive=True)
        killed = time.time()
        for p in replicas:
            p.kill()
        paged = None
        while time.time() - killed < 90:
            view = _live(server.url)
            for o in view["slo"]:
                for a in o["alerts"]:
                    if a["severity"] == "page" and a["state"] == "firing" and paged is None:
                        paged = (a["since"] - killed, a["pair"])
            if paged is not None:
                break
            time.sleep(0.25)
        result["paged_after_s"] = paged[0] if paged else None
        result["pair"] = paged[1] if paged else None
        result["burn_rates"] = view["slo"][0]["burn_rates"]
        loader.join(timeout=120)
    log(f"outage: paged after {result['paged_after_s']} s ({result['pair']})")
    return result


# -- 5. kill -9 during load ------------------------------------------------------------------------
def bench_kill9(tmp: pathlib.Path, rate: float = 200, seconds: float = 20) -> dict[str, Any]:
    example = build_example("digits")
    logs = tmp / "kill9" / "logs"
    spec = DeploymentSpec.from_dict(
        {
            "models": {"digits": {"versions": {"1": {"path": str(example.model_path)}}}},
            "log": {"path": str(logs), "flush_s": 2.0},
        }
    )
    answered: list[Any] = []
    with start_server(spec) as server:

        def go() -> None:
            answered.append(
                run_load(
                    server.url,
                    model="digits",
                    options=LoadOptions(rate=rate, duration_s=seconds + 10, warmup_s=0),
                )
            )

        loader = threading.Thread(target=go, daemon=True)
        loader.start()
        time.sleep(seconds)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)
        loader.join(timeout=120)
    files = sorted(logs.rglob("*.parquet"))
    readable, rows = 0, 0
    for f in files:
        rows += pq.read_table(f).num_rows
        readable += 1
    temps = len(list(logs.rglob("*.tmp")))
    # Every request answered 200 was answered before the kill: the log should hold them all but
    # the unflushed ones.
    ok = answered[0].overall.ok if answered else None
    out = {
        "rate": rate,
        "seconds_before_kill": seconds,
        "files": len(files),
        "readable": readable,
        "temp_files_left": temps,
        "rows": rows,
        "answered_ok": ok,
        "lost": None if ok is None else ok - rows,
        "lost_s": None if ok is None else (ok - rows) / rate,
        "bound": rate * 2.0,
    }
    log(f"kill9: {out}")
    return out


# -- 6. the cost of logging ------------------------------------------------------------------------
def findmax(
    model: str, npz: pathlib.Path, *, logging: bool, step: float, start: float, tmp: pathlib.Path
) -> dict[str, Any]:
    spec = DeploymentSpec.from_dict(
        {
            "models": {
                "minilm": {
                    "versions": {"1": {"path": model}},
                    "replicas": 2,
                    "threads": 1,
                    "batching": {"max_batch": 8, "max_wait_ms": 2, "max_queue": 4096},
                }
            },
            "log": {"enabled": logging, "path": str(tmp / "cost-logs")},
        }
    )
    with start_server(spec) as server:
        r = run_load(
            server.url,
            model="minilm",
            options=LoadOptions(
                find_max=True,
                rate=start,
                duration_s=step,
                inputs=npz,
                outputs=("sentence_embedding",),
                p99_ms=100.0,
                tolerance=0.025,
                warmup_s=3,
            ),
        )
        metrics = urllib.request.urlopen(f"{server.url}/metrics").read().decode()
    dropped = [ln for ln in metrics.splitlines() if ln.startswith("modelscale_log_dropped_total")]
    log(f"cost: logging {'on' if logging else 'off'}: {r.summary} ({load_avg()}) {dropped}")
    return {"logging": logging, "max_rps": r.max_rate_rps, "dropped": dropped}


def bench_cost(tmp: pathlib.Path, step: float, runs: int, start: float | None) -> dict[str, Any]:
    example = build_example("minilm")
    sample = np.load(example.model_path.parent / "minilm_sample.npz")
    npz = tmp / f"minilm_seq{SEQ}.npz"
    np.savez(npz, **{k: sample[k][:, :SEQ] for k in KEYS})
    rates: dict[bool, list[float]] = {True: [], False: []}
    for run in range(runs):
        order = (True, False) if run % 2 == 0 else (False, True)
        for on in order:
            r = findmax(
                str(example.model_path), npz, logging=on, step=step, start=start or 150, tmp=tmp
            )
            rates[on].append(r["max_rps"])
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    log(f"cost: with logging {rates[True]}, without {rates[False]}: {on / off:.1%}")
    return {"on": rates[True], "off": rates[False], "ratio_of_medians": on / off}


def bench_front_cpu(
    tmp: pathlib.Path, rate: float = 150, seconds: float = 20, runs: int = 3
) -> dict[str, Any]:
    """The front process's CPU per request (MiniLM, 2 x 1, batch 8 / 2 ms) at a fixed rate,
    with the request log on and off, alternating: a steadier view of logging's cost than the
    highest rate at a p99 bound."""
    from modelscale.workflow import CpuMeter

    example = build_example("minilm")
    sample = np.load(example.model_path.parent / "minilm_sample.npz")
    npz = tmp / f"minilm_seq{SEQ}.npz"
    np.savez(npz, **{k: sample[k][:, :SEQ] for k in KEYS})
    out: dict[str, list[float]] = {"on": [], "off": []}
    p99: dict[str, list[float]] = {"on": [], "off": []}
    for run in range(runs):
        for on in (True, False) if run % 2 == 0 else (False, True):
            spec = DeploymentSpec.from_dict(
                {
                    "models": {
                        "minilm": {
                            "versions": {"1": {"path": str(example.model_path)}},
                            "replicas": 2,
                            "batching": {"max_batch": 8, "max_wait_ms": 2, "max_queue": 4096},
                        }
                    },
                    "log": {"enabled": on, "path": str(tmp / "front-logs")},
                }
            )
            with start_server(spec) as server:
                assert server.proc is not None
                options = LoadOptions(
                    rate=rate,
                    duration_s=seconds,
                    inputs=npz,
                    outputs=("sentence_embedding",),
                    pattern="poisson",
                    warmup_s=2,
                )
                meter = CpuMeter(server.proc.pid)
                r = run_load(server.url, model="minilm", options=options)
                cpu = meter.per_request_ms(r.overall.ok)
            key = "on" if on else "off"
            out[key].append(cpu["front"])
            p99[key].append(r.overall.p99_ms)
            log(
                f"front CPU, log {key}: {cpu['front']:.3f} ms/request, p99 {r.overall.p99_ms:.1f} ms ({load_avg()})"
            )
    return {
        "rate": rate,
        "seconds": seconds,
        "front_ms_per_request": out,
        "p99_ms": p99,
        "median_on": statistics.median(out["on"]),
        "median_off": statistics.median(out["off"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="writer,stats,replay,outage,kill9,cost")
    parser.add_argument("--step", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--start", type=float, default=None)
    parser.add_argument("--out", default="bench/results/observe.json")
    args = parser.parse_args()
    only = set(args.only.split(","))
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-observe-"))
    report: dict[str, Any] = {
        "machine": machine_info().to_dict(),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "load_avg_start": load_avg(),
    }
    if "writer" in only:
        report["writer"] = bench_writer(tmp)
    if "stats" in only:
        report["stats"] = bench_stats(tmp)
    if "replay" in only:
        report["replay"] = bench_replay()
    if "outage" in only:
        report["outage"] = bench_outage(tmp)
    if "kill9" in only:
        report["kill9"] = bench_kill9(tmp)
    if "front" in only:
        report["front"] = bench_front_cpu(tmp)
    if "cost" in only:
        report["cost"] = bench_cost(tmp, args.step, args.runs, args.start)
    report["load_avg_end"] = load_avg()
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # keep the sections of earlier runs that this one did not run
        old = json.loads(out.read_text())
        report = {**old, **report}
    out.write_text(json.dumps(report, indent=2, default=str))
    log(f"wrote {out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
