"""What a citizen or a grid worker does, visit by visit, as plain generators.

A journey yields `Visit`s — one request each, with the think time before it — and is sent back
what the visit showed (the application's status, whether the submission went through). The
locust users in `citizens.py` carry the visits out; `profile.py` runs the same generators
without a network to measure how many visits an application brings and how fast a user
makes them. Keeping the decisions here, free of I/O, is what lets the arithmetic of the load
shapes use the very behaviour the load test runs.

Visits (DOMAIN.md: ~24 per application) are every request a citizen's or grid worker's
phone makes: logins, the catalog, lists, status polls, submissions, uploads, answers.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Generator
from dataclasses import dataclass


class Action(enum.StrEnum):
    LOGIN = "login"  # POST /auth/wechat with a fresh wx.login code
    REFRESH = "refresh"  # POST /auth/refresh: the mini-program reopened later
    CATALOG = "catalog"  # GET /catalog
    LIST = "list"  # GET /applications: "my applications"
    SUBMIT = "submit"  # POST /applications with a new Idempotency-Key
    RESUBMIT = "resubmit"  # the same POST again, same key: a retry on a weak network
    UPLOAD = "upload"  # POST /applications/{id}/attachments: a photo of the evidence
    DETAIL = "detail"  # GET /applications/{id}: status and timeline
    DETAIL_EARLIER = "detail_earlier"  # a grid worker looks at one of his earlier reports
    SUPPLEMENT = "supplement"  # POST /applications/{id}/supplements: answer the clerk
    RATE = "rate"  # POST /applications/{id}/rating after closure
    WITHDRAW = "withdraw"  # POST /applications/{id}/withdraw


# What a journey is told back after a visit.
SUBMITTED = "ok"
NOT_SUBMITTED = "failed"
OPEN_STATUSES = frozenset({"submitted", "accepted", "in_review"})
NEEDS_INFO = "needs_info"
CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Visit:
    action: Action
    wait: float  # seconds of think time before this visit


Journey = Generator[Visit, str | None, None]


@dataclass(frozen=True, slots=True)
class Pace:
    """Think times, in wall-clock seconds. `think`: between the screens of one session;
    `gap`: before a session (a citizen coming back later, a new household) and while a form
    is being filled in. Compressing the day does not compress a person's thinking: a faster
    load comes from more users, not faster ones."""

    think: tuple[float, float] = (1.0, 4.0)
    gap: tuple[float, float] = (5.0, 15.0)

    def think_time(self, rng: random.Random) -> float:
        return rng.uniform(*self.think)

    def gap_time(self, rng: random.Random) -> float:
        return rng.uniform(*self.gap)


@dataclass(frozen=True, slots=True)
class CitizenModel:
    """A citizen's journeys. Most apply; some only look (catalog, their list) and leave.

    An applying journey has a budget of visits drawn around `apply_visits`: it logs in,
    reads the catalog, submits, maybe uploads a photo, looks at the result, then comes back
    in later sessions (refreshing the login, listing, polling the status), answering a
    request for information, rating after closure, rarely withdrawing — until the budget is
    spent. The budget, not the clerks' speed, sets how many visits an application brings.
    """

    apply_visits: float = 27.7
    apply_share: float = 0.75
    list_share: float = 0.5  # opens "my applications" on the way in
    resubmit_share: float = 0.03
    upload_share: float = 0.4
    refresh_share: float = 0.5  # a return session that starts with a token refresh
    return_list_share: float = 0.6
    rate_share: float = 0.7  # rates once he sees it closed
    withdraw_share: float = 0.005  # per return session while open

    @property
    def browse_visits(self) -> float:
        return 2 + self.list_share

    @property
    def visits_per_application(self) -> float:
        """Visits of all citizen journeys (looking-only ones too) per citizen application."""
        looking = (1 - self.apply_share) / self.apply_share * self.browse_visits
        return self.apply_visits + looking


@dataclass(frozen=True, slots=True)
class GridModel:
    """A grid worker (网格员) reporting for a household of his county: logs in, fills the
    form, maybe photographs the evidence, then looks at his list and earlier reports."""

    visits_per_report: float = 6.0
    catalog_share: float = 0.3
    upload_share: float = 0.5
    list_share: float = 0.4  # otherwise a look at one earlier report


def _budget(rng: random.Random, mean: float, minimum: int) -> int:
    """A visit budget around `mean` (±50 %), rounded so that its expectation stays `mean`."""
    value = mean * rng.uniform(0.5, 1.5)
    return max(minimum, math.floor(value + rng.random()))


class _Budget:
    """Counts a journey's visits against its budget."""

    def __init__(self, visits: int) -> None:
        self.visits = visits
        self.made = 0

    @property
    def left(self) -> bool:
        return self.made < self.visits

    def visit(self, action: Action, wait: float) -> Generator[Visit, str | None, str | None]:
        self.made += 1
        answer = yield Visit(action, wait)
        return answer


def citizen_journey(rng: random.Random, model: CitizenModel, pace: Pace) -> Journey:
    if rng.random() >= model.apply_share:
        yield from _look_around(rng, model, pace)
        return
    budget = _Budget(_budget(rng, model.apply_visits, minimum=8))
    if (yield from _apply(rng, model, pace, budget)):
        yield from _come_back(rng, model, pace, budget)


def _look_around(rng: random.Random, model: CitizenModel, pace: Pace) -> Journey:
    yield Visit(Action.LOGIN, pace.gap_time(rng))
    yield Visit(Action.CATALOG, pace.think_time(rng))
    if rng.random() < model.list_share:
        yield Visit(Action.LIST, pace.think_time(rng))


def _apply(
    rng: random.Random, model: CitizenModel, pace: Pace, budget: _Budget
) -> Generator[Visit, str | None, bool]:
    """The first session: log in, read the catalog, fill in the form, submit, look."""
    yield from budget.visit(Action.LOGIN, pace.gap_time(rng))
    yield from budget.visit(Action.CATALOG, pace.think_time(rng))
    if rng.random() < model.list_share:
        yield from budget.visit(Action.LIST, pace.think_time(rng))
    outcome = yield from budget.visit(Action.SUBMIT, pace.gap_time(rng))
    if outcome != SUBMITTED:
        return False
    if rng.random() < model.resubmit_share:
        yield from budget.visit(Action.RESUBMIT, pace.think_time(rng))
    if rng.random() < model.upload_share:
        yield from budget.visit(Action.UPLOAD, pace.think_time(rng))
    yield from budget.visit(Action.DETAIL, pace.think_time(rng))
    return True


def _come_back(rng: random.Random, model: CitizenModel, pace: Pace, budget: _Budget) -> Journey:
    """Return sessions until the budget is spent, acting on what the status says."""
    rating_considered = withdrawn = False
    while budget.left:
        status = yield from _return_session(rng, model, pace, budget)
        if not budget.left:
            return
        if status == NEEDS_INFO:
            yield from budget.visit(Action.SUPPLEMENT, pace.think_time(rng))
        elif status == CLOSED and not rating_considered:
            rating_considered = True
            if rng.random() < model.rate_share:
                yield from budget.visit(Action.RATE, pace.think_time(rng))
        elif status in OPEN_STATUSES and not withdrawn and rng.random() < model.withdraw_share:
            withdrawn = True
            yield from budget.visit(Action.WITHDRAW, pace.think_time(rng))


def _return_session(
    rng: random.Random, model: CitizenModel, pace: Pace, budget: _Budget
) -> Generator[Visit, str | None, str | None]:
    """He opens the mini-program again some time later: the status of his application."""
    wait = pace.gap_time(rng)
    if rng.random() < model.refresh_share:
        yield from budget.visit(Action.REFRESH, wait)
        wait = pace.think_time(rng)
    if budget.left and rng.random() < model.return_list_share:
        yield from budget.visit(Action.LIST, wait)
        wait = pace.think_time(rng)
    if not budget.left:
        return None
    return (yield from budget.visit(Action.DETAIL, wait))


def grid_journey(rng: random.Random, model: GridModel, pace: Pace, *, can_submit: bool) -> Journey:
    """One report (or, when `can_submit` is false because every registered grid worker has
    used up his hourly submissions, only a look at earlier reports)."""
    budget = _Budget(_budget(rng, model.visits_per_report, minimum=3))
    yield from budget.visit(Action.LOGIN, pace.gap_time(rng))
    if can_submit:
        if rng.random() < model.catalog_share:
            yield from budget.visit(Action.CATALOG, pace.think_time(rng))
        outcome = yield from budget.visit(Action.SUBMIT, pace.gap_time(rng))
        if outcome == SUBMITTED and budget.left and rng.random() < model.upload_share:
            yield from budget.visit(Action.UPLOAD, pace.think_time(rng))
    while budget.left:
        action = Action.LIST if rng.random() < model.list_share else Action.DETAIL_EARLIER
        yield from budget.visit(action, pace.think_time(rng))


# The share of a citizen's journey spent in its first session (login to first look at the
# submitted application), roughly: it is where a warm start begins a fresh journey.
FIRST_SESSION_SHARE = 0.2
# Of a citizen's visits, the share that open a session (after a gap), and the share of his
# waiting time spent in those gaps (they are longer than think times).
GAP_VISIT_SHARE = 0.45
GAP_TIME_SHARE = 0.75


def warm_start_journey(rng: random.Random, model: CitizenModel, pace: Pace) -> Journey:
    """The first journey of a user present when the run begins.

    Started cold, every user would log in and submit within the first half-minute: a burst
    of submissions several times the steady rate that no real morning has. Instead most
    begin as a citizen who applied before the run and only comes back to look (the rest
    of such a journey: login, then his list and the catalog, session by session); a fifth
    begin a fresh journey, as at any moment a fifth of citizens are in their first session.
    """
    if rng.random() < FIRST_SESSION_SHARE:
        yield from citizen_journey(rng, model, pace)
        return
    remaining = rng.randint(1, max(1, round(model.apply_visits)))
    # Caught in the middle of a wait: what is left of a think time or, more likely (they
    # are longer), of a gap between sessions.
    in_gap = rng.random() < GAP_TIME_SHARE
    yield Visit(
        Action.LOGIN, rng.random() * (pace.gap_time(rng) if in_gap else pace.think_time(rng))
    )
    for _ in range(remaining - 1):
        action = Action.LIST if rng.random() < 0.7 else Action.CATALOG
        in_gap = rng.random() < GAP_VISIT_SHARE
        yield Visit(action, pace.gap_time(rng) if in_gap else pace.think_time(rng))
