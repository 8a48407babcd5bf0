"""Fixtures of the fuzzing tests: the document's bank credentials."""

from __future__ import annotations

import pytest

from mpesa_atm.fuzz import Credentials

DOCUMENT_CREDENTIALS = Credentials(username="fnb", password="P@ssword123", shortcode="49272")


@pytest.fixture
def credentials() -> Credentials:
    return DOCUMENT_CREDENTIALS
