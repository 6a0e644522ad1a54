"""Debian's chromium, driven by Playwright: skipped where it is missing, unless CI requires it;
a page that may reach only one origin (a server's host, or local files)."""

from __future__ import annotations

import contextlib
import os
import pathlib
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["CHROMIUM", "offline_page", "require_chromium"]

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


@contextlib.contextmanager
def offline_page(url: str, *, height: int = 1400) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A page of Debian's chromium that may reach only ``url``'s host (for a ``file://`` URL:
    local files only): (page, the refused requests, the page's uncaught errors)."""
    from playwright.sync_api import sync_playwright

    origin = urllib.parse.urlsplit(url).netloc
    refused: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height})

            def route(r) -> None:  # type: ignore[no-untyped-def]
                if urllib.parse.urlsplit(r.request.url).netloc == origin:
                    r.continue_()
                else:
                    refused.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, refused, errors
        finally:
            browser.close()
