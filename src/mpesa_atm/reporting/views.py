"""What both pages show alike: the charts of the exchanges (answer codes per operation, latency) and
of counts over time, and the summary facts of a run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup

from mpesa_atm.operations import CONTROL_PREFIX
from mpesa_atm.reporting.charts import answer_bars, latency_histogram, lines_over_time, percentile

__all__ = ["Answer", "Chart", "exchange_charts", "over_time_chart"]


@dataclass(frozen=True)
class Answer:
    """What the charts keep of an exchange: its operation, its answer class, how long it took."""

    label: str
    answer: str  # reporting.exchange.answer_class
    milliseconds: float


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    svg: Markup
    caption: str


def exchange_charts(answers: Iterable[Answer]) -> list[Chart]:
    """The answer codes per operation and the latency distribution, of the API's operations only
    (calls to a mock's control API are left out)."""
    api = [answer for answer in answers if CONTROL_PREFIX not in answer.label]
    rows: dict[str, Counter[str]] = {}
    for answer in sorted(api, key=lambda a: a.label):
        rows.setdefault(answer.label, Counter())[answer.answer] += 1
    timings = [answer.milliseconds for answer in api if answer.answer != "no answer"]
    p50, p99 = percentile(timings, 0.5), percentile(timings, 0.99)
    return [
        Chart(
            "chart-answers",
            "Answer codes per operation",
            answer_bars(rows, title="Answer codes per operation"),
            "Every answer to a request of the API (cases, replays and probes), by its output_ResponseCode "
            "(section 4), or by its HTTP status when it carried none.",
        ),
        Chart(
            "chart-latency",
            "Latency",
            latency_histogram(timings, title="Latency of the answers"),
            f"{len(timings)} answers: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"slowest {max(timings, default=0):.1f} ms.",
        ),
    ]


def over_time_chart(series: Mapping[str, Sequence[tuple[float, float]]], duration: float) -> Chart:
    """Cumulative counts against the seconds since the start (`series`: name -> (seconds, count))."""
    return Chart(
        "chart-over-time",
        "Cases over time",
        lines_over_time(series, title="Cases and requests over time", duration=duration),
        "How many cases and requests had been sent, second by second.",
    )
