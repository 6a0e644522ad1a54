"""Knowledge bases written by modelscale 0.1.0, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

import pytest

from tests.conftest import pg_url
from tests.store.kb_fixtures import copy_sqlite_fixture, load_pg_dump, pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
def kb_0_1_0(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    """The URL of a fresh copy of the knowledge base that modelscale 0.1.0 wrote."""
    if request.param == "sqlite":
        yield f"sqlite:///{copy_sqlite_fixture(tmp_path)}"
        return
    server = pg_url()
    if server is None:
        if os.environ.get("MODELSCALE_REQUIRE_PG") == "1":
            pytest.fail("MODELSCALE_REQUIRE_PG=1 but MODELSCALE_TEST_PG_URL is not set")
        pytest.skip("no PostgreSQL server: set MODELSCALE_TEST_PG_URL (scripts/start-postgres)")
    with pg_database(server) as url:
        load_pg_dump(url)
        yield url
