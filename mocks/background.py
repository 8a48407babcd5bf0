"""How the store's background threads (the WAL's checkpoints, PostgreSQL's config poller) report an
error they do not expect: logged, once per kind, since such a thread tries again on its own."""

from __future__ import annotations

import logging
import threading

__all__ = ["OncePerKind"]

log = logging.getLogger("mpesa_atm.mocks")


class OncePerKind:
    """Logs each kind of error (its type and message) the first time `what` meets it; a store that
    keeps failing in the same way fills no log, a new failure is still told."""

    def __init__(self, what: str, *, traceback: bool = True) -> None:
        """`traceback`: False for the machine's trouble (a full disk), told in one line."""
        self.what = what
        self.traceback = traceback
        self.seen: set[tuple[type[BaseException], str]] = set()
        self._lock = threading.Lock()

    def log(self, error: BaseException) -> None:
        kind = (type(error), str(error))
        with self._lock:
            if kind in self.seen:
                return
            self.seen.add(kind)
        log.error("%s failed (logged once): %s", self.what, error, exc_info=error if self.traceback else None)
