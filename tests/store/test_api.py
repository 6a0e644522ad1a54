from __future__ import annotations

import dataclasses
import os
import pathlib
import stat
from typing import Any, ClassVar

import pytest

from modelscale.errors import InvalidInput, StoreError
from modelscale.result import Result
from modelscale.store import RUN_KINDS, Store


@dataclasses.dataclass(frozen=True)
class FakeProfile(Result):
    """A minimal result of kind 'profile' (the real one needs a model; the store does not care)."""

    kind: ClassVar[str] = "profile"
    value: float
    summary: str
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class NoteResult(Result):
    kind: ClassVar[str] = "note"
    text: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


def test_record_and_read_back(db_url: str) -> None:
    store = Store(db_url)
    store.register_model("a" * 64, name="digits", path="/m/digits.onnx", size_bytes=123)
    run_id = store.record(
        FakeProfile(value=1.5, summary="fast", params={"batches": [1, 2]}), model_version="a" * 64
    )
    run = store.run(run_id)
    assert run.kind == "profile"
    assert run.model_version == "a" * 64
    assert run.model_name == "digits"
    assert run.params == {"batches": [1, 2]}
    assert run.results == {"value": 1.5, "summary": "fast"}
    assert run.machine["cpu_model"]
    assert "onnxruntime" in run.machine["libraries"]
    assert isinstance(run.machine["has_vnni"], bool)
    store.close()


def test_filters_and_order(db_url: str) -> None:
    store = Store(db_url)
    store.register_model("a" * 64, name="digits")
    store.register_model("b" * 64, name="minilm")
    ids = [
        store.record(FakeProfile(value=i, summary="", params={}), model_version=mv)
        for i, mv in enumerate(["a" * 64, "b" * 64, "a" * 64])
    ]
    store.record(NoteResult(text="hello"))
    assert [r.id for r in store.runs(model="digits")] == [ids[2], ids[0]]
    assert [r.id for r in store.runs(model="bbbb")] == [ids[1]]
    assert [r.kind for r in store.runs(kind="note")] == ["note"]
    assert len(store.runs(limit=2)) == 2
    assert store.runs()[0].kind == "note"  # newest first
    with pytest.raises(InvalidInput, match="Unknown run kind 'bogus'"):
        store.runs(kind="bogus")


def test_lineage(db_url: str) -> None:
    store = Store(db_url)
    store.register_model("p" * 64, name="digits")
    store.register_model("c" * 64, name="digits-int8", parent_sha256="p" * 64)
    store.register_model("g" * 64, name="digits-int8-pruned", parent_sha256="c" * 64)
    chain = store.lineage("g" * 64)
    assert [m.name for m in chain] == ["digits-int8-pruned", "digits-int8", "digits"]
    # registering again is idempotent and keeps the first name
    store.register_model("p" * 64, name="renamed")
    assert store.model("p" * 64).name == "digits"


def test_parent_run_link(db_url: str) -> None:
    store = Store(db_url)
    parent = store.record(NoteResult(text="parent"))
    child = store.record(NoteResult(text="child"), parent_run_id=parent)
    assert store.run(child).parent_run_id == parent


def test_schema_ready_for_future_kinds() -> None:
    for kind in ("profile", "compress", "plan", "load", "abtest", "drift", "note", "laws"):
        assert kind in RUN_KINDS


def test_failed_write_leaves_earlier_runs_intact(db_url: str) -> None:
    store = Store(db_url)
    keep = store.record(NoteResult(text="keep me"))

    @dataclasses.dataclass(frozen=True)
    class Unserialisable(Result):
        kind: ClassVar[str] = "note"
        blob: object
        params: dict[str, Any] = dataclasses.field(default_factory=dict)

    with pytest.raises((StoreError, TypeError)):
        store.record(Unserialisable(blob=object()))
    runs = store.runs()
    assert [r.id for r in runs] == [keep]
    assert runs[0].results["text"] == "keep me"
    # and the store still works afterwards
    store.record(NoteResult(text="after"))
    assert len(store.runs()) == 2


def test_unknown_run_id(db_url: str) -> None:
    with pytest.raises(InvalidInput, match="No run with id 999"):
        Store(db_url).run(999)


def test_unwritable_sqlite_path(tmp_path: pathlib.Path) -> None:
    if os.geteuid() == 0:
        # root ignores permission bits; a path under a regular file can never be created
        blocker = tmp_path / "file"
        blocker.write_text("x")
        url = f"sqlite:///{blocker / 'sub' / 'kb.db'}"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        url = f"sqlite:///{ro / 'kb.db'}"
    with pytest.raises(StoreError, match="knowledge base"):
        Store(url)


def test_unreachable_postgres() -> None:
    with pytest.raises(
        StoreError,
        match=r"Cannot open the knowledge base at postgresql\+psycopg://nobody:\*\*\*@127.0.0.1:1/x.*Expected a reachable database",
    ):
        Store("postgresql://nobody:secret@127.0.0.1:1/x", connect_timeout_s=2)


def test_password_never_in_errors() -> None:
    with pytest.raises(StoreError) as info:
        Store("postgresql://nobody:hunter2@127.0.0.1:1/x", connect_timeout_s=2)
    assert "hunter2" not in str(info.value)


def test_not_a_url() -> None:
    with pytest.raises(InvalidInput, match="not a SQLAlchemy URL"):
        Store("this is not a url")


def test_times_read_back_in_utc_from_every_backend(db_url: str) -> None:
    import datetime as dt

    store = Store(db_url)
    before = dt.datetime.now(dt.UTC)
    store.register_model("b" * 64, name="m")
    run = store.run(store.record(NoteResult(text="t"), model_version="b" * 64))
    after = dt.datetime.now(dt.UTC)
    assert run.created_at.utcoffset() == dt.timedelta(0)  # aware, UTC: SQLite as PostgreSQL
    assert before - dt.timedelta(seconds=1) <= run.created_at <= after + dt.timedelta(seconds=1)
    model = store.model("b" * 64)
    assert model is not None and model.created_at.utcoffset() == dt.timedelta(0)
    store.close()
