"""argparse types shared by the `mpesa-atm` subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["path_mapping", "positive_seconds", "whole_number"]


def path_mapping(text: str) -> tuple[str, str]:
    """OPERATION=PATH: a partner's own path for one of the API's operations (the document says "TBD")."""
    operation, sep, path = text.partition("=")
    if not sep or not operation or not path:
        raise argparse.ArgumentTypeError(
            f"expected OPERATION=PATH, e.g. token_generation=/atm/tokens, not {text!r}"
        )
    return operation.strip().replace("-", "_"), path.strip()


def whole_number(minimum: int) -> Callable[[str], int]:
    """A whole number of at least `minimum`."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return convert


def positive_seconds(text: str) -> float:
    """A positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):  # NaN too
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value
