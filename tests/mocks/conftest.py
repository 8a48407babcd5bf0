"""The mocks' tests' shared fixture: both mocks in process, the document's token seeded at the iPG."""

from __future__ import annotations

import pytest

from tests.fixtures.mocks import Mocks
from tests.fixtures.tokens import seed_token


@pytest.fixture
def seeded(mocks: Mocks) -> Mocks:
    seed_token(mocks.ipg)
    return mocks
