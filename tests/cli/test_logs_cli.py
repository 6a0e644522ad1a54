"""`modelscale logs`: tail, query and stats over a request log, and what they say to bad input."""

from __future__ import annotations

import pathlib
import time

import numpy as np
import pytest

from modelscale.observe import LogLocation, LogWriter
from modelscale.serve import RequestRecord
from modelscale.serve.codec import DecodedRequest
from tests.cli.helpers import invoke, invoke_json
from tests.cli.test_monitor_cli import assert_bad_input


def _record(i: int, *, t0: float, version: str = "1", status: int = 200) -> RequestRecord:
    x = np.full((1, 4), float(i), dtype=np.float32)
    request = DecodedRequest(
        id=None,
        inputs={"x": x},
        rows=1,
        outputs=("y",),
        binary_outputs=frozenset(),
        timeout_s=None,
        key=(),
    )
    return RequestRecord(
        time=t0 + i,
        request_id=f"r{i}",
        model="mlp",
        version=version,
        status=status,
        latency_s=(i % 10 + 1) / 1000,
        queue_s=0.0001,
        infer_s=0.0002,
        roundtrip_s=0.0003,
        batch_rows=1,
        rows=1,
        request=request,
        outputs={"y": x * 2},
        error="bad input" if status >= 400 else None,
    )


@pytest.fixture
def log_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A log of 100 requests over the last 100 s: versions 1 and 2, every tenth a 503."""
    root = tmp_path / "logs"
    writer = LogWriter(LogLocation.of(root))
    t0 = time.time() - 100
    writer.record(
        [
            _record(i, t0=t0, version=str(1 + i % 2), status=503 if i % 10 == 0 else 200)
            for i in range(100)
        ]
    )
    assert writer.flush() == 100
    return root


def test_stats_by_version_match_numpy(log_dir: pathlib.Path) -> None:
    out = invoke_json("logs", "stats", str(log_dir), "--by", "version")
    rows = {r["group"]["version"]: r for r in out["rows"]}
    assert set(rows) == {"1", "2"} and rows["1"]["requests"] == 50
    assert rows["2"]["errors"] == 0 and rows["1"]["errors"] == 10  # every tenth is even: version 1
    lat = [(i % 10 + 1) for i in range(100) if i % 2 == 0]
    assert rows["1"]["p99_ms"] == pytest.approx(float(np.percentile(lat, 99)))
    plain = invoke("logs", "stats", str(log_dir), "--by", "version", "--since", "1h")
    assert plain.exit_code == 0 and "10 (20.00%)" in plain.stdout


def test_stats_since_leaves_older_requests_out(log_dir: pathlib.Path) -> None:
    out = invoke_json("logs", "stats", str(log_dir), "--since", "30s")
    assert 0 < sum(r["requests"] for r in out["rows"]) < 100


def test_query_runs_sql_over_the_view(log_dir: pathlib.Path) -> None:
    out = invoke_json(
        "logs",
        "query",
        str(log_dir),
        "SELECT status, count(*) AS n FROM requests GROUP BY status ORDER BY status",
    )
    assert out == {"columns": ["status", "n"], "rows": [[200, 90], [503, 10]]}
    summaries = invoke_json(
        "logs", "query", str(log_dir), "SELECT inputs[1].mean FROM requests WHERE request_id = 'r7'"
    )
    assert summaries["rows"] == [[7.0]]


def test_tail_prints_the_newest_records(log_dir: pathlib.Path) -> None:
    result = invoke("logs", "tail", str(log_dir), "--no-follow", "-n", "3", "--status", "5xx")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3 and all("503" in ln for ln in lines) and "r90" in lines[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("query", "{log}", "SELEC 1"), "the query is not valid SQL: Parser Error"),
        (("query", "{log}", "SELECT nope FROM requests"), "the query failed: Binder Error"),
        (("query", "{log}", "COPY requests TO '/tmp/x.csv'"), "the request log is read-only"),
        (("query", "{log}", "DROP VIEW requests"), "the request log is read-only"),
        (
            ("query", "{log}", "SELECT * FROM read_csv('/etc/passwd')"),
            "file system operations are disabled",
        ),
        (("query", "/nonexistent/logs", "SELECT 1"), "is not a directory"),
        (("stats", "{log}", "--by", "colour"), "cannot group by 'colour'"),
        (("stats", "{log}", "--since", "last tuesday"), "is not a time"),
        (("tail", "{log}", "--status", "teapot", "--no-follow"), "is not a status"),
        (("tail", "http://127.0.0.1:9", "--no-follow"), "cannot reach http://127.0.0.1:9"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    log_dir: pathlib.Path, args: tuple[str, ...], message: str
) -> None:
    before = sorted(log_dir.rglob("*"))
    result = invoke("logs", *(a.replace("{log}", str(log_dir)) for a in args))
    assert_bad_input(result, message)
    assert sorted(log_dir.rglob("*")) == before  # nothing written, nothing lost
    assert not pathlib.Path("/tmp/x.csv").exists()
