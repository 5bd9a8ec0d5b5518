"""Prometheus metrics fed by the events of callers left waiting, fillers and failures.

The sink is the real ``MetricsSink`` and its real registry; the figures are read back from
the Prometheus text exposition, as a scraper reads them.
"""

from __future__ import annotations

import datetime as dt

import pytest
import waiting_calls
from prometheus_client.parser import text_string_to_metric_families

from dashboards.metrics import MetricsSink

START = dt.datetime(2026, 11, 4, 10, 0, tzinfo=dt.UTC)


def samples(sink: MetricsSink) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition: (name, sorted labels) → value."""
    text = sink.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def calls_by_outcome(sink: MetricsSink) -> dict[str, float]:
    return {
        dict(labels)["outcome"]: value
        for (name, labels), value in samples(sink).items()
        if name == "voicebot_calls_total"
    }


def test_every_outcome_is_exported_before_any_call() -> None:
    assert calls_by_outcome(MetricsSink()) == {
        "completed": 0.0,
        "transferred": 0.0,
        "hung_up": 0.0,
        "hung_up_waiting": 0.0,
        "error": 0.0,
        "abandoned": 0.0,
    }


def test_callers_hanging_up_while_waiting_are_counted_as_such() -> None:
    sink = MetricsSink()
    for event in [
        *waiting_calls.silent_after_question("m1", START),
        *waiting_calls.hung_up_one_second_into_answer("m2", START),
        *waiting_calls.filler_then_answer_then_goodbye("m3", START),
    ]:
        sink.emit(event)
    outcomes = calls_by_outcome(sink)
    assert (outcomes["hung_up_waiting"], outcomes["completed"], outcomes["hung_up"]) == (2, 1, 0)
    assert sink.active_calls == 0


def test_a_filler_is_not_the_reply_latency() -> None:
    sink = MetricsSink()
    for event in waiting_calls.filler_then_answer_then_goodbye("m3", START):
        sink.emit(event)
    found = samples(sink)
    # The answer (4.0 s) and the goodbye (0.6 s) are replies; the filler (0.9 s) is not.
    assert found[("voicebot_turn_latency_seconds_count", ())] == 2
    assert found[("voicebot_turn_latency_seconds_sum", ())] == pytest.approx(4.6)
    assert found[("voicebot_turn_latency_seconds_bucket", (("le", "1.0"),))] == 1
    assert found[("voicebot_filler_wait_seconds_count", ())] == 1
    assert found[("voicebot_filler_wait_seconds_bucket", (("le", "0.8"),))] == 0
    assert found[("voicebot_filler_wait_seconds_bucket", (("le", "1.0"),))] == 1
