"""JUnit XML as CI systems read it (Jenkins, GitLab, GitHub's test reporters), for `fuzz` and `verify`
alike: one <testsuite> in <testsuites>, its <properties>, and a <testcase> per test with at most one
<failure>, <error> or <skipped> (message, type, text), a severity property and a <system-out>. The
suite's counts are those of its cases, so no writer counts them by hand."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

__all__ = ["Outcome", "Suite", "TestCase", "write"]


@dataclass(frozen=True)
class Outcome:
    """What is not a pass: <failure>, <error> or <skipped>, with its message, its type (none for a
    skip) and its text (None: an empty element)."""

    kind: Literal["failure", "error", "skipped"]
    message: str
    type: str | None = None
    text: str | None = None


@dataclass
class TestCase:
    classname: str
    name: str
    outcome: Outcome | None = None  # None: passed
    warned: bool = False  # the property severity=warning
    system_out: str | None = None
    time: float | None = None  # seconds


@dataclass
class Suite:
    name: str
    properties: list[tuple[str, str]] = field(default_factory=list)
    cases: list[TestCase] = field(default_factory=list)
    time: float = 0.0  # seconds
    timestamp: datetime | None = None


def _count(suite: Suite, kind: str) -> str:
    return str(sum(case.outcome is not None and case.outcome.kind == kind for case in suite.cases))


def write(suite: Suite, path: str | Path) -> None:
    """Writes `suite` as JUnit XML (UTF-8, indented) to `path`."""
    element = ET.Element(
        "testsuite",
        name=suite.name,
        tests=str(len(suite.cases)),
        failures=_count(suite, "failure"),
        errors=_count(suite, "error"),
        skipped=_count(suite, "skipped"),
        time=f"{suite.time:.3f}",
    )
    if suite.timestamp is not None:
        element.set("timestamp", suite.timestamp.isoformat(timespec="seconds"))
    properties = ET.SubElement(element, "properties")
    for name, value in suite.properties:
        ET.SubElement(properties, "property", name=name, value=value)
    for case in suite.cases:
        testcase = ET.SubElement(element, "testcase", classname=case.classname, name=case.name)
        if case.time is not None:
            testcase.set("time", f"{case.time:.3f}")
        if case.warned:
            case_properties = ET.SubElement(testcase, "properties")
            ET.SubElement(case_properties, "property", name="severity", value="warning")
        if case.outcome is not None:
            outcome = ET.SubElement(testcase, case.outcome.kind, message=case.outcome.message)
            if case.outcome.type is not None:
                outcome.set("type", case.outcome.type)
            outcome.text = case.outcome.text
        if case.system_out is not None:
            ET.SubElement(testcase, "system-out").text = case.system_out
    root = ET.Element("testsuites")
    root.append(element)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
