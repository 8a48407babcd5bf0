"""Start-up and usage errors: one base class that the CLI turns into one line and exit code 2."""

from __future__ import annotations

__all__ = ["ConfigError", "HarnessError", "UsageError"]


class HarnessError(Exception):
    """Base of every error the harness raises before it can serve or run."""


class ConfigError(HarnessError):
    """A configuration file, environment variable or option has a value the harness cannot use."""


class UsageError(HarnessError):
    """A command was given arguments that do not fit together."""
