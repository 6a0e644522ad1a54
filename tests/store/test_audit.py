"""The audit log in the knowledge base: appended in a chain by concurrent writers, on SQLite and
PostgreSQL; any change to a stored entry is found."""

from __future__ import annotations

import concurrent.futures
import datetime as dt

from sqlalchemy import create_engine, text

from modelscale.store import Store, verify_chain
from modelscale.store.audit import GENESIS
from modelscale.store.engine import normalise_url


def test_concurrent_writers_keep_one_chain(db_url: str) -> None:
    stores = [Store(db_url) for _ in range(4)]
    try:

        def write(i: int) -> None:
            store = stores[i % len(stores)]
            store.append_audit(actor=f"key{i % 3}", action="logs.read", target=f"/v2/logs?{i}")

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(write, range(40)))
        entries = stores[0].audit_entries()
        assert len(entries) == 40
        assert entries[0].prev_hash == GENESIS
        check = verify_chain(entries)
        assert check.ok, check.problems
        assert check.last_hash == entries[-1].hash
    finally:
        for s in stores:
            s.close()


def test_a_changed_or_removed_entry_is_found(db_url: str) -> None:
    store = Store(db_url)
    for i in range(5):
        store.append_audit(actor="cli:t", action="keys.create", target=f"k{i}", details={"i": i})
    assert verify_chain(store.audit_entries()).ok
    engine = create_engine(normalise_url(db_url))
    with engine.begin() as conn:  # the PostgreSQL URL carries the test's search_path
        conn.execute(text("UPDATE audit SET target = 'k9' WHERE id = 3"))
    check = verify_chain(store.audit_entries())
    assert not check.ok and any("entry 3" in p for p in check.problems)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit SET target = 'k2' WHERE id = 3"))
        conn.execute(text("DELETE FROM audit WHERE id = 1"))
    check = verify_chain(store.audit_entries())
    assert not check.ok and "entries before it were removed" in check.problems[0]
    engine.dispose()
    store.close()


def test_a_purge_keeps_the_chain_checkable(db_url: str) -> None:
    store = Store(db_url)
    for i in range(3):
        store.append_audit(actor="cli:t", action="keys.create", target=f"k{i}")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    assert store.purge_audit(later, actor="server", dry_run=True) == 3
    assert len(store.audit_entries()) == 3
    assert store.purge_audit(later, actor="server") == 3
    entries = store.audit_entries()
    assert [e.action for e in entries] == ["privacy.purge"]
    assert entries[0].id == 4  # ids are never reused
    store.append_audit(actor="cli:t", action="keys.revoke", target="k0")
    assert verify_chain(store.audit_entries()).ok
    store.close()
