"""The demand report's wire form and the client's meter."""

from __future__ import annotations

import pytest

from dataengine.demand import DEMAND_METADATA, DemandMeter, format_demand, parse_demand


def test_round_trip() -> None:
    text = format_demand("0123abcd", 123.4567, 0.25)
    assert parse_demand(text) == ("0123abcd", pytest.approx(123.457), 0.25)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a 1",
        "a 1 2 3",
        "a x 0.1",
        "a 1 1.5",
        "a -1 0.1",
        "a nan 0.1",
        "a inf 0",
        "x" * 65 + " 1 0",
    ],
)
def test_malformed_reports_are_ignored(text: str) -> None:
    assert parse_demand(text) is None


def test_meter_rate_and_wait() -> None:
    meter = DemandMeter(window_s=60.0)
    assert meter.rate() == (0.0, 0.0)
    for _ in range(10):
        meter.consumed(8, wait_s=0.025, compute_s=0.075)  # 8 samples per 0.1 s, 25% waiting
    rate, wait = meter.rate()
    assert rate == pytest.approx(80.0)
    assert wait == pytest.approx(0.25)
    key, value = meter.header()
    assert key == DEMAND_METADATA
    assert parse_demand(value) == (meter.client, pytest.approx(80.0), pytest.approx(0.25))
