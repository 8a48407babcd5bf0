"""The proxy's tests share one judge a role per test process: the role's schema takes a while to load."""

from __future__ import annotations

import pytest

from mpesa_atm.proxy.judge import Judge
from mpesa_atm.spec import OPERATION_PATHS


@pytest.fixture(scope="session")
def judges() -> dict[str, Judge]:
    return {
        "ipg": Judge("ipg", OPERATION_PATHS.__getitem__),
        "bank": Judge("bank", OPERATION_PATHS.__getitem__),
    }
