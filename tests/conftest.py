"""Shared fixtures: every test gets its own knowledge base, and small real ONNX models."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

import pytest

from modelscale.config import get_settings
from tests.onnx_models import save_conv, save_mlp, save_seq_model


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch):
    """Point the default knowledge base and request logs at temp paths so tests never touch
    ./.modelscale."""
    monkeypatch.setenv("MODELSCALE_DB", f"sqlite:///{tmp_path / 'kb' / 'modelscale.db'}")
    monkeypatch.setenv("MODELSCALE_LOG_DIR", str(tmp_path / "logs"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def mlp_path(models_dir: pathlib.Path) -> pathlib.Path:
    return save_mlp(models_dir / "mlp.onnx")


@pytest.fixture(scope="session")
def conv_path(models_dir: pathlib.Path) -> pathlib.Path:
    return save_conv(models_dir / "conv.onnx")


@pytest.fixture(scope="session")
def seq_path(models_dir: pathlib.Path) -> pathlib.Path:
    return save_seq_model(models_dir / "seq.onnx")


def pg_url() -> str | None:
    """The PostgreSQL test server's URL; CI requires one (MODELSCALE_REQUIRE_PG=1)."""
    return os.environ.get("MODELSCALE_TEST_PG_URL") or None


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    """A fresh, empty knowledge base URL on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    url = pg_url()
    if url is None:
        if os.environ.get("MODELSCALE_REQUIRE_PG") == "1":
            pytest.fail("MODELSCALE_REQUIRE_PG=1 but MODELSCALE_TEST_PG_URL is not set")
        pytest.skip("no PostgreSQL server: set MODELSCALE_TEST_PG_URL (scripts/start-postgres)")
    from sqlalchemy import create_engine, text

    from modelscale.store.api import _normalise_url

    # A schema per test keeps PostgreSQL tests as independent as SQLite's fresh files.
    schema = f"t_{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**10}"
    engine = create_engine(_normalise_url(url))
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3D{schema}"
    engine = create_engine(_normalise_url(url))
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()
