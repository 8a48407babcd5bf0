"""The browser tests skip without Chromium and say why, except in CI, where its absence fails them."""

from __future__ import annotations

import pytest

from tests.reporting import browser


def test_without_chromium_a_browser_test_skips_with_the_reason(monkeypatch):
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)

    with pytest.raises(pytest.skip.Exception, match="no Chromium on PATH"):
        browser.chromium()


def test_without_chromium_in_ci_a_browser_test_fails(monkeypatch):
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")

    with pytest.raises(pytest.fail.Exception, match="CI=true but no Chromium"):
        browser.chromium()
