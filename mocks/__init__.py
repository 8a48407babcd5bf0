"""The mock servers of both roles: a connexion app per role over a shared store (a SQLite file, or
PostgreSQL for a sandbox of several instances)."""

import mpesa_atm._warnings  # noqa: F401  (before connexion is imported)
from mpesa_atm.mocks.app import bank_app, create_app, ipg_app
from mpesa_atm.mocks.storage import open_store
from mpesa_atm.mocks.store import Store

__all__ = ["Store", "bank_app", "create_app", "ipg_app", "open_store"]
