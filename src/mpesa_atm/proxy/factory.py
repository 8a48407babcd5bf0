"""`create_proxy`: the proxy's app built from the settings, as `mocks.create_app` builds a mock's: its
judge, its run (told to fuzz's reporters), its upstream and its store, the ledger when given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from mpesa_atm.fuzz.events import Listener
from mpesa_atm.operations import Role, operations_of
from mpesa_atm.proxy.app import Observer, ProxyApp
from mpesa_atm.proxy.evidence import Run
from mpesa_atm.proxy.forward import Upstream
from mpesa_atm.proxy.judge import Judge
from mpesa_atm.settings import Settings
from mpesa_atm.transport import Network

__all__ = ["create_proxy", "run_of"]


def create_proxy(
    role: Role,
    settings: Settings,
    *,
    upstream: str,
    network: Network | None = None,
    timeout: float | None = None,
    strict: bool = False,
    max_response_time: float | None = None,
    listeners: Sequence[Listener] = (),
    options: tuple[tuple[str, str], ...] = (),
    ledger_of: Callable[[Any, Settings], Observer] | None = None,
    judge: Judge | None = None,
    out: Callable[[str], None] = print,
    transport: httpx.AsyncBaseTransport | None = None,
    faults: bool = True,
    hand_off: Path | None = None,
    wires: bool = True,
) -> ProxyApp:
    """The proxy of `role` in front of `upstream`, its store the settings' `db`, the judgement across
    exchanges `ledger_of(store, settings)`'s when given; `run` (the app's) tells `listeners` (fuzz's
    reporters) of each exchange and, at `app.run.finish()`, of the end. `judge` may be one already
    built for the role and paths (it takes a while to load the schema); `transport` reaches an
    upstream in process (tests); `faults`: the mocks' fault rules on the proxy (`/_harness/faults`,
    the X-Mpesa-Atm-Fault header; proxy/faults.py), kept in the same store. `hand_off`: a worker's of
    several, whose run keeps its exchanges (with themselves when `wires`, for --har) and writes them
    to that file when it stops, for the main process's run (proxy/evidence.py)."""
    from mpesa_atm.mocks.storage import open_store

    judge = judge or Judge(
        role, lambda operation_id: settings.paths[operation_id], max_response_time=max_response_time
    )
    run = run_of(
        role,
        settings,
        upstream,
        checks=judge.check_names,
        strict=strict,
        max_response_time=max_response_time,
        listeners=listeners,
        options=options,
        across=ledger_of is not None,
        hand_off=hand_off,
        wires=wires,
    )
    if ledger_of is None:
        run.note(
            "the rules across exchanges (duplicates, a token paid once) are not judged: this proxy was"
            " made without a ledger"
        )
    return ProxyApp(
        role,
        settings,
        upstream=Upstream(
            upstream,
            network or Network(),
            timeout if timeout is not None else settings.client_timeout,
            transport=transport,
        ),
        judge=judge,
        run=run,
        open_store=lambda: open_store(
            settings.db_path, journal_limit=settings.journal_limit, busy_timeout=settings.busy_timeout
        ),
        ledger_of=ledger_of,
        errors=settings.proxy_errors,
        faults=faults,
        out=out,
    )


def run_of(
    role: Role,
    settings: Settings,
    upstream: str,
    *,
    checks: Sequence[str],
    strict: bool = False,
    max_response_time: float | None = None,
    listeners: Sequence[Listener] = (),
    options: tuple[tuple[str, str], ...] = (),
    across: bool = True,
    hand_off: Path | None = None,
    wires: bool = True,
) -> Run:
    """The run of a proxy of `role` (its app's, or with --workers the main process's, which takes
    the workers' exchanges at the end and whose `checks` are then theirs)."""
    from mpesa_atm.fuzz.bounds import Bounds

    return Run(
        role,
        upstream,
        checks=checks,
        operations=[f"POST {settings.paths[op.id]}" for op in operations_of(role)],
        strict=strict,
        bounds=Bounds(max_response_time=max_response_time),
        listeners=listeners,
        options=options,
        across=across,
        hand_off=hand_off,
        wires=wires,
    )
