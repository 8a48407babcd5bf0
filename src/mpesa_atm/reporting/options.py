"""The command-line options that ask `fuzz` and `verify` for a page and a recording, worded once."""

from __future__ import annotations

import argparse

__all__ = ["add_report_options"]


def add_report_options(parser: argparse.ArgumentParser, page_shows: str) -> None:
    """Adds --report FILE.html (a page that shows `page_shows`) and --har FILE to `parser`."""
    parser.add_argument(
        "--report", metavar="FILE.html", help=f"also write a self-contained HTML page: {page_shows}"
    )
    parser.add_argument(
        "--har", metavar="FILE", help="also write every request and answer as HAR 1.2 (passwords masked)"
    )
