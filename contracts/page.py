"""`mpesa-atm verify --report FILE.html` and `--har FILE`: a verification as one page (the verdict,
then each interaction with its provider states, the request, what the contract expects and what came
back) and as a HAR log of every request the verifier sent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mpesa_atm.contracts.report import InteractionOutcome, Report
from mpesa_atm.masking import MASK, masked
from mpesa_atm.operations import operations_of
from mpesa_atm.reporting.exchange import Exchange, answer_class, shown_body
from mpesa_atm.reporting.har import write_har
from mpesa_atm.reporting.page import duration_text, write_page
from mpesa_atm.reporting.views import Answer, exchange_charts

__all__ = ["interaction_view", "write_har_of", "write_report"]

_ROLE_NAMES = {"bank": "bank (Token Generation)", "ipg": "iPG (Token Redemption, Token Reversal)"}


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _headers_text(headers: Any) -> list[str]:
    if isinstance(headers, dict):
        return [
            f"{name}: {', '.join(map(str, v if isinstance(v, list) else [v]))}" for name, v in headers.items()
        ]
    return [f"{name}: {value}" for name, value in headers]


def _body_text(raw: bytes) -> str:
    text = shown_body(raw)
    try:
        return _json(json.loads(text))
    except ValueError:
        return text


def _sent(exchange: Exchange) -> str:
    return "\n".join(
        [
            f"{exchange.method} {exchange.url}",
            *_headers_text(exchange.request_headers),
            "",
            _body_text(exchange.request_body),
        ]
    )


def _came_back(outcome: InteractionOutcome) -> str:
    exchange = outcome.exchange
    if exchange is None:
        return "Nothing was sent: " + (
            "a provider state could not be set up."
            if outcome.status in ("failed", "pending")
            else "not recorded."
        )
    if exchange.status is None:
        return f"No answer: {exchange.reason}"
    head = f"HTTP {exchange.status} {exchange.reason}".rstrip()
    return "\n".join(
        [head, *_headers_text(exchange.response_headers), "", _body_text(exchange.response_body)]
    )


def _contract_request(contract: dict[str, Any]) -> str:
    request = contract.get("request") or {}
    body = (request.get("body") or {}).get("content")
    return "\n".join(
        [
            f"{request.get('method', '')} {request.get('path', '')}",
            *_headers_text(request.get("headers") or {}),
            "",
            _json(masked(body)) if body is not None else "",
        ]
    )


def _expected(contract: dict[str, Any] | None) -> str:
    if contract is None:
        return "The pact came from the broker: see it there."
    response = contract.get("response") or {}
    body = (response.get("body") or {}).get("content")
    lines = [f"HTTP {response.get('status', 200)}", *_headers_text(response.get("headers") or {}), ""]
    if body is not None:
        lines.append(_json(body))
    rules = ((response.get("matchingRules") or {}).get("body")) or {}
    if rules:
        lines += ["", "matched by rule, not by value:"]
        for path, rule in rules.items():
            matchers = rule.get("matchers", []) if isinstance(rule, dict) else []
            said = ", ".join(
                f"regex {m['regex']}" if m.get("match") == "regex" else f"{m.get('match')}" for m in matchers
            )
            lines.append(f"  {path}: {said}")
    return "\n".join(lines)


def _operation_of(role: str, path: str) -> tuple[str, str]:
    """The operation a contract's path calls, and its section, e.g. ("Token Redemption", "2.1")."""
    for operation in operations_of(role):  # type: ignore[arg-type]
        if operation.path == path:
            return operation.summary, operation.section
    return path, ""


def _without_passwords(params: dict[str, Any]) -> dict[str, Any]:
    """A provider state's parameters, a password among them masked (e.g. `the bank is registered`)."""
    return {key: MASK if "password" in key.lower() else value for key, value in params.items()}


def _state(state: dict[str, Any]) -> tuple[str, str]:
    """A provider state's name, and its parameters as JSON (a password among them masked)."""
    params = state.get("params") or {}
    return str(state.get("name")), json.dumps(_without_passwords(params), sort_keys=True) if params else ""


def interaction_view(role: str, outcome: InteractionOutcome) -> dict[str, Any]:
    contract = outcome.contract
    path = str(((contract or {}).get("request") or {}).get("path", ""))
    if not path and outcome.exchange is not None:
        path = outcome.exchange.label.partition(" ")[2]
    operation, section = _operation_of(role, path)
    states = [_state(state) for state in (contract or {}).get("providerStates", [])]
    states = states or [(name, "") for name in outcome.states]
    if outcome.exchange is not None:
        request = _sent(outcome.exchange)
    else:
        request = _contract_request(contract) if contract else "(not recorded)"
    return {
        "description": outcome.description,
        "consumer": outcome.consumer,
        "status": outcome.status,
        "css": outcome.status.replace(" ", "-"),
        "operation": operation,
        "section": section,
        "states": states,
        "problems": outcome.problems,
        "warnings": outcome.warnings,
        "request": request,
        "expected": _expected(contract),
        "received": _came_back(outcome),
    }


def _lead(report: Report) -> str:
    total = len(report.interactions)
    failed = [outcome.description for outcome in report.failed]
    warned = [outcome.description for outcome in report.warned]
    # A warning: the provider reads a point the document leaves open otherwise than the harness.
    with_warnings = (
        f" {len(warned)} passed with warnings (the document is silent on what they differ in"
        f"{'; --strict fails them' if report.strict else ''}): {'; '.join(warned)}."
        if warned
        else ""
    )
    if report.interrupted:
        ran = total - sum(outcome.status == "not run" for outcome in report.interactions)
        lead = f"Interrupted (Ctrl-C) after {ran} of {total} interactions; the rest were not run."
        return lead + (f" Failed: {'; '.join(failed)}." if failed else "") + with_warnings
    if failed:
        lead = f"{len(failed)} of {total} interactions failed against {report.url}: {'; '.join(failed)}."
        return lead + with_warnings
    if warned:
        return f"All {total} interactions of the contracts passed against {report.url};" + with_warnings
    return f"All {total} interactions of the contracts verified against {report.url}."


# The interactions' details, what needs fixing first: the table above keeps the contracts' order.
_CARD_ORDER = {"failed": 0, "pending": 1, "warning": 2, "not run": 3, "verified": 4}


def _views(report: Report) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each interaction's view in the contracts' order (the table), and the same failed first (the cards)."""
    views = [interaction_view(report.role, outcome) for outcome in report.interactions]
    for anchor, view in enumerate(views, 1):
        view["anchor"] = anchor
    return views, sorted(views, key=lambda view: _CARD_ORDER.get(view["status"], len(_CARD_ORDER)))


def write_report(path: str | Path, report: Report) -> None:
    """Writes the verification's page to `path`."""
    started = report.started or datetime.now(UTC)
    facts = [
        ("Provider", f"{report.provider} at {report.url}"),
        ("Role", _ROLE_NAMES.get(report.role, report.role)),
        ("Started", started.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")),
        ("Duration", duration_text(report.duration)),
        ("Provider states", report.states_url),
        ("Pacts", "; ".join(report.sources)),
        ("Interactions", report.summary()),
        ("Options", "; ".join(f"{name} {value}" for name, value in report.options) or "defaults"),
    ]
    answers = [Answer(e.label, answer_class(e), e.elapsed * 1000) for e in report.exchanges]
    notes = [*report.notices, *(f"state change refused: {failure}" for failure in report.state_failures)]
    notes += [f"publishing the results failed: {error}" for error in report.publish_errors]
    interactions, cards = _views(report)
    write_page(
        path,
        "verify.html",
        kind="contract verification",
        title=f"mpesa-atm verify {report.role}",
        # As fuzz's page: "warning" when it passed with warnings.
        verdict=_verdict(report),
        lead=_lead(report),
        facts=facts,
        rerun=f"mpesa-atm verify {report.role} --url {report.url}" + (" --strict" if report.strict else ""),
        contents=[("interactions", "Interactions"), ("charts", "Charts")]
        + ([("notes", "Notes")] if notes else []),
        made=datetime.now(UTC),
        interactions=interactions,
        cards=cards,
        charts=exchange_charts(answers) if answers else [],
        notes=notes,
    )


def _verdict(report: Report) -> str:
    if report.interrupted:
        return "interrupted"
    return "failed" if not report.ok else "warning" if report.warned else "passed"


def write_har_of(path: str | Path, report: Report) -> None:
    """Writes every request the verifier sent, and its answer, as HAR 1.2 (passwords masked)."""
    write_har(path, report.exchanges, comment=f"mpesa-atm verify {report.role} {report.url}")
