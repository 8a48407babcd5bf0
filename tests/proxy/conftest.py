"""The proxy's tests share one judge a role per test process (the role's schema takes a while to load),
and `proxies`, the fixture that starts `mpesa-atm proxy` processes."""

from __future__ import annotations

import pytest

from mpesa_atm.proxy.judge import Judge
from mpesa_atm.spec import OPERATION_PATHS
from tests.proxy.processes import proxies  # noqa: F401 (the fixture, for the modules that start proxies)


@pytest.fixture(scope="session")
def judges() -> dict[str, Judge]:
    return {
        "ipg": Judge("ipg", OPERATION_PATHS.__getitem__),
        "bank": Judge("bank", OPERATION_PATHS.__getitem__),
    }
