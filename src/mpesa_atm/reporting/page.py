"""The reports' pages: Jinja2 templates shipped with the package (templates/), rendered with
autoescaping into one self-contained file: inline CSS and SVG, no script, nothing fetched."""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from mpesa_atm import __version__

__all__ = ["duration_text", "render_page", "write_page"]


def duration_text(seconds: float) -> str:
    """`0.8 s`, `42.1 s`, `3 min 05 s`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z").strip()


@functools.cache
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("mpesa_atm.reporting", "templates"),
        autoescape=select_autoescape(["html", "svg"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["duration"] = duration_text
    environment.filters["when"] = _when
    environment.globals["harness_version"] = __version__
    return environment


def render_page(template: str, **context: Any) -> str:
    """The page `template` (e.g. "fuzz.html") rendered with `context`."""
    return _environment().get_template(template).render(**context)


def write_page(path: str | Path, template: str, **context: Any) -> None:
    Path(path).write_text(render_page(template, **context), encoding="utf-8")
