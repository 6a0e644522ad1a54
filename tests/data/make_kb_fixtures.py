"""Write the knowledge bases that this modelscale release leaves behind, as upgrade test fixtures.

    .venv/bin/python -m tests.data.make_kb_fixtures --pg-url "$(scripts/start-postgres)"

writes ``tests/data/kb-<version>.sqlite`` and ``tests/data/kb-<version>.postgresql.sql`` (a plain
``pg_dump --no-owner --no-privileges --inserts`` of a scratch database, schema and data; ``--inserts``
so that a test can load it through psycopg without psql). Both hold the same content: one real
profile of a tiny MLP and runs of several kinds with parent links, failed and noted runs, and three
model versions with lineage. Run it with each release, before its schema changes, and keep the files:
the upgrade tests open every fixture with the newest code.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import pathlib
import shutil
import subprocess
import tempfile
from typing import Any, ClassVar

from sqlalchemy import create_engine, text
from tests.onnx_models import save_mlp

import modelscale
from modelscale.profile import MeasureOptions, ProfileResult, profile_model
from modelscale.result import Result
from modelscale.store import Store
from modelscale.store.api import _normalise_url

__all__ = ["main", "write_knowledge_base"]

HERE = pathlib.Path(__file__).resolve().parent
PG_DATABASE = "modelscale_kb_fixture"


@dataclasses.dataclass(frozen=True)
class Compressed(Result):
    kind: ClassVar[str] = "compress"
    chosen_sha256: str
    accuracy_drop: float
    trials: list[dict[str, Any]]
    summary: str
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Planned(Result):
    kind: ClassVar[str] = "plan"
    replicas: int
    p99_ms: float | None
    summary: str
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Loaded(Result):
    kind: ClassVar[str] = "load"
    achieved_rps: float
    errors: dict[str, int]
    summary: str
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Note(Result):
    kind: ClassVar[str] = "note"
    text: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


def _sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def write_knowledge_base(store: Store, profile: ProfileResult, model_sha: str) -> None:
    """Record the fixture's model versions and runs into ``store``."""
    int8, pruned = _sha("mlp.int8"), _sha("mlp.int8.pruned")
    store.register_model(
        model_sha, name="mlp", path="models/mlp.onnx", size_bytes=3_000, meta={"opset": 17}
    )
    store.register_model(
        int8, name="mlp.int8", path="models/mlp.int8.onnx", parent_sha256=model_sha
    )
    store.register_model(pruned, name="mlp.int8.pruned", parent_sha256=int8, meta={})
    first = store.record(profile, model_version=model_sha)
    squeeze = store.record(
        Compressed(
            chosen_sha256=int8,
            accuracy_drop=0.0042,
            trials=[
                {"recipe": "int8", "drop": 0.0042, "ok": True},
                {"recipe": "prune50", "drop": None},
            ],
            summary="int8: 2.1x faster, accuracy -0.42%",
            params={"max_drop": 0.01, "recipes": ["int8", "prune50"]},
        ),
        model_version=model_sha,
        parent_run_id=first,
    )
    again = store.record(profile, model_version=int8, parent_run_id=squeeze)
    plan = store.record(
        Planned(
            replicas=3,
            p99_ms=41.5,
            summary="3 replicas x 2 threads",
            params={"rps": 1000, "p99_ms": 100, "dims": {"seq": 32}},
        ),
        model_version=int8,
        parent_run_id=again,
    )
    store.record(
        Loaded(
            achieved_rps=0.0,
            errors={"connect": 12},
            summary="server did not answer",
            params={"rps": 1000, "duration_s": 5.0},
        ),
        model_version=int8,
        parent_run_id=plan,
        status="failed",
        note="port 8000 was taken",
    )
    store.record(Note(text="pruned by hand: ünïcode — 雪"), model_version=pruned)
    store.record(Note(text="no model", params={"empty": {}, "none": None, "big": 2**53}))


def main() -> None:
    """Write the SQLite fixture, and the PostgreSQL dump when a server URL is given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", help="a PostgreSQL server; a scratch database is made on it")
    args = parser.parse_args()
    version = modelscale.__version__
    with tempfile.TemporaryDirectory() as tmp:
        model = save_mlp(pathlib.Path(tmp) / "mlp.onnx")
        profile = profile_model(
            model, batches=[1, 2], threads=[1], measure=MeasureOptions(max_time_s=0.2)
        )
        model_sha = profile.model["sha256"]

        sqlite_path = HERE / f"kb-{version}.sqlite"
        sqlite_path.unlink(missing_ok=True)
        store = Store(f"sqlite:///{sqlite_path}")
        write_knowledge_base(store, profile, model_sha)
        store.close()
        print(f"wrote {sqlite_path}")

        if args.pg_url:
            url = _normalise_url(args.pg_url)
            admin = create_engine(url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{PG_DATABASE}"'))
                conn.execute(text(f'CREATE DATABASE "{PG_DATABASE}"'))
            store = Store(url.set(database=PG_DATABASE).render_as_string(hide_password=False))
            write_knowledge_base(store, profile, model_sha)
            store.close()
            dump = HERE / f"kb-{version}.postgresql.sql"
            pg_dump = shutil.which("pg_dump") or "pg_dump"
            command = [pg_dump, "--no-owner", "--no-privileges", "--inserts"]
            command += ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
            command += ["-U", url.username or "postgres", PG_DATABASE]
            dump.write_text(
                subprocess.run(command, check=True, capture_output=True, text=True).stdout
            )
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{PG_DATABASE}"'))
            admin.dispose()
            print(f"wrote {dump}")


if __name__ == "__main__":
    main()
