"""Knowledge bases that open but cannot be written, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pathlib

from modelscale.store import open_store

__all__ = ["read_only_url"]


def read_only_url(db_url: str, tmp_path: pathlib.Path) -> str:
    """A URL of ``db_url``'s knowledge base (its schema created first) that reads but cannot write.

    SQLite: opened read-only, as on a read-only mount (file permissions do not bind root).
    PostgreSQL: every transaction read-only (``default_transaction_read_only``).
    """
    if db_url.startswith("sqlite"):
        path = tmp_path / "ro.db"
        open_store(f"sqlite:///{path}").close()
        return f"sqlite:///file:{path}?mode=ro&uri=true"
    open_store(db_url).close()
    return db_url.replace("options=", "options=-cdefault_transaction_read_only%3Don%20", 1)
