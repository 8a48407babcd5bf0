"""The charts are SVG drawn here: well-formed, labelled, and saying what they count."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from mpesa_atm.reporting import Exchange, answer_class
from mpesa_atm.reporting.charts import answer_bars, latency_histogram, lines_over_time, percentile

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)


def test_answer_bars_stack_each_class_of_answer_with_its_count():
    svg = _parse(
        answer_bars(
            {"POST /token-generation": {"0": 5, "-3": 2, "HTTP 5xx": 1}, "POST </x>": {"-1": 4}},
            title="Answer codes",
        )
    )

    segments = {
        rect.get("data-class"): rect.find(f"{SVG}title").text
        for rect in svg.iter(f"{SVG}rect")
        if rect.get("data-class")
    }
    assert segments == {
        "0": "POST /token-generation: 5 answered 0",
        "-3": "POST /token-generation: 2 answered -3",
        "HTTP 5xx": "POST /token-generation: 1 answered HTTP 5xx",
        "-1": "POST </x>: 4 answered -1",
    }
    texts = [text.text for text in svg.iter(f"{SVG}text")]
    assert "POST </x>" in texts  # escaped by the SVG writer, read back as it was
    assert {"8", "4"} <= set(texts)  # each bar's total


def test_latency_histogram_marks_p50_and_p99():
    values = [float(v) for v in range(1, 101)]

    svg = _parse(latency_histogram(values, title="Latency"))

    marks = {text.get("class"): text.text for text in svg.iter(f"{SVG}text") if text.get("class")}
    assert marks == {"mark p50": "p50 50.0 ms", "mark p99": "p99 99.0 ms"}
    assert percentile(values, 0.5) == 50.0 and percentile([], 0.5) == 0.0


def test_lines_over_time_draw_one_step_line_per_series():
    svg = _parse(
        lines_over_time(
            {"cases": [(0.1, 1), (0.5, 2)], "requests": [(0.1, 1), (0.2, 3)]}, title="t", duration=1
        )
    )

    lines = {line.get("data-series") for line in svg.iter(f"{SVG}polyline")}
    assert lines == {"cases", "requests"}


def test_charts_without_data_say_so():
    assert "no answers" in answer_bars({}, title="x")
    assert "no answers" in latency_histogram([], title="x")


def _answered(status: int | None, body: bytes) -> Exchange:
    return Exchange(
        datetime(2026, 1, 2, tzinfo=UTC),
        0.01,
        "POST",
        "http://bank.test/token-generation",
        (),
        b"{}",
        status,
        response_body=body,
    )


def test_the_chart_names_an_answer_cut_short_for_what_it_is_not_an_unmapped_code():
    truncated = b'{"output_ResponseCode": "0", "output_ResponseDesc": "Succ'

    assert answer_class(_answered(200, truncated)) == "not JSON / truncated"
    assert answer_class(_answered(200, b"<html>busy</html>")) == "not JSON / truncated"
    assert answer_class(_answered(200, b'{"status": "ok"}')) == "no response code"
    assert answer_class(_answered(200, b'{"output_ResponseCode": "00"}')) == "unmapped code"
    assert answer_class(_answered(200, b'{"output_ResponseCode": "-3"}')) == "-3"
    assert answer_class(_answered(502, b"Bad Gateway")) == "HTTP 5xx"
    assert answer_class(_answered(None, b"")) == "no answer"
    # Each class has its colour in the chart's legend.
    svg = _parse(answer_bars({"POST /token-generation": {"not JSON / truncated": 1}}, title="Answer codes"))
    classes = {rect.get("data-class") for rect in svg.iter(f"{SVG}rect")}
    assert "not JSON / truncated" in classes
