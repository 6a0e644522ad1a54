"""The request log's writer: a recorder of the server's pipeline that writes Parquet files.

Records arrive in the writer's own thread (the pipeline's bounded queue keeps them off the request
path; a full queue drops and counts them). The writer keeps the sampled share of successful
requests and every error, and at least every ``flush_s`` writes what it holds to one Parquet file
per model and hour::

    <root>/<model>/<YYYY-MM-DD>/<HH>/part-<unix ms>-<pid>-<n>.parquet

Each file is written under a temporary name (``.part-....parquet.tmp``) and renamed when
complete, so a crash loses at most the records not yet written (``flush_s`` of them) and never
leaves a half-written ``.parquet``; readers skip the temporary names. The root is a directory or
any filesystem URL pyarrow knows (``s3://bucket/prefix``, ``gs://``, ...; others through fsspec),
so several servers can write one log.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from modelscale.errors import InvalidInput
from modelscale.observe.schema import PAYLOADS_DIR, payloads_table, records_to_table
from modelscale.observe.storage import LogLocation

if TYPE_CHECKING:
    from modelscale.serve import RequestRecord

__all__ = ["LogWriter", "WriterStats"]

log = logging.getLogger("modelscale.observe")

RECENT = 2_000
"""Rows the writer keeps in memory after writing them (for ``GET /v2/logs``)."""
_CHUNK = 256
"""Records summarised at a time; the writer yields the GIL between chunks."""


@dataclass(frozen=True)
class WriterStats:
    """What the writer has done since it started."""

    written: int
    """Records in files."""
    files: int
    sampled_out: int
    """Successful requests left out by ``log.sample``."""
    failed: int
    """Records dropped because writing failed for longer than the buffer could hold them."""
    pending: int
    """Records held for the next file."""
    write_errors: int
    """Failed attempts to write a file (retried on the next flush)."""


class LogWriter:
    """Writes finished requests to Parquet (a ``TickingRecorder`` of the server's pipeline)."""

    name = "log"
    threaded = True

    def __init__(
        self,
        location: LogLocation,
        *,
        sample: float = 1.0,
        flush_s: float = 2.0,
        capacity: int = 65_536,
        summaries: bool = True,
        payloads: bool = False,
        seed: int | None = None,
    ) -> None:
        if not 0 <= sample <= 1:
            raise InvalidInput(
                f"log.sample must be between 0 and 1. Got {sample!r} instead.", field="log.sample"
            )
        self.location = location
        self.sample = sample
        self.tick_s = flush_s
        self.capacity = capacity
        """The pipeline queue's bound; the writer also holds at most this many unwritten."""
        self.summaries = summaries
        self.payloads = payloads
        """Also write the payloads the privacy stage left (``extras["payload"]``, already under
        the model's policy) to their own dataset, purged on their own, shorter schedule."""
        self._random = random.Random(seed)
        self._pending: deque[RequestRecord] = deque()
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self.written = 0
        self.files = 0
        self.sampled_out = 0
        self.failed = 0
        self.write_errors = 0
        self._recent: deque[pa.Table] = deque()

    def stats(self) -> WriterStats:
        """Counts since start."""
        return WriterStats(
            written=self.written,
            files=self.files,
            sampled_out=self.sampled_out,
            failed=self.failed,
            pending=len(self._pending),
            write_errors=self.write_errors,
        )

    def record(self, records: Sequence[RequestRecord]) -> None:
        """Keep the sampled share of ``records`` (every error) for the next file."""
        sample, rand = self.sample, self._random.random
        with self._lock:
            for r in records:
                if sample >= 1.0 or r.status >= 400 or rand() < sample:
                    self._pending.append(r)
                else:
                    self.sampled_out += 1
            over = len(self._pending) - self.capacity
            for _ in range(max(0, over)):  # writing has been failing: keep the newest
                self._pending.popleft()
                self.failed += 1

    def tick(self, *, final: bool = False) -> None:
        """Write what is held (called every ``flush_s`` and when the server stops)."""
        self.flush()

    def flush(self) -> int:
        """Write every held record now; the number written (0 when writing failed)."""
        with self._lock:
            batch = list(self._pending)
        if not batch:
            return 0
        try:
            parts = []
            for i in range(0, len(batch), _CHUNK):
                parts.append(records_to_table(batch[i : i + _CHUNK], summaries=self.summaries))
                time.sleep(0)  # let the event loop's thread have the GIL between chunks
            table = pa.concat_tables(parts)
            written = self._write(table)
            if self.payloads:
                self._write(payloads_table(batch), under=PAYLOADS_DIR)
        except Exception as exc:
            self.write_errors += 1
            log.warning(
                "request log: could not write %d records to %s (%s); retrying at the next flush",
                len(batch),
                self.location.display,
                exc,
            )
            return 0
        with self._lock:
            for _ in range(len(batch)):
                self._pending.popleft()
        self.written += len(batch)
        with self._lock:
            self._recent.append(table.slice(max(0, table.num_rows - RECENT)))
            while sum(t.num_rows for t in self._recent) - self._recent[0].num_rows >= RECENT:
                self._recent.popleft()
        return written

    def recent(self) -> list[dict[str, Any]]:
        """The last rows written (at most ``RECENT``), oldest first, as dicts: what
        ``GET /v2/logs`` answers from before it reads files. Converted when asked for, not at
        every flush."""
        with self._lock:
            tables = list(self._recent)
        if not tables:
            return []
        rows = pa.concat_tables(tables).to_pylist()
        return rows[-RECENT:]

    def _write(self, table: pa.Table, *, under: str = "") -> int:
        """One file per model and hour of ``table`` (below the folder ``under`` of the root);
        each written to a temporary name first."""
        if table.num_rows == 0:
            return 0
        models = table.column("model").to_pylist()
        hours = [t // 3_600_000_000 for t in table.column("time").cast(pa.int64()).to_pylist()]
        parts: dict[tuple[str, int], list[int]] = {}
        for i, key in enumerate(zip(models, hours, strict=True)):
            parts.setdefault(key, []).append(i)
        fs, root = self.location.filesystem, self.location.root
        for (model, hour), rows in parts.items():
            part = table if len(parts) == 1 else table.take(pa.array(rows, type=pa.int64()))
            when = dt.datetime.fromtimestamp(hour * 3600, tz=dt.UTC)
            base = f"{root}/{under}" if under else root
            folder = f"{base}/{model}/{when:%Y-%m-%d}/{when:%H}"
            name = f"part-{int(time.time() * 1000)}-{os.getpid()}-{next(self._seq)}.parquet"
            tmp = f"{folder}/.{name}.tmp"
            fs.create_dir(folder, recursive=True)
            with fs.open_output_stream(tmp) as out:
                pq.write_table(part, out, compression="zstd")
            fs.move(tmp, f"{folder}/{name}")
            self.files += 1
        return table.num_rows
