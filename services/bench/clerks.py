"""The simulated clerks of `relief replay`, working cases through the real verification API.

One desk per department × county that has applications (a clerk sees only his department's
cases in his county). A desk reads its queue (`GET /cases?status=open`), then works each case
as its plan says — claim, the analysis, the field check record, every stage of the item, the
decision — and comes back to the cases waiting out a public notice once it has ended.

The desks' accounts are written straight into verification's table with one shared hash of a
random password, and their tokens minted with `shared.auth.issue_token`, as `relief bench`
mints citizens' tokens: nobody logs in (a login is an argon2 hash, ~0.2 s; a thousand desks
would spend minutes on it before the first case).
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pwdlib import PasswordHash

from services.bench.history import HELP_MEASURES, Outcome, PlannedApplication, steps
from services.bench.lanes import Lanes, ReplayError
from services.verification.accounts import repository as accounts
from services.verification.accounts.service import principal_of
from services.verification.models import StaffUser
from shared.auth import Audience, Role, issue_token
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.pagination import MAX_LIMIT
from shared.settings import ServiceSettings

API = "/api/v1"
TOKEN_TTL_SECONDS = 12 * 3600
ENDED = ("decided", "transferred")


class Step(enum.StrEnum):
    CLAIM = "claim"
    FIELD_CHECK = "field-check"
    ADVANCE = "advance"
    APPROVE = "approve"
    REJECT = "reject"
    WAIT_FOR_NOTICE = "wait_for_notice"
    LEAVE_OPEN = "leave_open"
    DONE = "done"


def next_step(  # noqa: PLR0911 (a decision table: one answer per line reads best)
    plan: PlannedApplication,
    status: str,
    *,
    field_check_done: bool,
    notice_running: bool,
) -> Step:
    """What the clerk does next with a case in `status`, following its plan."""
    if status in ENDED:
        return Step.DONE
    if status == "open":
        return Step.CLAIM
    stage_work_done = status != "field_check" or field_check_done
    if plan.outcome is Outcome.KEEP_OPEN and status == plan.stop_at and stage_work_done:
        return Step.LEAVE_OPEN
    if plan.outcome is Outcome.REJECT_AT_ANALYSIS and status == "claimed":
        return Step.REJECT
    if not stage_work_done:
        return Step.FIELD_CHECK
    if plan.outcome is Outcome.REJECT_AFTER_FIELD_CHECK and status == "field_check":
        return Step.REJECT
    if status == "village_review" and notice_running:
        return Step.WAIT_FOR_NOTICE
    if status == steps(plan.item_code)[-1]:
        return Step.APPROVE
    return Step.ADVANCE


def china_today() -> str:
    return (datetime.now(UTC) + timedelta(hours=8)).date().isoformat()


def _action(step: Step, plan: PlannedApplication) -> tuple[str, dict[str, Any]]:
    """The endpoint (after /cases/{id}/) and the body of a step."""
    match step:
        case Step.CLAIM:
            return "claim", {}
        case Step.FIELD_CHECK:
            confirmed = plan.outcome is not Outcome.REJECT_AFTER_FIELD_CHECK
            findings = (
                "入户核实，家庭情况与申报一致" if confirmed else "入户核实，家庭人口与申报不一致"
            )
            body = {"visited_on": china_today(), "findings": findings}
            return "field-check", {**body, "household_confirmed": confirmed}
        case Step.ADVANCE:
            return "advance", {"note": ""}
        case Step.APPROVE:
            kind, text = HELP_MEASURES.get(plan.department, ("social_security", "落实帮扶措施"))
            measures = [{"type": kind, "description": text}]
            return "decide", {
                "outcome": "approved",
                "measures": measures,
                "reason": "经核实符合条件",
            }
        case Step.REJECT:
            reason = (
                "经综合分析研判，不符合该事项的救助条件。"
                if plan.outcome is Outcome.REJECT_AT_ANALYSIS
                else "经入户调查，申报情况与实际不符。"
            )
            return "decide", {"outcome": "rejected", "reason": reason}
    raise ValueError(f"{step} is not a request")


@dataclass
class Tally:
    """What the replay did, counted as it goes (the progress bars read it)."""

    submitted: int = 0
    cases_found: int = 0
    approved: int = 0
    rejected: int = 0
    left_open: int = 0
    waiting_for_notice: int = 0

    @property
    def closed(self) -> int:
        return self.approved + self.rejected


@dataclass
class Desk:
    department: str
    region_code: str
    token: str = ""
    # application id -> its plan, filled as the submissions come back
    expected: dict[str, PlannedApplication] = field(default_factory=dict)
    unsubmitted: int = 0  # its applications still being submitted
    all_submitted: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def username(self) -> str:
        return f"replay-{self.department}-{self.region_code}"

    def submitted_one(self, application_id: str, plan: PlannedApplication) -> None:
        self.expected[application_id] = plan
        self.unsubmitted -= 1
        if self.unsubmitted == 0:
            self.all_submitted.set()


def desks_for(plans: Iterable[PlannedApplication]) -> dict[tuple[str, str], Desk]:
    desks: dict[tuple[str, str], Desk] = {}
    for plan in plans:
        desk = desks.get(plan.desk)
        if desk is None:
            desk = desks[plan.desk] = Desk(plan.department, plan.region_code)
        desk.unsubmitted += 1
    return desks


async def create_accounts(
    database_url: str, signing: ServiceSettings, desks: Iterable[Desk]
) -> str:
    """A clerk account per desk (tokens set on the desks) and an admin for the metrics;
    returns the admin's token."""
    engine = create_engine(ServiceSettings(database_url=database_url), application_name="replay")
    password_hash = PasswordHash.recommended().hash(secrets.token_urlsafe(24))

    def account(username: str, role: Role, department: str | None, region: str) -> StaffUser:
        return StaffUser(
            id=uuid.uuid4(),
            username=username,
            display_name=username,
            password_hash=password_hash,
            role=role.value,
            department=department,
            region_code=region,
            disabled=False,
            failed_logins=0,
            token_version=0,
        )

    def token(user: StaffUser) -> str:
        principal = principal_of(user)
        return issue_token(
            signing, principal, audience=Audience.STAFF, ttl_seconds=TOKEN_TTL_SECONDS
        )

    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            admin = account("replay-admin", Role.ADMIN, None, "530000")
            accounts.add(session, admin)
            for desk in desks:
                user = account(desk.username, Role.CLERK, desk.department, desk.region_code)
                accounts.add(session, user)
                desk.token = token(user)
            await session.flush()
    finally:
        await engine.dispose()
    return token(admin)


@dataclass(order=True)
class _Waiting:
    ends_at: datetime
    case_id: str = field(compare=False)
    plan: PlannedApplication = field(compare=False)
    detail: dict[str, Any] = field(compare=False)


class Clerk:
    """Works one desk's cases, one after another as a clerk does; public notices are waited
    out alongside the other cases, not in front of them."""

    def __init__(self, api: Lanes, base_url: str, desk: Desk, tally: Tally) -> None:
        self.api = api
        self.base_url = base_url
        self.desk = desk
        self.tally = tally

    async def run(self, routing_timeout: float) -> None:
        await self.desk.all_submitted.wait()
        waiting: list[_Waiting] = []
        async for case_id, plan in self._queue(routing_timeout):
            in_notice = await self._work(case_id, plan, {"status": "open"})
            if in_notice is not None:
                heapq.heappush(waiting, in_notice)
        while waiting:
            first = heapq.heappop(waiting)
            await asyncio.sleep(max(0.0, (first.ends_at - datetime.now(UTC)).total_seconds()))
            self.tally.waiting_for_notice -= 1
            again = await self._work(first.case_id, first.plan, first.detail)
            if again is not None:  # the clocks disagree by a hair: look again shortly
                heapq.heappush(waiting, again)

    async def _queue(self, routing_timeout: float) -> AsyncIterator[tuple[str, PlannedApplication]]:
        """The desk's cases as they reach its queue (routing runs behind the submissions)."""
        missing = dict(self.desk.expected)
        deadline = asyncio.get_running_loop().time() + routing_timeout
        pause = 0.5
        while missing:
            cursor: str | None = None
            found = 0
            while True:
                params: dict[str, Any] = {"status": "open", "limit": MAX_LIMIT}
                if cursor:
                    params["cursor"] = cursor
                page = await self._get("/cases", "GET /cases?status=open", params=params)
                for summary in page["items"]:
                    plan = missing.pop(str(summary["application_id"]), None)
                    if plan is not None:
                        found += 1
                        self.tally.cases_found += 1
                        yield str(summary["id"]), plan
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            if missing:
                if asyncio.get_running_loop().time() > deadline:
                    raise ReplayError(
                        f"{len(missing)} applications never reached {self.desk.username}'s queue"
                    )
                # routing runs behind: look again soon while cases arrive, rarely when not
                pause = 0.5 if found else min(pause * 2, 5.0)
                await asyncio.sleep(pause)

    async def _get(self, path: str, name: str, **kwargs: Any) -> Any:
        response = await self.api.call(
            "GET", f"{self.base_url}{API}{path}", name=name, token=self.desk.token, **kwargs
        )
        if response.status_code != 200:
            raise ReplayError(f"{name}: HTTP {response.status_code} {response.text[:300]}")
        return response.json()

    async def _work(
        self, case_id: str, plan: PlannedApplication, detail: dict[str, Any]
    ) -> _Waiting | None:
        """Work the case until its plan is done, or until a public notice must run out
        (then the notice's end is returned)."""
        for _ in range(20):  # more than any item has steps, retries included
            ends = detail.get("notice_ends_at")
            ends_at = datetime.fromisoformat(ends) if ends else None
            step = next_step(
                plan,
                str(detail["status"]),
                field_check_done=detail.get("field_check") is not None,
                notice_running=ends_at is not None and datetime.now(UTC) < ends_at,
            )
            if step is Step.DONE:
                return None
            if step is Step.LEAVE_OPEN:
                self.tally.left_open += 1
                return None
            if step is Step.WAIT_FOR_NOTICE:
                assert ends_at is not None
                self.tally.waiting_for_notice += 1
                return _Waiting(ends_at, case_id, plan, detail)
            detail = await self._act(case_id, step, plan)
            if detail.get("status") == "decided" and step in (Step.APPROVE, Step.REJECT):
                if step is Step.APPROVE:
                    self.tally.approved += 1
                else:
                    self.tally.rejected += 1
        raise ReplayError(f"case {case_id} ({plan.item_code}) did not follow its plan")

    async def _act(self, case_id: str, step: Step, plan: PlannedApplication) -> dict[str, Any]:
        action, body = _action(step, plan)
        url = f"{self.base_url}{API}/cases/{case_id}"
        response = await self.api.call(
            "POST", f"{url}/{action}", name=f"POST /cases/{{id}}/{action}",
            token=self.desk.token, json=body,
        )  # fmt: skip
        if response.status_code == 200:
            detail: dict[str, Any] = response.json()
            return detail
        if response.status_code == 409:
            # Ours, but not as we thought (an answer lost on the way, a notice that has
            # not quite ended): read the case and carry on from where it is.
            return dict(await self._get(f"/cases/{case_id}", "GET /cases/{id}"))
        raise ReplayError(f"{action} {case_id}: HTTP {response.status_code} {response.text[:300]}")
