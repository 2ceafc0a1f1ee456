"""What `relief replay` replays: the platform's history, scaled, as a plan per application —
which item, which county, and what the clerks will make of it. Pure functions, no I/O.

DOMAIN.md: by spring 2023 the platform had received 466,200 applications and closed (办结)
462,500 of them, a closure rate of 99.21%. At a scale S the replay submits
round(466,200 × S) applications and closes exactly round(462,500 × S) (half-up, as the
closure rate itself is rounded); the rest stay open, in progress at some stage.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from shared.catalog import catalog

HISTORY_RECEIVED = 466_200
HISTORY_CLOSED = 462_500

# Of the closed applications, the share the clerks refuse: at the analysis (综合分析研判),
# and after the field check found the household not as declared. The rest are approved at
# the item's last stage. (loadtests/profile.py's clerks refuse ~10% at the analysis too.)
REJECT_AT_ANALYSIS_SHARE = 0.10
REJECT_AFTER_FIELD_CHECK_SHARE = 0.05

CLAIMED = "claimed"


class Outcome(enum.StrEnum):
    APPROVE = "approve"  # every stage, then approved at the last one
    REJECT_AT_ANALYSIS = "reject_at_analysis"
    REJECT_AFTER_FIELD_CHECK = "reject_after_field_check"
    KEEP_OPEN = "keep_open"  # worked up to `stop_at`, then left in progress


def half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def scaled(count: int, scale: float) -> int:
    """`count × scale`, rounded half-up (Decimal, so 462,500 × 0.0002 = 92.5 gives 93)."""
    return half_up(Decimal(count) * Decimal(str(scale)))


@dataclass(frozen=True)
class ReplayCounts:
    submitted: int
    closed: int

    @classmethod
    def for_scale(cls, scale: float) -> ReplayCounts:
        if scale <= 0:
            raise ValueError("the scale must be positive")
        submitted = max(1, scaled(HISTORY_RECEIVED, scale))
        return cls(submitted=submitted, closed=min(submitted, scaled(HISTORY_CLOSED, scale)))

    @property
    def left_open(self) -> int:
        return self.submitted - self.closed

    @property
    def closure_rate(self) -> float:
        """办结率 as notify reports it: a percentage, two decimals, half-up."""
        rate = Decimal(self.closed) * 100 / Decimal(self.submitted)
        return float(rate.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def apportion(
    total: int, shares: Mapping[str, float], rng: random.Random | None = None
) -> dict[str, int]:
    """Split `total` by `shares` into whole numbers that add up to `total` (largest
    remainder). Ties between equal remainders go in `rng`'s order, so that 93 applications
    over 129 equally weighted counties do not all land in the first 93 of them."""
    weight = sum(shares.values())
    if total < 0 or weight <= 0:
        raise ValueError("need a non-negative total and positive shares")
    exact = {
        key: Decimal(total) * Decimal(str(share)) / Decimal(str(weight))
        for key, share in shares.items()
    }
    counts = {key: int(value) for key, value in exact.items()}
    order = list(shares)
    if rng is not None:
        rng.shuffle(order)
    order.sort(key=lambda key: exact[key] - counts[key], reverse=True)  # stable: ties keep order
    for key in order[: total - sum(counts.values())]:
        counts[key] += 1
    return counts


def steps(item_code: str) -> list[str]:
    """The statuses a case of this item is worked through: claimed, then its stages."""
    item = catalog().item(item_code)
    if item is None:
        raise KeyError(f"item {item_code} is not in the catalog")
    return [CLAIMED, *(stage.value for stage in item.stages)]


@dataclass(frozen=True)
class PlannedApplication:
    index: int
    item_code: str
    department: str
    region_code: str
    outcome: Outcome
    stop_at: str | None = None  # KEEP_OPEN: the status the case is left in

    @property
    def desk(self) -> tuple[str, str]:
        """The clerk who works it: the item's department in the household's county."""
        return self.department, self.region_code


def _expand(counts: Mapping[str, int], rng: random.Random) -> list[str]:
    values = [key for key, n in counts.items() for _ in range(n)]
    rng.shuffle(values)
    return values


def plan(
    counts: ReplayCounts,
    item_shares: Mapping[str, float],
    counties: Sequence[str],
    rng: random.Random,
) -> list[PlannedApplication]:
    """One plan per application: items in their shares, counties evenly, outcomes so that
    exactly `counts.closed` close — all shuffled, so any prefix looks like the whole."""
    total = counts.submitted
    items = _expand(apportion(total, item_shares, rng), rng)
    regions = _expand(apportion(total, dict.fromkeys(counties, 1.0), rng), rng)
    at_analysis = scaled(counts.closed, REJECT_AT_ANALYSIS_SHARE)
    after_check = scaled(counts.closed, REJECT_AFTER_FIELD_CHECK_SHARE)
    outcomes = _expand(
        {
            Outcome.APPROVE: counts.closed - at_analysis - after_check,
            Outcome.REJECT_AT_ANALYSIS: at_analysis,
            Outcome.REJECT_AFTER_FIELD_CHECK: after_check,
            Outcome.KEEP_OPEN: counts.left_open,
        },
        rng,
    )
    planned = []
    for index, (item_code, region_code, outcome) in enumerate(
        zip(items, regions, outcomes, strict=True)
    ):
        item = catalog().item(item_code)
        assert item is not None
        stop_at = rng.choice(steps(item_code)) if outcome is Outcome.KEEP_OPEN else None
        planned.append(
            PlannedApplication(
                index=index,
                item_code=item_code,
                department=item.department,
                region_code=region_code,
                outcome=Outcome(outcome),
                stop_at=stop_at,
            )
        )
    return planned


# What an approving clerk writes as the help measure, by department: (kind, text).
HELP_MEASURES = {
    "civil": ("social_security", "按月发放救助金"),
    "hrss": ("employment", "推荐就近就业岗位并跟踪"),
    "health": ("health", "纳入大病专项救治，家庭医生随访"),
    "medins": ("health", "医疗救助金按政策报销"),
    "edu": ("education", "落实学生资助并劝返复学"),
    "housing": ("living_conditions", "纳入农村危房改造计划"),
    "water": ("living_conditions", "修复供水设施，保障饮水安全"),
}
