"""Silences one known warning before connexion is imported (connexion 3.3 imports starlette's
test client, which on starlette >= 1.x warns about httpx at import time). Nothing else is changed."""

import warnings

warnings.filterwarnings(
    "ignore",
    message=r"Using `httpx` with `starlette.testclient` is deprecated",
    category=UserWarning,
)
