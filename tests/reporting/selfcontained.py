"""What makes a page self-contained: nothing in it that a browser would fetch or run."""

from __future__ import annotations

import re

__all__ = ["assert_self_contained"]

_FETCHES = re.compile(r"<script|<link|<iframe|<img|<object|\ssrc=|@import|url\(", re.IGNORECASE)


def assert_self_contained(html: str) -> None:
    found = _FETCHES.findall(html)
    assert not found, f"the page would fetch or run: {found}"
    assert "<style>" in html and "<svg" in html
