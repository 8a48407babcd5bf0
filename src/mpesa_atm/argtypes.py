"""argparse types shared by the `mpesa-atm` subcommands."""

from __future__ import annotations

import argparse

__all__ = ["path_mapping"]


def path_mapping(text: str) -> tuple[str, str]:
    """OPERATION=PATH: a partner's own path for one of the API's operations (the document says "TBD")."""
    operation, sep, path = text.partition("=")
    if not sep or not operation or not path:
        raise argparse.ArgumentTypeError(
            f"expected OPERATION=PATH, e.g. token_generation=/atm/tokens, not {text!r}"
        )
    return operation.strip().replace("-", "_"), path.strip()
