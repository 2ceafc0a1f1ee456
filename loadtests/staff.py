"""Clerks and ops: the verification and notify side of the load.

Clerk desks. `relief up` seeds one clerk per department (`<dept>-clerk`) in county 530129, so
the load test's clerks are these accounts. A desk holds the token of each and serves the seven
departments in turn, the busier ones more often (by their share of cases); the number of desks
grows with the load. A desk works a case as a clerk does — queue, detail, claim, then the
item's stages as the case detail lists them: the analysis (refuse some, ask the citizen for
information in some, transfer a few to another department), the field check
(`POST /field-check`, then advance), township audit, county decision — and decides.

Items with a village review (低保, 特困供养, 公益性岗位, 危房改造) are worked up to and into the
public notice (公示), whose end is a wall-clock date days away that no speed-up can reach; the
desk reads the notice and leaves the case there, open, as a county's case really is during
those days. Refusing them all at the analysis stage instead would close them, but it would
make every 低保 application a refusal and take the field check and the notice — the heaviest
part of these cases — out of the load.

Ops: one person with the dashboard open (the page, its assets once, then the four closure
queries its script makes every 30 s) and one Prometheus scraping `/metrics` of each service.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from locust import FastHttpUser, task

from loadtests.calls import TALLY, Reply, request
from loadtests.citizens import CONFIG, PROFILE
from loadtests.data import ITEM_SHARES
from services.bench.history import HELP_MEASURES
from shared.catalog import catalog

API = "/api/v1"
LOGIN = f"{API}/auth/login"
QUEUE = f"{API}/cases?status=open"
IN_PROGRESS = f"{API}/cases?status=[in progress]"
CASE = f"{API}/cases/{{id}}"
IN_PROGRESS_STATUSES = ("claimed", "field_check", "township_audit", "county_decision")
VILLAGE_REVIEW = "village_review"
ENDED = ("decided", "transferred")
# A case that ended under the desk (withdrawn by the citizen, worked by another desk).
CASE_RACES = ("case_not_open", "case_not_in_progress", "awaiting_information")

_ASSET = re.compile(r"dashboard/static/([\w.\-]+)\?v=")
_REFUSALS = (
    "经核实，家庭人均纯收入高于当地标准，不符合条件。",
    "经入户调查，申报情况与实际不符。",
    "已享受同类救助，不能重复享受。",
)


def china_today() -> str:
    return (datetime.now(UTC) + timedelta(hours=8)).date().isoformat()


def department_shares() -> dict[str, float]:
    shares: dict[str, float] = defaultdict(float)
    for code, share in ITEM_SHARES.items():
        item = catalog().item(code)
        if item is not None:
            shares[item.department] += share
    return dict(shares)


class ClerkTokens:
    """One login per demo clerk per locust process, shared by the desks (a clerk logs in
    once a day, not once a case; and argon2 makes a login deliberately expensive)."""

    tokens: ClassVar[dict[str, str]] = {}
    logging_in: ClassVar[set[str]] = set()

    @classmethod
    def get(cls, client: Any, department: str) -> str | None:
        if department in cls.tokens:
            return cls.tokens[department]
        if department in cls.logging_in or department not in CONFIG.clerk_accounts:
            return None
        username, password = CONFIG.clerk_accounts[department]
        cls.logging_in.add(department)
        try:
            reply = request(
                client,
                "POST",
                f"{CONFIG.verification_url}{LOGIN}",
                name=LOGIN,
                json={"username": username, "password": password},
            )
        finally:
            cls.logging_in.discard(department)
        if reply.ok and isinstance(reply.data, dict):
            cls.tokens[department] = str(reply.data["access_token"])
        return cls.tokens.get(department)

    @classmethod
    def forget(cls, department: str) -> None:
        cls.tokens.pop(department, None)


@dataclass
class CaseInHand:
    id: str
    department: str
    item_code: str
    status: str
    steps: list[str]  # claimed, then the item's stages (from the case detail)
    submitted_by_role: str
    field_check_done: bool = False
    analysed: bool = False
    refuse_unanswered: bool = False

    def update(self, detail: Any) -> None:
        if isinstance(detail, dict):
            self.status = str(detail.get("status", self.status))
            self.field_check_done = detail.get("field_check") is not None
            stages = detail.get("stages")
            if isinstance(stages, list) and stages:
                self.steps = [str(s["status"]) for s in stages]

    @property
    def at_last_stage(self) -> bool:
        return bool(self.steps) and self.status == self.steps[-1]


class ClerkDeskUser(FastHttpUser):
    """A clerk's desk in county 530129, serving the departments' demo clerk accounts."""

    host = CONFIG.verification_url
    in_hand: ClassVar[set[str]] = set()  # cases a desk of this process is working
    waiting: ClassVar[dict[str, float]] = {}  # case -> when its info request was seen
    quiet_until: ClassVar[dict[str, float]] = {}  # department -> empty queue, look later
    # (index, count) of this locust process among --processes: each works its own share of
    # the cases, so that desks of two processes never work one case at the same time.
    partition: ClassVar[tuple[int, int]] = (0, 1)

    @classmethod
    def mine(cls, case_id: str) -> bool:
        index, count = cls.partition
        return count == 1 or uuid.UUID(case_id).int % count == index

    def on_start(self) -> None:
        self.rng = random.Random()
        self.model = PROFILE.clerk
        self.case: CaseInHand | None = None
        self.next_wait = 0.0
        self.shares = department_shares()

    def on_stop(self) -> None:
        self._drop()

    def wait_time(self) -> float:
        return self.next_wait

    def _think(self) -> None:
        self.next_wait = self.rng.uniform(*self.model.think)

    def _idle(self) -> None:
        self.next_wait = self.rng.uniform(*self.model.idle)

    def _url(self, path: str) -> str:
        return f"{CONFIG.verification_url}{path}"

    def _call(self, method: str, path: str, name: str, department: str, **kwargs: Any) -> Reply:
        token = ClerkTokens.get(self.client, department)
        if token is None:
            return Reply(0, None, False)
        reply = request(
            self.client, method, self._url(path), name=name,
            headers={"Authorization": f"Bearer {token}"}, **kwargs,
        )  # fmt: skip
        if reply.status == 401:
            ClerkTokens.forget(department)
        return reply

    @task
    def step(self) -> None:
        self._think()
        if self.case is None:
            self._find_work()
        else:
            self._work(self.case)

    # --- finding a case -----------------------------------------------------------------

    def _department(self) -> str | None:
        now = time.monotonic()
        ready = {d: s for d, s in self.shares.items() if self.quiet_until.get(d, 0) <= now}
        if not ready:
            return None
        return self.rng.choices(list(ready), weights=list(ready.values()))[0]

    def _find_work(self) -> None:
        department = self._department()
        if department is None:
            self._idle()
            return
        if self.rng.random() < 0.25 and self._resume(department):
            return
        reply = self._call("GET", f"{API}/cases?status=open&limit=20", QUEUE, department)
        items = reply.data.get("items", []) if reply.ok and isinstance(reply.data, dict) else []
        candidates = [c for c in items if c["id"] not in self.in_hand and self.mine(c["id"])]
        if not candidates:
            self.quiet_until[department] = time.monotonic() + self.rng.uniform(*self.model.idle)
            self._idle()
            return
        self._adopt(self.rng.choice(candidates[:5]), department)

    def _resume(self, department: str) -> bool:
        """Pick up a case left in progress: its citizen answered, or a desk stopped."""
        query = "&".join(f"status={s}" for s in IN_PROGRESS_STATUSES)
        reply = self._call("GET", f"{API}/cases?{query}&limit=50", IN_PROGRESS, department)
        items = reply.data.get("items", []) if reply.ok and isinstance(reply.data, dict) else []
        now = time.monotonic()
        for summary in items:
            seen = self.waiting.get(summary["id"])
            if summary["id"] in self.in_hand or not self.mine(summary["id"]):
                continue
            if seen is None or now - seen > CONFIG.info_timeout:
                return self._adopt(summary, department)
        return False

    def _adopt(self, summary: dict[str, Any], department: str) -> bool:
        case_id = str(summary["id"])
        self.in_hand.add(case_id)
        reply = self._call("GET", f"{API}/cases/{case_id}", CASE, department)
        if not reply.ok or not isinstance(reply.data, dict):
            self.in_hand.discard(case_id)
            return False
        case = CaseInHand(
            id=case_id,
            department=department,
            item_code=str(reply.data["item_code"]),
            status=str(reply.data["status"]),
            steps=[],
            submitted_by_role=str(reply.data.get("submitted_by_role", "citizen")),
        )
        case.update(reply.data)
        if case.status != "open":
            case.analysed = True  # a case taken over: its analysis was done before
        if reply.data.get("info_requested_at"):
            first_seen = self.waiting.setdefault(case_id, time.monotonic())
            if time.monotonic() - first_seen <= CONFIG.info_timeout:
                self.in_hand.discard(case_id)
                return False
            case.refuse_unanswered = True
        else:
            self.waiting.pop(case_id, None)
        self.case = case
        return True

    def _drop(self) -> None:
        if self.case is not None:
            self.in_hand.discard(self.case.id)
        self.case = None

    # --- working a case -----------------------------------------------------------------

    def _act(self, case: CaseInHand, action: str, body: Any = None, **kwargs: Any) -> Reply:
        """POST /cases/{id}/<action>; the case follows the answer, a race drops it."""
        reply = self._call(
            "POST",
            f"{API}/cases/{case.id}/{action}",
            f"{API}/cases/{{id}}/{action}",
            case.department,
            json=body if body is not None else {},
            races=CASE_RACES,
            **kwargs,
        )
        if reply.ok:
            case.update(reply.data)
        else:
            self._drop()
        return reply

    def _work(self, case: CaseInHand) -> None:
        if case.status == "open":
            self._act(case, "claim")
        elif case.refuse_unanswered:
            reason = "多次联系，未在期限内补充材料，暂不予认定。"
            if self._decide(case, approved=False, reason=reason):
                TALLY["cases:refused_unanswered"] += 1
        elif case.status == "claimed" and not case.analysed:
            self._analyse(case)
        elif case.status == "field_check" and not case.field_check_done:
            self._field_check(case)
        elif case.status == VILLAGE_REVIEW:
            self._call(
                "GET",
                f"{API}/cases/{case.id}/notice",
                f"{API}/cases/{{id}}/notice",
                case.department,
            )
            TALLY["cases:left_in_public_notice"] += 1
            self._drop()
        elif case.status in ENDED:
            self._drop()
        elif case.at_last_stage:
            approved = self.rng.random() < self.model.approve_at_end
            self._decide(case, approved=approved, reason="" if approved else None)
        else:
            self._act(case, "advance", {"note": ""})

    def _analyse(self, case: CaseInHand) -> None:
        """综合分析研判: most cases go on to the field check; some are refused, some need
        the citizen to say more, a few belong to another department."""
        case.analysed = True
        roll = self.rng.random()
        model = self.model
        if roll < model.reject_at_analysis:
            self._decide(case, approved=False)
        elif roll < model.reject_at_analysis + model.transfer:
            self._transfer(case)
        elif roll < model.reject_at_analysis + model.transfer + model.request_info and (
            case.submitted_by_role == "citizen"
        ):
            reply = self._act(
                case,
                "request-info",
                {"message": "请补充近三个月的收入情况，或村委会出具的困难证明。"},
            )
            if reply.ok:
                TALLY["cases:info_requested"] += 1
                self.waiting[case.id] = time.monotonic()
                self._drop()  # back when the citizen answers (see _resume)
        else:
            self._act(case, "advance", {"note": "材料齐全，进入实地调查"})

    def _field_check(self, case: CaseInHand) -> None:
        confirmed = self.rng.random() < 0.95
        self._act(
            case,
            "field-check",
            {
                "visited_on": china_today(),
                "findings": "入户核实，家庭情况与申报一致" if confirmed else "家庭人口与申报不一致",
                "household_confirmed": confirmed,
            },
        )

    def _transfer(self, case: CaseInHand) -> None:
        others = [i.code for i in catalog().items if i.department != case.department]
        reply = self._act(
            case,
            "transfer",
            {
                "to_item_code": self.rng.choice(others),
                "reason": "申请事项属于其他部门职责，转交办理",
            },
        )
        if reply.ok:
            TALLY["cases:transferred"] += 1
            self._drop()

    def _decide(self, case: CaseInHand, *, approved: bool, reason: str | None = None) -> bool:
        if approved:
            kind, text = HELP_MEASURES.get(case.department, ("social_security", "落实帮扶措施"))
            if case.item_code == "public_welfare_job":
                kind, text = "public_welfare_job", "安排村内公益性岗位"
            body: dict[str, Any] = {
                "outcome": "approved",
                "measures": [{"type": kind, "description": text}],
                "reason": reason or "经核实符合条件",
            }
        else:
            body = {"outcome": "rejected", "reason": reason or self.rng.choice(_REFUSALS)}
        if not self._act(case, "decide", body).ok:
            return False
        TALLY[f"cases:{'approved' if approved else 'rejected'}"] += 1
        if self.rng.random() < self.model.history_share:
            self._call(
                "GET",
                f"{API}/cases/{case.id}/history",
                f"{API}/cases/{{id}}/history",
                case.department,
            )
        self._drop()
        return True


class OpsUser(FastHttpUser):
    """Someone on duty with the dashboard open: it asks for the closure numbers every 30 s."""

    fixed_count = 1
    host = CONFIG.notify_url
    refresh_seconds = 30.0

    def on_start(self) -> None:
        self.rng = random.Random()
        self._open_dashboard(with_assets=True)

    def wait_time(self) -> float:
        return self.refresh_seconds

    def _open_dashboard(self, *, with_assets: bool) -> None:
        page = request(self.client, "GET", f"{CONFIG.notify_url}/dashboard", name="/dashboard")
        if not with_assets or not page.ok:
            return
        html = page.content.decode("utf-8", errors="replace")
        # Cached for a year once loaded (immutable, versioned): fetched once per person.
        for asset in sorted(set(_ASSET.findall(html))):
            request(
                self.client, "GET", f"{CONFIG.notify_url}/dashboard/static/{asset}",
                name="/dashboard/static/{asset}",
            )  # fmt: skip

    @task
    def refresh(self) -> None:
        today = datetime.now(UTC) + timedelta(hours=8)
        first = (today - timedelta(days=29)).date().isoformat()
        base = f"{CONFIG.notify_url}{API}/metrics/closure"
        queries = [
            ("", ""),
            (f"?group_by=day&from={first}&to={today.date().isoformat()}", "?group_by=day"),
            ("?group_by=department", "?group_by=department"),
            ("?group_by=item", "?group_by=item"),
        ]
        if self.rng.random() < 0.1:
            queries.append(("?group_by=region", "?group_by=region"))
        for query, name in queries:
            request(self.client, "GET", f"{base}{query}", name=f"{API}/metrics/closure{name}")
        if self.rng.random() < 0.05:
            self._open_dashboard(with_assets=False)  # someone pressed reload


class MetricsScraperUser(FastHttpUser):
    """Prometheus scraping each service's /metrics every 15 s (deploy/prometheus/)."""

    fixed_count = 1
    host = CONFIG.intake_url

    def wait_time(self) -> float:
        return 15.0

    @task
    def scrape(self) -> None:
        for service, url in (
            ("intake", CONFIG.intake_url),
            ("verification", CONFIG.verification_url),
            ("notify", CONFIG.notify_url),
        ):
            request(self.client, "GET", f"{url}/metrics", name=f"/metrics ({service})")
