"""The engines-needed formula (dataengine/capacity.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataengine.capacity import engines_needed


def test_zero_wait_demand_over_capacity() -> None:
    # 1000 samples/s at zero wait, 2% target: 980 samples/s from engines of 100.
    assert engines_needed(1000.0, 100.0) == 10
    assert engines_needed(1000.0, 100.0, target=0.0) == 10
    assert engines_needed(1000.0, 100.0, target=0.1) == 9


def test_waiting_trainer_demands_more_than_it_consumes() -> None:
    # 300 samples/s while waiting half the time: 600 at zero wait.
    assert engines_needed(300.0, 100.0, data_wait=0.5, target=0.0) == 6
    assert engines_needed(300.0, 100.0, data_wait=0.5) == 6  # 588 / 100


def test_exact_fit_does_not_round_up() -> None:
    assert engines_needed(800.0, 100.0, target=0.0) == 8
    assert engines_needed(0.3 * 10 / 0.98, 0.3) == 10


def test_imbalance_asks_for_more_engines() -> None:
    # The busiest of 4 engines is asked for 36% of the samples: 1.44 x even.
    assert engines_needed(80.0, 19.5, target=0.0) == 5
    assert engines_needed(80.0, 19.5, target=0.0, imbalance=1.44) == 6


def test_at_least_one_engine() -> None:
    assert engines_needed(0.0, 100.0) == 1
    assert engines_needed(1.0, 1e6) == 1


def test_wait_is_clamped() -> None:
    assert engines_needed(10.0, 100.0, data_wait=1.0, target=0.0) == 10  # 10 / 0.01
    assert engines_needed(10.0, 100.0, data_wait=-0.5, target=0.0) == 1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"consumed": 1.0, "capacity_per_engine": 0.0}, "capacity_per_engine"),
        ({"consumed": 1.0, "capacity_per_engine": math.nan}, "capacity_per_engine"),
        ({"consumed": -1.0, "capacity_per_engine": 1.0}, "consumed"),
        ({"consumed": math.inf, "capacity_per_engine": 1.0}, "consumed"),
        ({"consumed": 1.0, "capacity_per_engine": 1.0, "target": 1.0}, "target"),
        ({"consumed": 1.0, "capacity_per_engine": 1.0, "data_wait": math.nan}, "data_wait"),
        ({"consumed": 1.0, "capacity_per_engine": 1.0, "imbalance": 0.5}, "imbalance"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        engines_needed(**kwargs)


@given(
    consumed=st.floats(0.0, 1e6),
    capacity=st.floats(1e-3, 1e6),
    wait=st.floats(0.0, 0.99),
    target=st.floats(0.0, 0.5),
)
def test_needed_engines_cover_the_target_and_one_fewer_does_not(
    consumed: float, capacity: float, wait: float, target: float
) -> None:
    n = engines_needed(consumed, capacity, data_wait=wait, target=target)
    required = consumed / (1 - wait) * (1 - target)
    assert n * capacity >= required * (1 - 1e-9)
    if n > 1:
        assert (n - 1) * capacity < required * (1 + 1e-9)
