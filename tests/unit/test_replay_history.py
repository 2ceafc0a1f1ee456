"""relief replay's plan: the history's counts scaled and rounded, split over items and
counties, and outcomes that close exactly the planned number."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from loadtests.data import ITEM_SHARES, county_codes
from services.bench.history import (
    CLAIMED,
    Outcome,
    ReplayCounts,
    apportion,
    plan,
    scaled,
    steps,
)


@pytest.mark.parametrize(
    ("scale", "submitted", "closed", "rate"),
    [
        (1, 466_200, 462_500, 99.21),
        (0.1, 46_620, 46_250, 99.21),
        (0.01, 4_662, 4_625, 99.21),
        (0.001, 466, 463, 99.36),  # 466.2 → 466, 462.5 → 463 (half-up)
        (0.0002, 93, 93, 100.0),  # 93.24 → 93, 92.5 → 93
        (0.0003, 140, 139, 99.29),  # 139.86 → 140, 138.75 → 139
        (0.000001, 1, 0, 0.0),  # never nothing to replay
    ],
)
def test_counts_are_the_history_scaled_half_up(
    scale: float, submitted: int, closed: int, rate: float
) -> None:
    counts = ReplayCounts.for_scale(scale)
    assert (counts.submitted, counts.closed) == (submitted, closed)
    assert counts.left_open == submitted - closed
    assert counts.closure_rate == rate


def test_scaling_rounds_half_up_not_to_even() -> None:
    assert round(462_500 * 0.001) == 462  # Python's round() goes to the even neighbour
    assert scaled(462_500, 0.001) == 463
    assert scaled(3, 0.5) == 2


def test_a_scale_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ReplayCounts.for_scale(0)


def test_apportion_adds_up_and_follows_the_shares() -> None:
    counts = apportion(46_620, ITEM_SHARES)
    assert sum(counts.values()) == 46_620
    assert counts["subsistence_allowance"] == round(46_620 * 0.22)
    for code, share in ITEM_SHARES.items():
        assert abs(counts[code] - 46_620 * share) < 1


def test_apportion_breaks_ties_at_random_not_by_order() -> None:
    counties = county_codes()
    chosen = [
        {
            c
            for c, n in apportion(93, dict.fromkeys(counties, 1.0), random.Random(seed)).items()
            if n
        }
        for seed in range(3)
    ]
    assert all(len(c) == 93 for c in chosen)
    assert chosen[0] != chosen[1] != chosen[2]
    assert chosen[0] != set(counties[:93])


def test_apportion_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="positive shares"):
        apportion(10, {"a": 0.0})


@pytest.mark.parametrize("scale", [0.0003, 0.01])
def test_plan_closes_exactly_the_planned_number(scale: float) -> None:
    counts = ReplayCounts.for_scale(scale)
    planned = plan(counts, ITEM_SHARES, county_codes(), random.Random(7))
    assert len(planned) == counts.submitted
    assert [p.index for p in planned] == list(range(counts.submitted))
    outcomes = Counter(p.outcome for p in planned)
    assert outcomes[Outcome.KEEP_OPEN] == counts.left_open
    assert sum(n for o, n in outcomes.items() if o is not Outcome.KEEP_OPEN) == counts.closed
    assert outcomes[Outcome.APPROVE] > 0.8 * counts.closed
    items = Counter(p.item_code for p in planned)
    assert items == apportion(counts.submitted, ITEM_SHARES, random.Random(7))


def test_plan_spreads_counties_evenly_and_sends_each_to_its_department() -> None:
    counts = ReplayCounts.for_scale(0.01)  # 4,662 over 129 counties: 36 or 37 each
    planned = plan(counts, ITEM_SHARES, county_codes(), random.Random(1))
    per_county = Counter(p.region_code for p in planned)
    assert set(per_county) == set(county_codes())
    assert set(per_county.values()) <= {36, 37}
    assert {p.desk for p in planned if p.item_code == "housing_safety"} <= {
        ("housing", c) for c in county_codes()
    }


def test_cases_left_open_stop_at_a_step_of_their_item() -> None:
    counts = ReplayCounts.for_scale(0.01)
    planned = plan(counts, ITEM_SHARES, county_codes(), random.Random(3))
    left = [p for p in planned if p.outcome is Outcome.KEEP_OPEN]
    assert len(left) == 37
    assert all(p.stop_at in steps(p.item_code) for p in left)
    assert all(p.stop_at is None for p in planned if p.outcome is not Outcome.KEEP_OPEN)


def test_steps_follow_the_catalog() -> None:
    assert steps("subsistence_allowance") == [
        CLAIMED,
        "field_check",
        "village_review",
        "township_audit",
        "county_decision",
    ]
    assert steps("drinking_water") == [CLAIMED, "field_check"]
    with pytest.raises(KeyError):
        steps("no_such_item")
