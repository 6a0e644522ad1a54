"""The log writer: files appear whole or not at all, failures lose nothing, summaries are right."""

from __future__ import annotations

import pathlib
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from modelscale.observe import LogLocation, LogWriter, query_log, records_to_table
from modelscale.serve import RequestRecord
from modelscale.serve.codec import DecodedRequest


def _rec(
    inputs: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
    status: int = 200,
    t: float | None = None,
) -> RequestRecord:
    req = DecodedRequest(
        id=None,
        inputs=inputs,
        rows=1,
        outputs=tuple(outputs),
        binary_outputs=frozenset(),
        timeout_s=None,
        key=(),
    )
    return RequestRecord(
        time=t if t is not None else time.time(),
        request_id=None,
        model="m",
        version="1",
        status=status,
        latency_s=0.001,
        request=req,
        outputs=outputs,
    )


def test_summaries_of_nan_int_string_scalar_and_empty_tensors() -> None:
    x = np.array([[1.0, np.nan, 3.0]], dtype=np.float32)
    records = [
        _rec(
            {
                "x": x,
                "ids": np.array([[5, 7]], dtype=np.int64),
                "text": np.array(["a b"], dtype=object),
                "step": np.array(3.5, dtype=np.float32),  # 0-d
                "none": np.zeros((1, 0), dtype=np.float32),
                "allnan": np.full((1, 2), np.nan, dtype=np.float64),
            },
            {"scores": np.array([[0.1, 0.7, 0.2]], dtype=np.float32)},
        ),
        _rec({"x": x * 2}, {"scores": np.array([[0.9, 0.05, 0.05]], dtype=np.float32)}),
    ]
    rows = records_to_table(records).to_pylist()
    first = {s["name"]: s for s in rows[0]["inputs"]}
    assert first["x"]["nan"] == 1 and first["x"]["mean"] == pytest.approx(2.0)
    assert (first["x"]["min"], first["x"]["max"]) == (1.0, 3.0)
    assert first["ids"]["mean"] == 6.0 and first["ids"]["dtype"] == "<i8"
    assert first["text"]["mean"] is None and first["text"]["shape"] == [1]
    assert first["step"]["shape"] == [] and first["step"]["mean"] == 3.5
    assert first["none"]["mean"] is None and first["none"]["shape"] == [1, 0]
    assert first["allnan"]["nan"] == 2 and first["allnan"]["mean"] is None
    second = {s["name"]: s for s in rows[1]["inputs"]}
    assert second["x"]["max"] == 6.0 and second["x"]["nan"] == 1  # stacked with the first
    assert rows[0]["top_class"] == [1] and rows[0]["top_score"] == [pytest.approx(0.7)]
    assert rows[1]["top_class"] == [0]


def test_files_are_renamed_into_place_and_partitioned_by_model_and_hour(
    tmp_path: pathlib.Path,
) -> None:
    writer = LogWriter(LogLocation.of(tmp_path / "logs"))
    hour = 3_600 * (int(time.time()) // 3_600)
    x = {"x": np.ones((1, 2), dtype=np.float32)}
    writer.record([_rec(x, {}, t=hour - 1), _rec(x, {}, t=hour + 1), _rec(x, {}, t=hour + 2)])
    assert writer.flush() == 3
    files = sorted((tmp_path / "logs").rglob("*"))
    parquet = [f for f in files if f.suffix == ".parquet"]
    assert len(parquet) == 2 and not [f for f in files if f.name.endswith(".tmp")]
    assert sorted(pq.read_metadata(f).num_rows for f in parquet) == [1, 2]
    assert all(f.relative_to(tmp_path / "logs").parts[0] == "m" for f in parquet)


def test_a_failed_write_keeps_the_records_for_the_next_flush(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "logs"
    writer = LogWriter(LogLocation.of(root))
    first = _rec({"x": np.ones((1, 2), dtype=np.float32)}, {})
    writer.record([first])
    assert writer.flush() == 1
    moved = tmp_path / "moved"
    (root / "m").rename(moved)
    (root / "m").write_text("a file where the model's folder goes: writing fails")
    writer.record([first, first])
    assert writer.flush() == 0
    assert writer.write_errors == 1 and writer.stats().pending == 2
    (root / "m").unlink()
    moved.rename(root / "m")
    assert writer.flush() == 2
    assert query_log(str(root), "SELECT count(*) FROM requests").rows == [[3]]


def test_a_full_buffer_keeps_the_newest_and_counts_the_rest() -> None:
    class Broken(LogLocation):
        pass

    writer = LogWriter(LogLocation.of("/dev/null/cannot"), capacity=3)
    x = {"x": np.ones((1, 2), dtype=np.float32)}
    writer.record([_rec(x, {}, t=float(i)) for i in range(5)])
    assert writer.flush() == 0 and writer.write_errors == 1
    assert writer.failed == 2 and writer.stats().pending == 3
    del Broken


def test_sampling_keeps_errors_and_about_the_share_asked(tmp_path: pathlib.Path) -> None:
    writer = LogWriter(LogLocation.of(tmp_path / "logs"), sample=0.25, seed=1)
    x = {"x": np.ones((1, 2), dtype=np.float32)}
    writer.record(
        [_rec(x, {}) for _ in range(4_000)] + [_rec(x, {}, status=500) for _ in range(10)]
    )
    writer.flush()
    counts = dict(
        query_log(str(tmp_path / "logs"), "SELECT status, count(*) FROM requests GROUP BY 1").rows
    )
    assert counts[500] == 10
    assert 850 < counts[200] < 1_150 and writer.sampled_out == 4_000 - counts[200]


def test_an_unwritable_location_is_refused_naming_the_setting(tmp_path: pathlib.Path) -> None:
    from modelscale.errors import InvalidInput

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(
        InvalidInput, match=r"log\.path: cannot write the request log to .*file/logs"
    ):
        LogLocation.of(blocker / "logs").check_writable()
    with pytest.raises(InvalidInput, match="cannot open 'nosuchscheme://x' as a filesystem"):
        LogLocation.of("nosuchscheme://x")


def test_a_filesystem_url_works_like_a_directory() -> None:
    # fsspec's in-memory filesystem stands for an object store (s3://...): a URL, no local path.
    import uuid

    from modelscale.observe import log_stats

    url = f"memory://logs-{uuid.uuid4().hex}"
    location = LogLocation.of(url)
    location.check_writable()
    writer = LogWriter(location)
    writer.record([_rec({"x": np.ones((1, 2), dtype=np.float32)}, {}) for _ in range(5)])
    assert writer.flush() == 5
    assert [f.endswith(".parquet") for f in location.files()] == [True]
    assert query_log(url, "SELECT count(*) FROM requests").rows == [[5]]
    assert log_stats(url, by=["model"]).rows[0].requests == 5
