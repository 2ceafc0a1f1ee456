"""Tests for the percentage behind the closure rate (办结率) in the notify metrics service."""

from __future__ import annotations

import pytest

from services.notify.metrics.service import percentage


def test_reference_figure() -> None:
    assert percentage(462500, 466200) == 99.21


def test_zero_whole_is_none() -> None:
    assert percentage(0, 0) is None
    assert percentage(5, 0) is None


@pytest.mark.parametrize(
    ("part", "whole", "expected"),
    [
        (1, 8, 12.5),
        (1, 16, 6.25),
        (1, 32, 3.13),  # 3.125 rounds half-up, not to even (3.12)
        (3, 32, 9.38),  # 9.375
        (5, 32, 15.63),  # 15.625
        (1, 64, 1.56),  # 1.5625
        (1, 200, 0.5),
        (1, 400, 0.25),
        (1, 800, 0.13),  # 0.125
        (2, 3, 66.67),
        (1, 3, 33.33),
        (1, 6, 16.67),
        (0, 7, 0.0),
        (7, 7, 100.0),
        (1, 1_000_000, 0.0),
        (5, 1_000_000, 0.0),  # 0.0005 -> 0.00
        (50, 1_000_000, 0.01),  # 0.005 -> 0.01
    ],
)
def test_half_up_rounding(part: int, whole: int, expected: float) -> None:
    result = percentage(part, whole)
    assert result == expected
    assert type(result) is float


def test_results_are_floats() -> None:
    for part, whole in ((1, 32), (2, 3), (462500, 466200), (10, 10)):
        assert isinstance(percentage(part, whole), float)


def test_half_up_differs_from_python_round() -> None:
    # round() rounds 3.125 to even; the report must not.
    assert round(3.125, 2) == 3.12
    assert percentage(1, 32) == 3.13


def test_large_counts_stay_exact() -> None:
    assert percentage(10**12 - 1, 10**12) == 100.0
    assert percentage(123_456_789, 987_654_321) == 12.5
