"""What `mpesa-atm serve` does with the store before any worker starts: opens it once (which makes
its tables and proves the database works), forgets what it keeps of the served roles with --fresh
(a PostgreSQL store, which other instances share, only with --yes), and counts the rest for the
banner. The mocks are imported when this runs, not with the command's parser."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mpesa_atm.errors import ConfigError, StoreError, UsageError
from mpesa_atm.operations import CONTROL_PREFIX
from mpesa_atm.settings import database_label, is_database_url

if TYPE_CHECKING:
    from mpesa_atm.mocks.records import Kept

__all__ = ["check_fresh", "kept_line", "open_checked"]


def check_fresh(db: str, *, fresh: bool, yes: bool) -> None:
    """--fresh empties a PostgreSQL store for every instance that shares it: only with --yes."""
    if yes and not fresh:
        raise UsageError("--yes confirms --fresh: give both, or neither")
    if fresh and is_database_url(db) and not yes:
        raise UsageError(
            f"--fresh would empty {database_label(db)} for every instance that shares it:"
            " add --yes if that is meant"
        )


def open_checked(db: str, role: str | None, *, fresh: bool) -> Kept | None:
    """Opens the store at `db` once, or says why not in one line (ConfigError); with `role` (the
    process that serves it), forgets what the store keeps of the role (`fresh`) or counts it."""
    from mpesa_atm.mocks.storage import open_store

    try:
        store = open_store(db)
    except ConfigError:
        raise
    except StoreError as exc:  # PostgreSQL's own words, with the database named
        raise ConfigError(str(exc)) from exc
    except Exception as exc:  # sqlite3 says little; say where
        raise ConfigError(f"cannot open the database {database_label(db)}: {exc}") from exc
    try:
        if role is None:
            return None
        if fresh:
            asyncio.run(store.reset(role))
        return asyncio.run(store.counts(role))
    except StoreError as exc:
        raise ConfigError(str(exc)) from exc
    finally:
        store.close()


def kept_line(kept: Kept | None, url: str, db: str) -> str | None:
    """The banner's line on what the store kept from an earlier run, if anything, and how to start
    clean: a call answered from that state (a duplicate) should surprise no one."""
    if not kept:
        return None
    fresh = "--fresh --yes" if is_database_url(db) else "--fresh"
    return (
        f"  kept from an earlier run: {kept.words()}; to start clean: serve {fresh},"
        f" or POST {url}{CONTROL_PREFIX}/reset"
    )
