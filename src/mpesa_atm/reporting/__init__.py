"""What the `--report` pages and `--har` recordings of `mpesa-atm fuzz` and `verify` are made of: the
exchanges seen on the wire, their HAR 1.2 log, the SVG charts and the Jinja2 pages. A leaf: it knows
neither the fuzzer nor the contracts, which each feed it their own events."""

from __future__ import annotations

from mpesa_atm.reporting.exchange import Exchange, answer_class, headers_of, shown_body
from mpesa_atm.reporting.har import har_document, write_har

__all__ = ["Exchange", "answer_class", "har_document", "headers_of", "shown_body", "write_har"]
