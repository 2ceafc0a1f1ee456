"""The traffic model: from DOMAIN.md's numbers to locust users.

DOMAIN.md: 16,800 visits and ~700 applications a day (24 visits per application). Visits are
the requests of citizens and grid workers (`journeys.py`). At a speed S (the day compressed
S times) the average visit rate is 16,800 × S / 86,400 per second — 19.4/s at S = 100.

Locust does not take a request rate; it takes a number of users, each a closed loop of
request → think → request. So:

    a user's visit rate  r = 1 / (mean think time per visit + mean response time)
    users                   = visits per second / visit rate per user  (+ the fixed ops users)

The mean think time per visit is measured by running the journeys of `journeys.py` offline
(`measure_*`, deterministic), the response time is an assumption (`response_seconds`, 50 ms
by default; a slower system makes each user slower, which a closed loop shows as a lower
achieved rate — the run's summary compares achieved with target). Users are split between the
classes by locust weights so that:

- grid workers make `grid_share` of the applications (20 %), citizens the rest;
- the visits per application come to 24 overall (a grid worker's report brings ~6 visits,
  so a citizen's application brings (24 − 0.2 × 6) / 0.8 = 28.5);
- there are enough clerk desks to work the cases of the demo clerks' county with headroom.

Clerk and ops requests are on top of the visits (they are not the public's visits).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from loadtests.data import DEFAULT_CLERK_COUNTY_SHARE, ITEM_SHARES
from loadtests.journeys import (
    CLOSED,
    NEEDS_INFO,
    SUBMITTED,
    Action,
    CitizenModel,
    GridModel,
    Journey,
    Pace,
    citizen_journey,
    grid_journey,
)
from shared.catalog import Stage, catalog

SECONDS_PER_DAY = 86_400
VISITS_PER_DAY = 16_800
APPLICATIONS_PER_DAY = 700
VISITS_PER_APPLICATION = VISITS_PER_DAY / APPLICATIONS_PER_DAY  # 24
DEFAULT_SPEED = 100.0
# Users of fixed count, outside the weights: one ops person with the dashboard open, one
# Prometheus scraping /metrics (see staff.py).
FIXED_USERS = 2
# At least one citizen, one grid worker and one clerk desk.
MIN_WEIGHTED_USERS = 3


def visits_per_second(speed: float, volume: float = 1.0) -> float:
    """The day's average visit rate, compressed `speed` times, at `volume` × a normal day."""
    return VISITS_PER_DAY * volume * speed / SECONDS_PER_DAY


@dataclass(frozen=True, slots=True)
class JourneyStats:
    visits: int
    applications: int
    think_seconds: float

    @property
    def visits_per_application(self) -> float:
        return self.visits / self.applications if self.applications else math.inf

    @property
    def think_per_visit(self) -> float:
        return self.think_seconds / self.visits


def _walk(journey: Journey, rng: random.Random) -> tuple[int, int, float]:
    """Run one journey against a stand-in platform: submissions succeed, an application's
    status moves on at random between polls."""
    visits = applications = 0
    think = 0.0
    answer: str | None = None
    status = "submitted"
    while True:
        try:
            visit = journey.send(answer)
        except StopIteration:
            return visits, applications, think
        visits += 1
        think += visit.wait
        answer = None
        if visit.action is Action.SUBMIT:
            applications += 1
            answer = SUBMITTED
        elif visit.action is Action.DETAIL:
            roll = rng.random()
            status = (
                CLOSED
                if roll < 0.2 or status == CLOSED
                else NEEDS_INFO
                if roll < 0.25
                else "in_review"
            )
            answer = status


def _measure(journeys: list[Journey], rng: random.Random) -> JourneyStats:
    visits = applications = 0
    think = 0.0
    for journey in journeys:
        made, applied, thought = _walk(journey, rng)
        visits += made
        applications += applied
        think += thought
    return JourneyStats(visits, applications, think)


def measure_citizens(
    model: CitizenModel, pace: Pace, journeys: int = 4000, seed: int = 7
) -> JourneyStats:
    rng = random.Random(seed)
    return _measure([citizen_journey(rng, model, pace) for _ in range(journeys)], rng)


def measure_grid_workers(
    model: GridModel, pace: Pace, journeys: int = 4000, seed: int = 11
) -> JourneyStats:
    rng = random.Random(seed)
    return _measure([grid_journey(rng, model, pace, can_submit=True) for _ in range(journeys)], rng)


@dataclass(frozen=True, slots=True)
class ClerkModel:
    """How a clerk desk (staff.py) works a case of the demo county."""

    think: tuple[float, float] = (1.0, 3.0)
    idle: tuple[float, float] = (3.0, 8.0)  # nothing to do: look at the queue again later
    reject_at_analysis: float = 0.10
    request_info: float = 0.08  # only for cases the citizen submitted himself
    transfer: float = 0.02
    approve_at_end: float = 0.85
    history_share: float = 0.3  # looks at the audit log after deciding
    headroom: float = 2.0  # desks for twice the expected cases: the queue stays short

    @property
    def think_mean(self) -> float:
        return sum(self.think) / 2

    def requests_per_case(self) -> float:
        """Expected clerk requests for one case, from the catalog's stages and item shares:
        queue + detail + claim, then the item's stages; cases with a village review stop
        once the public notice starts (see staff.py)."""
        expected = 0.0
        for code, share in ITEM_SHARES.items():
            item = catalog().item(code)
            if item is None:
                continue
            opening = 3.0  # queue, detail, claim
            if Stage.VILLAGE_REVIEW in item.stages:
                before_notice = item.stages.index(Stage.VILLAGE_REVIEW)
                # advance into each stage before the notice, the field check, into the
                # notice, then read the notice
                worked: float = before_notice + 1 + 1 + 1
            else:
                # advance into each stage, the field check, the decision, maybe the history
                worked = len(item.stages) + 1 + 1 + self.history_share
            ended_early = 1 + self.history_share  # a refusal at the analysis stage
            sidetracked = self.reject_at_analysis + self.transfer
            expected += share * (opening + sidetracked * ended_early + (1 - sidetracked) * worked)
        return expected


@dataclass(frozen=True)
class TrafficProfile:
    """The model with its parameters; `weights()` and `users_for()` are what shapes and the
    locustfile use."""

    pace: Pace = field(default_factory=Pace)
    grid_pace: Pace = field(default_factory=lambda: Pace(think=(2.0, 6.0), gap=(5.0, 15.0)))
    grid_share: float = 0.2
    grid_model: GridModel = field(default_factory=GridModel)
    clerk: ClerkModel = field(default_factory=ClerkModel)
    clerk_county_share: float = DEFAULT_CLERK_COUNTY_SHARE
    response_seconds: float = 0.05

    @cached_property
    def citizen_model(self) -> CitizenModel:
        """The citizen budget that makes the overall visits per application come to 24."""
        grid_visits = self.grid_model.visits_per_report
        per_citizen_application = (VISITS_PER_APPLICATION - self.grid_share * grid_visits) / (
            1 - self.grid_share
        )
        base = CitizenModel()
        looking = (1 - base.apply_share) / base.apply_share * base.browse_visits
        return CitizenModel(apply_visits=per_citizen_application - looking)

    @cached_property
    def citizen_stats(self) -> JourneyStats:
        return measure_citizens(self.citizen_model, self.pace)

    @cached_property
    def grid_stats(self) -> JourneyStats:
        return measure_grid_workers(self.grid_model, self.grid_pace)

    def visit_rate(self, stats: JourneyStats) -> float:
        """Visits per second of one user making these journeys."""
        return 1 / (stats.think_per_visit + self.response_seconds)

    @cached_property
    def clerk_rate(self) -> float:
        """Requests per second of a busy clerk desk."""
        return 1 / (self.clerk.think_mean + self.response_seconds)

    @cached_property
    def users_per_citizen(self) -> tuple[float, float, float]:
        """(citizens, grid workers, clerk desks) per citizen user."""
        citizen_rate = self.visit_rate(self.citizen_stats)
        grid_rate = self.visit_rate(self.grid_stats)
        citizen_apps = citizen_rate / self.citizen_stats.visits_per_application
        grid_apps_per_user = grid_rate / self.grid_stats.visits_per_application
        grid_users = self.grid_share / (1 - self.grid_share) * citizen_apps / grid_apps_per_user
        applications = citizen_apps / (1 - self.grid_share)
        cases = applications * self.clerk_county_share * (1 + self.clerk.transfer)
        cases_per_desk = self.clerk_rate / self.clerk.requests_per_case()
        desks = self.clerk.headroom * cases / cases_per_desk
        return 1.0, grid_users, desks

    def weights(self, scale: int = 1000) -> tuple[int, int, int]:
        """Locust weights of (citizens, grid workers, clerk desks)."""
        _, grid, desks = self.users_per_citizen
        return scale, max(1, round(scale * grid)), max(1, round(scale * desks))

    @cached_property
    def visits_per_weighted_user(self) -> float:
        """Visits per second per weighted user, averaged over the class mix."""
        citizens, grid, desks = self.weights()
        visits = citizens * self.visit_rate(self.citizen_stats) + grid * self.visit_rate(
            self.grid_stats
        )
        return visits / (citizens + grid + desks)

    @cached_property
    def requests_per_weighted_user(self) -> float:
        """All requests (visits and busy clerk desks) per second per weighted user."""
        citizens, grid, desks = self.weights()
        return self.visits_per_weighted_user + desks * self.clerk_rate / (citizens + grid + desks)

    @property
    def visits_per_application(self) -> float:
        citizens = self.citizen_stats.visits_per_application
        grid = self.grid_stats.visits_per_application
        return (1 - self.grid_share) * citizens + self.grid_share * grid

    def users_for(self, visits_rps: float) -> int:
        """Locust users (fixed ones included) for this many visits per second."""
        weighted = max(MIN_WEIGHTED_USERS, round(visits_rps / self.visits_per_weighted_user))
        return FIXED_USERS + weighted

    def visits_rps_of(self, users: int) -> float:
        """The visit rate `users` (as returned by users_for) make."""
        return max(0, users - FIXED_USERS) * self.visits_per_weighted_user

    def grid_users_for(self, users: int) -> int:
        """Grid-worker users among `users` (as users_for returns them)."""
        citizens, grid, desks = self.weights()
        return math.ceil(max(0, users - FIXED_USERS) * grid / (citizens + grid + desks))

    def grid_submissions_per_second(self, visits_rps: float) -> float:
        return visits_rps / self.visits_per_application * self.grid_share


def profile_from_env(environ: Mapping[str, str] | None = None) -> TrafficProfile:
    """The default profile, with the few parameters a run may change from the environment."""
    env = os.environ if environ is None else environ
    base = TrafficProfile()
    return TrafficProfile(
        response_seconds=float(env.get("LOADTEST_RESPONSE_SECONDS", base.response_seconds)),
        clerk_county_share=float(env.get("LOADTEST_CLERK_COUNTY_SHARE", base.clerk_county_share)),
        grid_share=float(env.get("LOADTEST_GRID_SHARE", base.grid_share)),
    )
