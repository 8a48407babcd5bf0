"""Every error the harness raises on purpose, in one tree (httpx's `_exceptions.py` is the model).

    HarnessError
    ├── ConfigError                  a setting (config file, MPESA_ATM_* variable, flag) it cannot use
    ├── UsageError                   arguments that do not fit together; `argument` names the one
    ├── StoreError                   the store cannot be opened or written
    │   └── StoreBusy                another process held its lock past busy_timeout (answered -7)
    ├── RequestError                 a control-API request asks what the mock cannot do (400/409)
    │   ├── FaultError               a fault rule or fault header that cannot be used
    │   └── ProviderStateError       a provider state that cannot be set up
    │       ├── UnknownProviderState        no state of that name
    │       └── UnsatisfiableProviderState  known, but not with those parameters
    ├── PartnerError                 a partner did not answer in the envelope (`exchange`: the call)
    ├── TargetError                  a partner to fuzz or verify could not be tested at all
    │   ├── TargetUnreachable        nothing answered at the fuzzed URL
    │   ├── WrongTarget              something answers, but not the role's API (URL, path or role wrong)
    │   ├── ProviderUnreachable      nothing answered at the verified URL or its provider states
    │   └── VerificationError        Pact could not run the verification
    └── ConsumerContractError        a reference client misread its contract's answer

Library functions raise these with the words of their own parameters; only the CLI words them as
flags (`UsageError.as_flag`), prints one line and exits 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ConfigError",
    "ConsumerContractError",
    "FaultError",
    "HarnessError",
    "PartnerError",
    "ProviderStateError",
    "ProviderUnreachable",
    "RequestError",
    "StoreBusy",
    "StoreError",
    "TargetError",
    "TargetUnreachable",
    "UnknownProviderState",
    "UnsatisfiableProviderState",
    "UsageError",
    "VerificationError",
    "WrongTarget",
]


class HarnessError(Exception):
    """The root: every error the harness raises on purpose."""


class ConfigError(HarnessError):
    """A configuration file, environment variable or option has a value the harness cannot use."""


class UsageError(HarnessError):
    """Arguments that do not fit together. `argument` names the parameter at fault (a library
    function's name for it); the CLI shows it as its flag."""

    def __init__(self, reason: str, *, argument: str | None = None) -> None:
        self.reason = reason
        self.argument = argument
        super().__init__(f"{argument} {reason}" if argument else reason)

    def as_flag(self, flags: Mapping[str, str] | None = None) -> str:
        """The message with the argument spelled as the command line's flag (`--timeout ...`):
        `flags` maps the arguments whose flag is not their name with dashes."""
        if self.argument is None:
            return self.reason
        flag = (flags or {}).get(self.argument) or "--" + self.argument.replace("_", "-")
        return f"{flag} {self.reason}"


class StoreError(HarnessError):
    """The store cannot be opened or written."""


class StoreBusy(StoreError):
    """The database stayed locked by another writer for longer than the busy timeout, or could not
    be reached in that time."""


class StoreConflict(StoreError):
    """A row that must be unique is there already (a token's reference, an operation recorded twice)."""


class RequestError(HarnessError, ValueError):
    """A control-API request asks for something the mock cannot do; the message says why."""


class FaultError(RequestError):
    """A fault rule or header that cannot be used."""


class ProviderStateError(RequestError):
    """A Pact provider state that cannot be set up."""


class UnknownProviderState(ProviderStateError, LookupError):
    """This mock has no provider state of that name."""


class UnsatisfiableProviderState(ProviderStateError):
    """A state this mock knows, asked with parameters it cannot satisfy (missing, or not what the mock
    is configured with); the control API refuses it with 409 and the reason."""


class PartnerError(HarnessError):
    """The partner did not answer in the envelope: unreachable, timed out, or not JSON."""

    def __init__(self, message: str, exchange: Any) -> None:
        super().__init__(message)
        self.exchange = exchange  # clients.Exchange: the call as it went over the wire


class TargetError(HarnessError):
    """A partner to fuzz or verify could not be tested at all: nothing was judged."""


class TargetUnreachable(TargetError):
    """The partner could not be reached at all: nothing was tested."""


class WrongTarget(TargetError):
    """Something answers at the fuzzed URL, but not as the role's API does: every request to an
    operation was answered 404/405, a gateway's 401/403, or with the other role's answer. `operation_id`
    names the operation, `answered` says how it was answered; the message says what to check."""

    def __init__(self, message: str, *, operation_id: str, answered: str) -> None:
        super().__init__(message)
        self.operation_id = operation_id
        self.answered = answered


class ProviderUnreachable(TargetError):
    """The provider (or its provider-states endpoint) could not be reached."""


class VerificationError(TargetError):
    """Pact could not run the verification (not a mismatch: those are in the report)."""


class ConsumerContractError(HarnessError, AssertionError):
    """A reference client did not make sense of the answer its contract promises it."""
