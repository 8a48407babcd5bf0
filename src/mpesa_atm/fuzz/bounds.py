"""The bounds an operator puts on a campaign (Schemathesis's names): stop after so many failures, end at
a deadline, fail an answer slower than a limit; and the Stopper that tells the units when a bound ended
the campaign before its end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Bounds", "Stopper"]


@dataclass(frozen=True)
class Bounds:
    """None: no such bound. `max_failures` counts distinct findings that fail the campaign (one per
    check and operation, as the summary counts them); `max_time` and `max_response_time` are seconds."""

    max_failures: int | None = None
    max_time: float | None = None
    max_response_time: float | None = None

    def shown(self) -> str:
        """How a report shows them: "max failures 1, max time 3 s", or "none"."""
        shown = []
        if self.max_failures is not None:
            shown.append(f"max failures {self.max_failures}")
        if self.max_time is not None:
            shown.append(f"max time {self.max_time:g} s")
        if self.max_response_time is not None:
            shown.append(f"max response time {self.max_response_time:g} s")
        return ", ".join(shown) or "none"


class Stopper:
    """Whether a bound stopped the campaign, and which: its deadline passed (`max_time` seconds after
    the Stopper was made), or it reached `max_failures` failures (`failed` is told each new one). Read
    by every unit before its next case, from their threads."""

    def __init__(self, bounds: Bounds, clock: Callable[[], float] = time.monotonic) -> None:
        self.bounds = bounds
        self._clock = clock
        self._deadline = None if bounds.max_time is None else clock() + bounds.max_time
        self._lock = threading.Lock()
        self.reason: str | None = None  # why the campaign stopped early, once it did
        self.by_deadline = False

    def reached(self) -> bool:
        """Whether a bound ended the campaign (the deadline is looked at now)."""
        if self.reason is None and self._deadline is not None and self._clock() >= self._deadline:
            self._stop(f"at its deadline (--max-time {self.bounds.max_time:g} s)", by_deadline=True)
        return self.reason is not None

    def failed(self, failures: int) -> None:
        """The campaign has `failures` distinct failures so far."""
        limit = self.bounds.max_failures
        if limit is not None and failures >= limit:
            self._stop(f"after {failures} failure{'' if failures == 1 else 's'} (--max-failures {limit})")

    def _stop(self, reason: str, by_deadline: bool = False) -> None:
        with self._lock:
            if self.reason is None:  # the first bound reached is the one that stopped it
                self.reason, self.by_deadline = reason, by_deadline
