"""relief replay's clerks: what they do next with a case, following its plan and the
item's stages."""

from __future__ import annotations

from services.bench.clerks import Step, desks_for, next_step
from services.bench.history import Outcome, PlannedApplication, steps


def _plan(
    outcome: Outcome, item_code: str = "subsistence_allowance", **kw: str
) -> PlannedApplication:
    department = "civil" if item_code == "subsistence_allowance" else "water"
    return PlannedApplication(0, item_code, department, "530129", outcome, **kw)


def _walk(plan: PlannedApplication) -> list[Step]:
    """The steps a clerk takes when every request succeeds and notices end at once."""
    sequence = steps(plan.item_code)
    status, checked, taken = "open", False, []
    while True:
        step = next_step(plan, status, field_check_done=checked, notice_running=False)
        taken.append(step)
        if step in (Step.DONE, Step.LEAVE_OPEN):
            return taken
        if step is Step.CLAIM:
            status = "claimed"
        elif step is Step.FIELD_CHECK:
            checked = True
        elif step is Step.ADVANCE:
            status = sequence[sequence.index(status) + 1]
        else:
            status = "decided"


def test_an_approval_passes_every_stage_of_the_item() -> None:
    assert _walk(_plan(Outcome.APPROVE)) == [
        Step.CLAIM,
        Step.ADVANCE,  # analysis → field check
        Step.FIELD_CHECK,
        Step.ADVANCE,  # → village review
        Step.ADVANCE,  # → township audit
        Step.ADVANCE,  # → county decision
        Step.APPROVE,
        Step.DONE,
    ]
    assert _walk(_plan(Outcome.APPROVE, "drinking_water")) == [
        Step.CLAIM,
        Step.ADVANCE,
        Step.FIELD_CHECK,
        Step.APPROVE,  # the field check is this item's last stage
        Step.DONE,
    ]


def test_refusals_come_at_the_analysis_or_after_the_field_check() -> None:
    assert _walk(_plan(Outcome.REJECT_AT_ANALYSIS)) == [Step.CLAIM, Step.REJECT, Step.DONE]
    assert _walk(_plan(Outcome.REJECT_AFTER_FIELD_CHECK)) == [
        Step.CLAIM,
        Step.ADVANCE,
        Step.FIELD_CHECK,
        Step.REJECT,
        Step.DONE,
    ]


def test_a_case_kept_open_stops_at_its_step_with_the_work_of_that_step_done() -> None:
    at_check = _walk(_plan(Outcome.KEEP_OPEN, stop_at="field_check"))
    assert at_check == [Step.CLAIM, Step.ADVANCE, Step.FIELD_CHECK, Step.LEAVE_OPEN]
    assert _walk(_plan(Outcome.KEEP_OPEN, stop_at="claimed")) == [Step.CLAIM, Step.LEAVE_OPEN]


def test_a_running_public_notice_is_waited_out() -> None:
    plan = _plan(Outcome.APPROVE)
    assert (
        next_step(plan, "village_review", field_check_done=True, notice_running=True)
        is Step.WAIT_FOR_NOTICE
    )
    assert (
        next_step(plan, "village_review", field_check_done=True, notice_running=False)
        is Step.ADVANCE
    )


def test_desks_are_one_per_department_and_county() -> None:
    plans = [
        _plan(Outcome.APPROVE),
        _plan(Outcome.APPROVE),
        _plan(Outcome.APPROVE, "drinking_water"),
    ]
    desks = desks_for(plans)
    assert set(desks) == {("civil", "530129"), ("water", "530129")}
    assert desks["civil", "530129"].unsubmitted == 2
    desks["civil", "530129"].submitted_one("a", plans[0])
    assert not desks["civil", "530129"].all_submitted.is_set()
    desks["civil", "530129"].submitted_one("b", plans[1])
    assert desks["civil", "530129"].all_submitted.is_set()
    assert desks["civil", "530129"].username == "replay-civil-530129"
