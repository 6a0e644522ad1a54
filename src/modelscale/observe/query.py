"""Reading the request log with DuckDB: SQL over a read-only view ``requests``, stats, recent rows.

The log's Parquet files are one Arrow dataset, registered in an in-memory DuckDB database as the
view ``requests``; DuckDB scans it lazily, reading only the columns and row groups a query needs.
A query may only read: any statement but a SELECT is refused before it runs, and the connection
is locked against reaching files or other databases (``enable_external_access = false``), so
neither ``COPY ... TO`` nor ``ATTACH`` nor ``read_csv('...')`` can run through ``logs query``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import duckdb
import pyarrow as pa

from modelscale.errors import InvalidInput
from modelscale.observe.schema import LOG_SCHEMA
from modelscale.observe.storage import LogLocation
from modelscale.result import Result

__all__ = [
    "GROUP_KEYS",
    "LogQuery",
    "LogStats",
    "StatsRow",
    "connect_log",
    "log_stats",
    "parse_since",
    "query_log",
    "recent_records",
]

GROUP_KEYS = ("model", "version", "arm", "status", "key_id", "hour", "minute")
"""What ``logs stats --by`` can group by."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


def parse_since(
    text: str | None, *, now: dt.datetime | None = None, field: str = "since"
) -> dt.datetime | None:
    """'1h', '30m', '2d' (that long ago), an ISO time, or unix seconds -> a UTC datetime."""
    if text is None or text == "":
        return None
    now = now or dt.datetime.now(dt.UTC)
    m = _DURATION.match(text)
    if m:
        return now - dt.timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
    try:
        return dt.datetime.fromtimestamp(float(text), tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{field} {text!r} is not a time: expected a duration such as 30m, 1h or 2d, an ISO "
            "time such as 2026-12-03T15:00:00Z, or unix seconds.",
            field=field,
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def connect_log(where: str | LogLocation) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the log as the read-only view ``requests``."""
    location = where if isinstance(where, LogLocation) else LogLocation.of(where, field="log")
    files = location.files()
    con = duckdb.connect(":memory:")
    if files:
        con.register("requests", location.dataset(files))
    else:
        con.register("requests", LOG_SCHEMA.empty_table())
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


@dataclass(frozen=True)
class LogQuery(Result):
    """The answer to one SQL query over the request log."""

    kind: ClassVar[str] = "logs"

    columns: list[str]
    rows: list[list[Any]]
    params: dict[str, Any] = field(default_factory=dict)


def query_log(where: str | LogLocation, sql: str) -> LogQuery:
    """Run one read-only SQL statement over the view ``requests``.

    Raises InvalidInput (field ``sql``) naming DuckDB's error in one line, for a statement that
    is not a SELECT, or for more than one statement.
    """
    con = connect_log(where)
    try:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise InvalidInput(
                f"the query is not valid SQL: {_one_line(exc)}", field="sql"
            ) from None
        if len(statements) != 1:
            raise InvalidInput(f"expected one SQL statement; got {len(statements)}.", field="sql")
        kind = statements[0].type
        if kind != duckdb.StatementType.SELECT:
            raise InvalidInput(
                f"the request log is read-only: only SELECT queries run (this is a "
                f"{kind.name} statement).",
                field="sql",
            )
        try:
            cur = con.execute(sql)
            columns = [d[0] for d in cur.description or []]
            rows = [list(r) for r in cur.fetchall()]
        except duckdb.Error as exc:
            raise InvalidInput(f"the query failed: {_one_line(exc)}", field="sql") from None
    finally:
        con.close()
    return LogQuery(columns=columns, rows=rows, params={"log": str(where), "sql": sql})


@dataclass(frozen=True)
class StatsRow:
    """One group of requests."""

    group: dict[str, Any]
    requests: int
    errors: int
    """Answered 5xx (the server's failures)."""
    client_errors: int
    """Answered 4xx."""
    error_rate: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    mean_ms: float | None


@dataclass(frozen=True)
class LogStats(Result):
    """Requests, errors and latency percentiles per group (``logs stats``)."""

    kind: ClassVar[str] = "logs"

    by: list[str]
    rows: list[StatsRow]
    since: str | None
    params: dict[str, Any] = field(default_factory=dict)


def log_stats(
    where: str | LogLocation,
    *,
    by: Sequence[str] = ("model", "version"),
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    model: str | None = None,
) -> LogStats:
    """Count, error rate and latency p50/p90/p99 per group (DuckDB's ``quantile_cont``: the same
    linear interpolation as numpy's default percentile).

    Latency percentiles are over answered requests but client errors (4xx), as ``/metrics``."""
    for key in by:
        if key not in GROUP_KEYS:
            raise InvalidInput(
                f"cannot group by {key!r}; expected any of {', '.join(GROUP_KEYS)}.", field="by"
            )
    exprs = {
        "hour": "date_trunc('hour', time)",
        "minute": "date_trunc('minute', time)",
    }
    keys = [f"{exprs.get(k, k)} AS {k}" for k in by]
    where_sql, args = _filters(since=since, until=until, model=model)
    timed = "FILTER (WHERE status < 400 OR status >= 500)"
    sql = f"""
        SELECT {", ".join([*keys, ""])}
               count(*) AS requests,
               count(*) FILTER (WHERE status >= 500) AS errors,
               count(*) FILTER (WHERE status >= 400 AND status < 500) AS client_errors,
               quantile_cont(latency_ms, 0.5) {timed},
               quantile_cont(latency_ms, 0.9) {timed},
               quantile_cont(latency_ms, 0.99) {timed},
               avg(latency_ms) {timed}
        FROM requests {where_sql}
        {"GROUP BY ALL ORDER BY ALL" if by else ""}
    """
    con = connect_log(where)
    try:
        out = con.execute(sql, args).fetchall()
    except duckdb.Error as exc:
        raise InvalidInput(f"cannot read the request log: {_one_line(exc)}", field="log") from None
    finally:
        con.close()
    rows = []
    n = len(by)
    for r in out:
        requests = int(r[n])
        if requests == 0:
            continue
        rows.append(
            StatsRow(
                group={k: _plain(v) for k, v in zip(by, r[:n], strict=True)},
                requests=requests,
                errors=int(r[n + 1]),
                client_errors=int(r[n + 2]),
                error_rate=int(r[n + 1]) / requests,
                p50_ms=r[n + 3],
                p90_ms=r[n + 4],
                p99_ms=r[n + 5],
                mean_ms=r[n + 6],
            )
        )
    return LogStats(
        by=list(by),
        rows=rows,
        since=since.isoformat() if since else None,
        params={"log": str(where), "by": list(by), "model": model},
    )


def _plain(v: Any) -> Any:
    return v.isoformat() if isinstance(v, dt.datetime) else v


def _filters(
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    model: str | None = None,
    status: str | None = None,
    after: dt.datetime | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if since is not None:
        clauses.append("time >= ?")
        args.append(since)
    if after is not None:
        clauses.append("time > ?")
        args.append(after)
    if until is not None:
        clauses.append("time < ?")
        args.append(until)
    if model is not None:
        clauses.append("model = ?")
        args.append(model)
    if status is not None:
        lo, hi = status_range(status)
        clauses.append("status >= ? AND status <= ?")
        args.extend([lo, hi])
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args


def status_range(text: str) -> tuple[int, int]:
    """'200' -> (200, 200); '5xx' -> (500, 599); 'error' -> (400, 599)."""
    t = text.strip().lower()
    if t == "error":
        return 400, 599
    if re.fullmatch(r"[1-5]xx", t):
        return int(t[0]) * 100, int(t[0]) * 100 + 99
    if re.fullmatch(r"[1-5]\d\d", t):
        return int(t), int(t)
    raise InvalidInput(
        f"status {text!r} is not a status: expected a code such as 503, a class such as 5xx, "
        "or 'error' (4xx and 5xx).",
        field="status",
    )


def recent_records(
    where: str | LogLocation,
    *,
    after: dt.datetime | None = None,
    model: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The ``limit`` oldest records after ``after`` (the newest ``limit`` when ``after`` is
    None), oldest first, as JSON-ready dicts (``time`` in unix seconds)."""
    where_sql, args = _filters(after=after, model=model, status=status)
    order = "ASC" if after is not None else "DESC"
    con = connect_log(where)
    try:
        table = con.sql(
            f"SELECT * FROM requests {where_sql} ORDER BY time {order} LIMIT {int(limit)}",
            params=args,
        ).to_arrow_table()
    except duckdb.Error as exc:
        raise InvalidInput(f"cannot read the request log: {_one_line(exc)}", field="log") from None
    finally:
        con.close()
    rows = rows_to_json(table)
    return rows if after is not None else rows[::-1]


def rows_to_json(table: pa.Table | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Log rows as JSON-ready dicts: ``time`` as unix seconds."""
    rows = table.to_pylist() if isinstance(table, pa.Table) else table
    out = []
    for r in rows:
        r = dict(r)
        t = r.get("time")
        if isinstance(t, dt.datetime):
            r["time"] = t.timestamp()
        out.append(r)
    return out
