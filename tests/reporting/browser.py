"""Headless Chromium for the report tests: the page as the browser rendered it (its DOM), or a
screenshot. Without Chromium a test skips and says why, except in CI (CI=true), where it fails:
.ci/run installs Debian's chromium, so its absence there is a broken CI, not a reason to skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

__all__ = ["chromium", "rendered_dom", "screenshot"]

_NAMES = ("chromium", "chromium-browser", "google-chrome")
# Headless, as root in CI, and with no network: no background fetches, no proxy reachable (a page
# that asked for anything from the network would get nothing).
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--proxy-server=127.0.0.1:9",
)


def chromium() -> str:
    """The browser's path; skips the test without one (fails it in CI)."""
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    reason = "no Chromium on PATH (apt-get install chromium): the page is not checked in a real browser"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}; .ci/run installs it")
    pytest.skip(reason)


def _run(page: Path, *arguments: str) -> str:
    with tempfile.TemporaryDirectory(prefix="mpesa-atm-chromium-") as profile:
        done = subprocess.run(
            [chromium(), *_FLAGS, f"--user-data-dir={profile}", *arguments, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def rendered_dom(page: Path) -> str:
    """The DOM Chromium rendered from the file `page`, serialized."""
    dom = _run(page, "--dump-dom")
    assert "<body" in dom, dom[:500]
    return dom


def screenshot(page: Path, png: Path, *, width: int = 1100, height: int = 1400) -> None:
    _run(page, f"--screenshot={png}", f"--window-size={width},{height}")
    assert png.stat().st_size > 0
