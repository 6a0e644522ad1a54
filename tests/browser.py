"""Debian's chromium, driven by Playwright: skipped where it is missing, unless CI requires it."""

from __future__ import annotations

import os
import pathlib

import pytest

__all__ = ["CHROMIUM", "require_chromium"]

CHROMIUM = pathlib.Path("/usr/bin/chromium")


def require_chromium() -> None:
    """Skip the test without chromium or Playwright (fail instead under
    MODELSCALE_REQUIRE_BROWSER=1, as CI runs)."""
    why = None
    if not CHROMIUM.exists():
        why = f"no chromium at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            why = 'the playwright package is missing (pip install "modelscale[dev]")'
    if why is None:
        return
    if os.environ.get("MODELSCALE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"MODELSCALE_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(why)
