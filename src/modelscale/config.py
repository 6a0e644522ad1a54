"""Settings, read once from the environment (prefix ``MODELSCALE_``)."""

from __future__ import annotations

import functools
import pathlib

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "default_db_url", "get_settings"]


def default_db_url() -> str:
    """The default knowledge base: a SQLite file under the working directory."""
    return f"sqlite:///{pathlib.Path.cwd() / '.modelscale' / 'modelscale.db'}"


class Settings(BaseSettings):
    """modelscale's settings; each field can be set as ``MODELSCALE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="MODELSCALE_", extra="ignore")

    db: str = Field(
        default_factory=default_db_url, description="SQLAlchemy URL of the knowledge base"
    )
    cache_dir: pathlib.Path = Field(
        default_factory=lambda: pathlib.Path.home() / ".cache" / "modelscale",
        description="Where built examples are cached",
    )
    db_connect_timeout_s: float = Field(default=5.0, gt=0)


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings (read from the environment on first use)."""
    return Settings()
