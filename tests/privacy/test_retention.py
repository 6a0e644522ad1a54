"""Retention: files past their TTL go (and only those), the server purges on its own, the audit
log's chain survives a purge, and `privacy audit` catches tampering."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import sqlite3
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from modelscale.cli import app
from modelscale.config import DeploymentSpec, RetentionSpec
from modelscale.observe import LogLocation
from modelscale.privacy import purge
from modelscale.store import open_store, verify_chain
from tests.privacy.test_feature import spec_of
from tests.serve.conftest import app_client

runner = CliRunner()


def _write(path: pathlib.Path, written: float) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.parent / f"part-{int(written * 1000)}-1-0.parquet"
    pq.write_table(pa.table({"x": [1]}), name)
    return name


def _log(root: pathlib.Path, now: float) -> dict[str, pathlib.Path]:
    def hour(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d/%H")

    old, new = now - 40 * 86_400, now - 60
    files = {
        "old_rows": _write(root / "m" / hour(old) / "x", old),
        "new_rows": _write(root / "m" / hour(new) / "x", new),
        "old_payload": _write(
            root / "_payloads" / "m" / hour(now - 8 * 86_400) / "x", now - 8 * 86_400
        ),
        "new_payload": _write(root / "_payloads" / "m" / hour(new) / "x", new),
    }
    stamp = dt.datetime.fromtimestamp(now - 100 * 86_400, dt.UTC).strftime("%Y%m%dT%H%M%S.%f")
    feedback = root / "monitor" / "model=m" / "version=1" / f"{stamp}-srv.json"
    feedback.parent.mkdir(parents=True)
    feedback.write_text("{}")
    files["old_feedback"] = feedback
    odd = root / "m" / "not-a-day" / "xx" / "part-x.parquet"
    odd.parent.mkdir(parents=True)
    odd.write_bytes(b"")
    files["odd"] = odd
    return files


def test_purge_deletes_exactly_what_is_past_its_ttl(tmp_path) -> None:
    now = time.time()
    files = _log(tmp_path / "log", now)
    store = open_store()
    store.append_audit(actor="cli:t", action="keys.create", target="k")
    location = LogLocation.of(tmp_path / "log")
    dry = purge(RetentionSpec(), location=location, store=store, actor="t", dry_run=True, now=now)
    assert {c.name: c.deleted for c in dry.classes} == {
        "requests": 1,
        "payloads": 1,
        "feedback": 1,
        "audit": 0,
    }
    assert all(p.exists() for p in files.values())  # a dry run deletes nothing
    report = purge(RetentionSpec(), location=location, store=store, actor="t", now=now)
    assert report.ok and [c.remaining for c in report.classes] == [0, 0, 0, 0]
    gone = {k for k, p in files.items() if not p.exists()}
    assert gone == {"old_rows", "old_payload", "old_feedback"}
    assert {c.name: c.unreadable for c in report.classes}["requests"] == 1  # left alone
    assert not files["old_rows"].parent.exists()  # the empty partition went too
    entries = store.audit_entries()
    assert entries[-1].action == "privacy.purge" and entries[-1].details["requests"]["deleted"] == 1
    # Audit entries past their TTL go, and the chain still checks.
    report = purge(
        RetentionSpec(audit="1s"), location=None, store=store, actor="t", now=time.time() + 5
    )
    assert {c.name: c.deleted for c in report.classes} == {"audit": 2}
    check = verify_chain(store.audit_entries())
    assert check.ok, check.problems
    store.close()


def test_the_server_purges_within_one_interval(tmp_path) -> None:
    spec = spec_of(
        tmp_path,
        {},
        privacy={"retention": {"requests": "2s", "payloads": "2s", "purge_every": "1s"}},
    )
    log = tmp_path / "log"
    with app_client(spec) as client:
        r = client.post(
            "/v2/models/enc/infer",
            json={"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]},
        )
        assert r.status_code == 200
        deadline = time.time() + 10
        while time.time() < deadline and not list(log.rglob("*.parquet")):
            time.sleep(0.1)
        written = time.time()
        assert len(list(log.rglob("*.parquet"))) == 2  # the row and its payload
        while time.time() < deadline and list(log.rglob("*.parquet")):
            time.sleep(0.1)
        gone = time.time()
    assert not list(log.rglob("*.parquet"))
    assert gone - written <= 2 + 1 + 1.5  # TTL + one interval (+ the flush and slack)
    entries = open_store().audit_entries()
    assert any(e.action == "privacy.purge" and e.actor == "server" for e in entries)


def test_log_reads_are_audited_with_the_key_id(tmp_path) -> None:
    spec = DeploymentSpec.from_dict(
        {
            "models": spec_of(tmp_path, {}).model_dump(mode="json")["models"],
            "log": {"path": str(tmp_path / "log")},
        }
    )
    with app_client(spec) as client:
        assert client.get("/v2/logs?limit=5").status_code == 200
        assert client.get("/v2/observe/live").status_code == 200  # live views: not audited
    entries = open_store().audit_entries()
    reads = [e for e in entries if e.action == "logs.read"]
    assert len(reads) == 1 and reads[0].target == "/v2/logs?limit=5"
    assert reads[0].actor == "anonymous"


def test_privacy_audit_detects_a_changed_entry_and_exits_1(tmp_path) -> None:
    db = tmp_path / "kb.db"
    url = f"sqlite:///{db}"
    store = open_store(url)
    for i in range(4):
        store.append_audit(actor="cli:t", action="keys.create", target=f"k{i}")
    store.close()
    log = tmp_path / "log"
    log.mkdir()
    ok = runner.invoke(app, ["privacy", "audit", "--log", str(log), "--db", url, "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["chain_ok"] is True
    with sqlite3.connect(db) as conn:  # someone rewrites who did it
        conn.execute("UPDATE audit SET actor = 'cli:else' WHERE id = 2")
    bad = runner.invoke(app, ["privacy", "audit", "--log", str(log), "--db", url, "--json"])
    assert bad.exit_code == 1
    body = json.loads(bad.stdout)
    assert body["chain_ok"] is False and any("entry 2" in p for p in body["problems"])
    with sqlite3.connect(db) as conn:  # or removes an entry
        conn.execute("UPDATE audit SET actor = 'cli:t' WHERE id = 2")
        conn.execute("DELETE FROM audit WHERE id = 3")
    bad = runner.invoke(app, ["privacy", "audit", "--log", str(log), "--db", url, "--json"])
    assert bad.exit_code == 1 and "entry 4 does not follow" in bad.stdout


def test_privacy_audit_finds_personal_data_stored_unredacted(tmp_path) -> None:
    log = tmp_path / "log" / "m" / "2026-12-07" / "05"
    log.mkdir(parents=True)
    pq.write_table(
        pa.table({"payload": ['{"text": "mail maria.rossi@example.org"}'], "error": [None]}),
        log / f"part-{int(time.time() * 1000)}-1-0.parquet",
    )
    out = runner.invoke(app, ["privacy", "audit", "--log", str(tmp_path / "log"), "--json"])
    assert out.exit_code == 1
    body = json.loads(out.stdout)
    assert body["findings"] == {"EMAIL": 1}
    assert "maria" not in out.stdout  # where it was, never the value


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["purge", "--log", "/nonexistent/log/dir"], "does not exist"),
        (["audit", "--deploy", "/nonexistent/deploy.yaml"], "does not exist"),
        (["audit", "--since", "yesterday-ish"], "not a time"),
    ],
)
def test_privacy_cli_bad_input(args, message, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = runner.invoke(app, ["privacy", *args])
    assert out.exit_code == 2 and message in out.output
