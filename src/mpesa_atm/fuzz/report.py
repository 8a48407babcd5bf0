"""How a campaign's findings are shown: text a bank engineer can act on, curl reproducers, JUnit XML."""

from __future__ import annotations

import json
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mpesa_atm.fuzz.campaign import CampaignResult, Finding

__all__ = ["PASSWORD_VARIABLE", "curl_command", "render_finding", "render_summary", "write_junit"]

# Reproducers never print the bank's password: they read it from this variable.
PASSWORD_VARIABLE = "MPESA_ATM_PASSWORD"
_SECRET_MARK = "\x00mpesa-atm-secret\x00"
_MAX_MESSAGE_LINES = 24


def _printf_octal(data: bytes) -> str:
    """`data` as a printf format that prints it exactly (POSIX printf understands \\NNN)."""
    out = []
    for byte in data:
        char = chr(byte)
        if 32 <= byte < 127 and char not in "\\%'":
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return "'" + "".join(out) + "'"


def curl_command(
    url: str, body: Any, *, media_type: str = "application/json", secret: str | None = None
) -> str:
    """A curl command that sends `body` to `url`; a password equal to `secret` is read from the env."""
    head = ["curl", "-sS", "-X", "POST", shlex.quote(url), "-H", shlex.quote(f"Content-Type: {media_type}")]
    if isinstance(body, bytes):
        return f"printf {_printf_octal(body)} | " + " ".join([*head, "--data-binary", "@-"])
    if body is None or not isinstance(body, (dict, list, str, int, float, bool)):
        return " ".join(head)
    if isinstance(body, str) and "json" not in media_type:
        return " ".join([*head, "--data-raw", shlex.quote(body)])
    masked = body
    if secret and isinstance(body, dict) and body.get("input_Password") == secret:
        masked = {**body, "input_Password": _SECRET_MARK}
    text = json.dumps(masked)
    pieces = text.split(json.dumps(_SECRET_MARK)[1:-1])
    data = f'"${PASSWORD_VARIABLE}"'.join(shlex.quote(piece) for piece in pieces)
    return " ".join([*head, "--data-raw", data])


def _indent(text: str, prefix: str) -> str:
    lines = text.splitlines() or [""]
    if len(lines) > _MAX_MESSAGE_LINES:
        lines = [*lines[:_MAX_MESSAGE_LINES], f"... ({len(lines) - _MAX_MESSAGE_LINES} more lines)"]
    return "\n".join(prefix + line for line in lines)


def render_finding(finding: Finding) -> str:
    times = f", {finding.occurrences} times" if finding.occurrences > 1 else ""
    parts = [
        f"FAILED {finding.check}: {finding.operation} ({finding.phase}{times})",
        f"  {finding.title}",
        _indent(finding.message, "  "),
    ]
    if finding.reproduce:
        steps = len(finding.reproduce)
        parts.append("  Reproduce:" if steps == 1 else f"  Reproduce ({steps} requests, in order):")
        parts.extend(f"    {command}" for command in finding.reproduce)
    return "\n".join(parts)


def render_summary(result: CampaignResult) -> str:
    failed = sorted({finding.check for finding in result.findings})
    outcome = f"FAILED {', '.join(failed)}" if failed else "no check failed"
    return (
        f"mpesa-atm fuzz {result.role}: {result.cases} cases ({result.requests} requests) "
        f"in {result.duration:.1f} s: {outcome}; seed {result.seed}"
    )


def write_junit(result: CampaignResult, path: str | Path) -> None:
    """One test case per operation and check: failed with the finding, or passed."""
    by_key = {(f.operation, f.check): f for f in result.findings}
    operations = sorted({f.operation for f in result.findings} | set(result.operations))
    suite = ET.Element(
        "testsuite",
        name=f"mpesa-atm fuzz {result.role}",
        tests=str(len(operations) * len(result.checks)),
        failures=str(len(result.findings)),
        errors="0",
        time=f"{result.duration:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (("seed", result.seed), ("target", result.target), ("cases", result.cases)):
        ET.SubElement(properties, "property", name=name, value=str(value))
    for operation in operations:
        for check in result.checks:
            testcase = ET.SubElement(suite, "testcase", classname=operation, name=check)
            finding = by_key.get((operation, check))
            if finding is not None:
                failure = ET.SubElement(testcase, "failure", message=finding.title, type=check)
                failure.text = render_finding(finding)
    root = ET.Element("testsuites")
    root.append(suite)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
