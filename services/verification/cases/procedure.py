"""The official procedure as a state machine (认定程序):
open → claimed (综合分析研判) → the item's review stages, in order → decided; or transferred.

Which stages apply comes from the catalog (data). Pure functions: no I/O, so the rules can be
checked exhaustively.
"""

from __future__ import annotations

from shared.catalog import Item, Stage

OPEN = "open"
CLAIMED = "claimed"
DECIDED = "decided"
TRANSFERRED = "transferred"
ENDED = frozenset({DECIDED, TRANSFERRED})

STAGE_NAMES = {
    Stage.FIELD_CHECK: "实地调查",
    Stage.VILLAGE_REVIEW: "村评议公示",
    Stage.TOWNSHIP_AUDIT: "乡镇审核",
    Stage.COUNTY_DECISION: "县级确定",
}
STATUS_LABELS = {
    OPEN: "待认领",
    CLAIMED: "已认领，综合研判中",
    **{stage.value: name for stage, name in STAGE_NAMES.items()},
    DECIDED: "已办结",
    TRANSFERRED: "已转办",
}


def in_progress(status: str) -> bool:
    return status not in ENDED and status != OPEN


def sequence(item: Item) -> list[str]:
    """The statuses a case of this item passes through while being worked."""
    return [CLAIMED, *(stage.value for stage in item.stages)]


def next_status(item: Item, status: str) -> str | None:
    """Where `advance` leads from `status`; None at the last stage (only a decision follows)."""
    steps = sequence(item)
    if status not in steps:
        return None
    position = steps.index(status)
    return steps[position + 1] if position + 1 < len(steps) else None


def at_last_stage(item: Item, status: str) -> bool:
    return sequence(item)[-1] == status


STEP_NAMES = {CLAIMED: "综合分析研判", **{stage.value: name for stage, name in STAGE_NAMES.items()}}


def stage_name(status: str) -> str:
    """How a status reads in a clerk's list: "已认领，综合研判中", "实地调查"…"""
    return STATUS_LABELS.get(status, status)


def step_name(status: str) -> str:
    """The step of the procedure a status stands for: "综合分析研判", "实地调查"…"""
    return STEP_NAMES.get(status, stage_name(status))
