"""What the checks that need more than one answer get from the campaign running them: the bank's
credentials, a way to send a variant of a case, and the expectation of a token lifecycle's step.

Outside a campaign no probe is set, and those checks skip.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from schemathesis import Case, Response

from mpesa_atm.fuzz.expectations import Expectation

__all__ = ["Credentials", "Probe", "current_probe", "probing"]


@dataclass(frozen=True)
class Credentials:
    """What a bank calls the iPG with (2.1.2.1): shared upon integration."""

    username: str
    password: str
    shortcode: str
    other_shortcode: str | None = None  # one not linked to username; None: the shortcode's last digit changed

    def unlinked_shortcode(self) -> str:
        if self.other_shortcode:
            return self.other_shortcode
        last = self.shortcode[-1]
        swapped = str((int(last) + 1) % 10) if last.isdigit() else "0"
        return self.shortcode[:-1] + swapped

    def wrong_password(self) -> str:
        # Fixed, so that findings (which quote it) never disclose anything of the real one.
        return "wrong-password" if self.password != "wrong-password" else "wrong-password-2"


@dataclass
class Probe:
    """What checks that send extra requests need from the campaign running them."""

    credentials: Credentials | None
    send: Callable[[Case], Response]
    fresh: Callable[[str], str]  # a new value of a reference field, e.g. fresh("input_TransactionID")
    reproduce: Callable[[Case], str]  # a curl command for a case
    history: list[str] = field(default_factory=list)  # curl commands that set this case up, in order
    expectation: Expectation | None = None
    probes_enabled: bool = True
    unknown_token: bool = False  # the case names a token nobody issued (unknown_token_paid)


_PROBE: contextvars.ContextVar[Probe | None] = contextvars.ContextVar("mpesa_atm_fuzz_probe", default=None)


@contextmanager
def probing(probe: Probe) -> Iterator[Probe]:
    """Makes `probe` the context of the checks run in this block (in this thread)."""
    token = _PROBE.set(probe)
    try:
        yield probe
    finally:
        _PROBE.reset(token)


def current_probe() -> Probe | None:
    """The probe of the block of `probing` the caller runs in, or None outside a campaign."""
    return _PROBE.get()
