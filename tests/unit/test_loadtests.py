"""The load tests' own arithmetic and data: shapes, the traffic model, request bodies.

Fast and offline: nothing here starts the platform or locust. Locust is imported without
gevent's monkey-patching (LOCUST_SKIP_MONKEY_PATCH), which would otherwise change the whole
test process.
"""

from __future__ import annotations

import csv
import importlib
import math
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from loadtests import data, gridworkers, journeys, run
from loadtests.config import clerk_accounts, service_urls
from loadtests.journeys import Action, CitizenModel, GridModel, Pace, Visit
from loadtests.profile import (
    FIXED_USERS,
    VISITS_PER_APPLICATION,
    TrafficProfile,
    visits_per_second,
)
from services.intake.applications.schemas import ApplicationCreate
from shared.catalog import catalog
from shared.forms import validate_form
from shared.regions import regions

PROFILE = TrafficProfile()
ITEM_CODES = [item.code for item in catalog().items]


def _import_without_monkey_patch(name: str) -> ModuleType:
    saved = os.environ.get("LOCUST_SKIP_MONKEY_PATCH")
    os.environ["LOCUST_SKIP_MONKEY_PATCH"] = "1"
    try:
        return importlib.import_module(name)
    finally:
        if saved is None:
            os.environ.pop("LOCUST_SKIP_MONKEY_PATCH", None)


@pytest.fixture(scope="module")
def shapes() -> ModuleType:
    return _import_without_monkey_patch("loadtests.shapes")


def _ticks(shape: Any, monkeypatch: pytest.MonkeyPatch, step: float = 1.0) -> Iterator[Any]:
    """(run time, tick) over the shape's whole duration and a little beyond."""
    run_time = 0.0
    while run_time <= shape.duration + 2:
        monkeypatch.setattr(shape, "get_run_time", lambda t=run_time: t)
        yield run_time, shape.tick()
        run_time += step


# --- shapes ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["daily", "sweep", "spike"])
def test_every_shape_gives_sane_ticks_over_its_whole_run_then_ends(
    shapes: ModuleType, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    shape = shapes.SHAPES[name](environ={})
    ended_at = None
    for run_time, tick in _ticks(shape, monkeypatch):
        if run_time < shape.duration:
            assert tick is not None, f"{name} ended early at {run_time}"
            users, spawn_rate = tick
            assert isinstance(users, int)
            assert FIXED_USERS + 3 <= users <= shape.peak_users
            assert 0 < spawn_rate <= max(shape.peak_users, 100)
        elif tick is None and ended_at is None:
            ended_at = run_time
        else:
            assert tick is None, f"{name} started again at {run_time}"
    assert ended_at is not None and ended_at <= shape.duration + 1


@pytest.mark.parametrize("speed", [10.0, 100.0, 1000.0])
def test_the_daily_curve_averages_16800_visits_a_day_times_the_speed(
    shapes: ModuleType, monkeypatch: pytest.MonkeyPatch, speed: float
) -> None:
    shape = shapes.DailyCurve(speed=speed, environ={})
    assert shape.duration == pytest.approx(86_400 / speed)
    visits = [PROFILE.visits_rps_of(tick[0]) for _, tick in _ticks(shape, monkeypatch) if tick]
    expected = 16_800 * speed / 86_400
    assert sum(visits) / len(visits) == pytest.approx(expected, rel=0.10)
    # the target itself, before users are rounded, is exact
    targets = [shape.visits_rps_at(t) for t in range(int(shape.duration))]
    assert sum(targets) / len(targets) == pytest.approx(expected, rel=0.01)


def test_the_day_has_a_quiet_night_and_morning_and_evening_peaks(shapes: ModuleType) -> None:
    factor = shapes.day_factor
    assert sum(shapes.HOURLY) / 24 == pytest.approx(1.0)
    assert max(factor(h) for h in (1, 2, 3, 4)) < 0.15
    morning = max(range(6, 12), key=factor)
    evening = max(range(17, 24), key=factor)
    assert 8 <= morning <= 10 and 19 <= evening <= 21
    assert factor(morning) > 1.5 and factor(evening) > 1.5
    assert factor(14) < factor(morning)


def test_a_sweep_day_is_ten_ordinary_days(shapes: ModuleType) -> None:
    daily = shapes.DailyCurve(speed=100, environ={})
    sweep = shapes.SweepDay(speed=100, environ={})
    for run_time in (0.0, 100.0, 400.0, 700.0):
        assert sweep.visits_rps_at(run_time) == pytest.approx(10 * daily.visits_rps_at(run_time))
    assert sweep.peak_users > 8 * daily.peak_users


def test_a_spike_is_fifty_times_the_average_for_a_short_burst_then_back(
    shapes: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    spike = shapes.Spike(speed=100, environ={})
    base = visits_per_second(100)
    seen = {run_time: tick[0] for run_time, tick in _ticks(spike, monkeypatch) if tick}
    assert spike.visits_rps_at(spike.before + 1) == pytest.approx(50 * base)
    assert spike.visits_rps_at(0) == spike.visits_rps_at(spike.duration - 1) == base
    assert seen[spike.before + 1] == spike.peak_users > 40 * seen[0]
    assert seen[spike.duration - 1] == seen[0]
    assert spike.burst < spike.duration / 2


def test_shapes_read_their_settings_from_the_environment(shapes: ModuleType) -> None:
    shape = shapes.DailyCurve(
        environ={"LOADTEST_SPEED": "200", "LOADTEST_START_HOUR": "8", "LOADTEST_DURATION": "60"}
    )
    assert shape.speed == 200 and shape.duration == 60
    assert shape.hour_at(0) == 8 and shape.hour_at(36) == pytest.approx(10)
    with pytest.raises(ValueError, match="positive"):
        shapes.DailyCurve(environ={"LOADTEST_SPEED": "0"})


# --- the traffic model -----------------------------------------------------------------


def test_an_application_brings_24_visits() -> None:
    assert VISITS_PER_APPLICATION == 24
    assert PROFILE.visits_per_application == pytest.approx(24, rel=0.03)
    assert PROFILE.grid_stats.visits_per_application == pytest.approx(6, rel=0.05)


def test_the_user_mix_gives_grid_workers_a_fifth_of_the_applications() -> None:
    citizens, grid, desks = PROFILE.weights()
    citizen_apps = citizens * PROFILE.visit_rate(PROFILE.citizen_stats)
    citizen_apps /= PROFILE.citizen_stats.visits_per_application
    grid_apps = grid * PROFILE.visit_rate(PROFILE.grid_stats)
    grid_apps /= PROFILE.grid_stats.visits_per_application
    assert grid_apps / (citizen_apps + grid_apps) == pytest.approx(0.2, abs=0.02)
    assert desks >= 1


def test_users_map_to_visits_through_a_users_visit_rate() -> None:
    rate = PROFILE.visits_per_weighted_user
    # a citizen thinks ~6 s per visit: a user makes well under one visit a second
    assert 0.05 < rate < 0.5
    users = PROFILE.users_for(100.0)
    assert users == FIXED_USERS + round(100.0 / rate)
    assert PROFILE.visits_rps_of(users) == pytest.approx(100.0, rel=0.01)
    assert PROFILE.requests_per_weighted_user > rate


# --- journeys --------------------------------------------------------------------------


def _drive(journey: journeys.Journey, answers: dict[Action, str]) -> list[Visit]:
    visits: list[Visit] = []
    answer: str | None = None
    while True:
        try:
            visit = journey.send(answer)
        except StopIteration:
            return visits
        visits.append(visit)
        answer = answers.get(visit.action)


def test_a_citizen_applies_answers_the_clerk_and_rates_within_his_budget() -> None:
    model = CitizenModel(apply_share=1.0, rate_share=1.0)
    rng = random.Random(3)
    answers = {Action.SUBMIT: journeys.SUBMITTED, Action.DETAIL: journeys.NEEDS_INFO}
    visits = _drive(journeys.citizen_journey(rng, model, Pace()), answers)
    actions = [v.action for v in visits]
    assert actions[0] is Action.LOGIN and Action.SUBMIT in actions
    assert Action.SUPPLEMENT in actions
    assert all(v.wait > 0 for v in visits)

    closed = {Action.SUBMIT: journeys.SUBMITTED, Action.DETAIL: journeys.CLOSED}
    actions = [v.action for v in _drive(journeys.citizen_journey(rng, model, Pace()), closed)]
    assert actions.count(Action.RATE) == 1


def test_a_citizen_whose_submission_fails_goes_away() -> None:
    model = CitizenModel(apply_share=1.0)
    visits = _drive(
        journeys.citizen_journey(random.Random(1), model, Pace()),
        {Action.SUBMIT: journeys.NOT_SUBMITTED},
    )
    assert visits[-1].action is Action.SUBMIT


def test_a_grid_worker_reports_once_per_journey() -> None:
    rng = random.Random(5)
    for _ in range(50):
        visits = _drive(
            journeys.grid_journey(rng, GridModel(), Pace(), can_submit=True),
            {Action.SUBMIT: journeys.SUBMITTED},
        )
        assert [v.action for v in visits].count(Action.SUBMIT) == 1
        assert len(visits) >= 3
    looking = _drive(journeys.grid_journey(rng, GridModel(), Pace(), can_submit=False), {})
    assert Action.SUBMIT not in [v.action for v in looking]


def test_a_warm_start_rarely_submits() -> None:
    rng = random.Random(9)
    submitting = sum(
        Action.SUBMIT
        in [
            v.action
            for v in _drive(
                journeys.warm_start_journey(rng, CitizenModel(apply_share=1.0), Pace()),
                {Action.SUBMIT: journeys.SUBMITTED},
            )
        ]
        for _ in range(1000)
    )
    assert 150 < submitting < 250


def test_a_warm_start_waits_like_the_journeys_it_stands_for() -> None:
    rng = random.Random(2)
    pace = Pace()
    gaps = visits = 0
    gap_time = total_time = 0.0
    for _ in range(2000):
        journey = journeys.citizen_journey(rng, PROFILE.citizen_model, pace)
        for visit in _drive(journey, {Action.SUBMIT: journeys.SUBMITTED}):
            visits += 1
            total_time += visit.wait
            if visit.wait >= pace.gap[0]:  # think times end before gaps begin
                gaps += 1
                gap_time += visit.wait
    assert gaps / visits == pytest.approx(journeys.GAP_VISIT_SHARE, abs=0.05)
    assert gap_time / total_time == pytest.approx(journeys.GAP_TIME_SHARE, abs=0.05)


def test_the_grid_worker_pool_keeps_each_under_the_hourly_limit() -> None:
    workers = gridworkers.pool("test", 3, 0.25)
    assert workers[0].region == data.CLERK_COUNTY
    assert len({w.openid for w in workers}) == 3
    assert all(regions().is_county(w.region) for w in workers)
    pool = gridworkers.IdentityPool(workers, per_hour=2)
    rng = random.Random(0)
    handed = []
    for _ in range(6):
        worker = pool.acquire(rng, now=100.0)
        assert worker is not None
        handed.append(worker.openid)
        pool.release(worker, booked=True, submitted=True)
    assert pool.acquire(rng, now=100.0) is None
    assert sorted(handed) == sorted(w.openid for w in workers for _ in range(2))
    assert pool.acquire(rng, now=100.0 + 3601) is not None  # an hour later


def test_an_unused_booking_is_given_back() -> None:
    pool = gridworkers.IdentityPool(gridworkers.pool("test", 1, 0.25), per_hour=1)
    rng = random.Random(0)
    worker = pool.acquire(rng, now=0.0)
    assert worker is not None
    pool.release(worker, booked=True, submitted=False)
    assert pool.acquire(rng, now=0.0) is worker
    pool.release(worker, booked=True, submitted=True)
    looker = pool.any_worker(rng)
    assert looker is worker
    pool.release(looker, booked=False, submitted=False)  # only looked: nothing given back
    assert pool.acquire(rng, now=0.0) is None


# --- verdicts on answers ---------------------------------------------------------------


class _Answer:
    """Stands in for locust's response context manager: the answer and how it was judged."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None) -> None:
        self.status_code = status
        self.content = body
        self.headers = headers
        self.request_meta: dict[str, Any] = {}
        self.verdict: str | None = None

    def __enter__(self) -> _Answer:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def success(self) -> None:
        self.verdict = "success"

    def failure(self, why: str) -> None:
        self.verdict = f"failure: {why}"


class _Client:
    def __init__(self, answer: _Answer) -> None:
        self.answer = answer

    def request(self, method: str, url: str, **kwargs: Any) -> _Answer:
        self.answer.request_meta["name"] = kwargs["name"]
        return self.answer


def _judge(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> _Answer:
    calls = _import_without_monkey_patch("loadtests.calls")
    answer = _Answer(status, body, {} if headers is None else headers)
    calls.request(_Client(answer), "POST", "http://h/x", name="/x", races=("case_not_open",))
    return answer


def test_a_429_with_retry_after_is_counted_apart_not_failed() -> None:
    limited = _judge(429, b'{"error": {"code": "rate_limited"}}', {"Retry-After": "12"})
    assert limited.verdict == "success" and limited.request_meta["name"] == "/x [429]"
    bare = _judge(429, b'{"error": {"code": "rate_limited"}}')
    assert bare.verdict == "failure: 429 without Retry-After"


def test_known_races_are_counted_apart_and_other_errors_fail() -> None:
    race = _judge(409, b'{"error": {"code": "case_not_open"}}')
    assert race.verdict == "success"
    assert race.request_meta["name"] == "/x [409 case_not_open]"
    other = _judge(409, b'{"error": {"code": "duplicate_application"}}')
    assert other.verdict == "failure: 409 duplicate_application"
    assert _judge(503, b"{}").verdict == "failure: 503"
    unanswered = _judge(0, b"", None).verdict
    assert unanswered is not None and unanswered.startswith("failure: no response")
    assert _judge(200, b"{}").verdict == "success"


# --- request bodies --------------------------------------------------------------------


def test_the_item_shares_sum_to_one_over_the_15_items() -> None:
    assert math.isclose(sum(data.ITEM_SHARES.values()), 1.0)
    assert sorted(data.ITEM_SHARES) == sorted(ITEM_CODES) and len(ITEM_CODES) == 15
    top = sorted(data.ITEM_SHARES, key=data.ITEM_SHARES.__getitem__, reverse=True)[:4]
    assert set(top) == {
        "subsistence_allowance",
        "medical_assistance",
        "temporary_assistance",
        "housing_safety",
    }


def _check_body(body: dict[str, Any]) -> None:
    parsed = ApplicationCreate.model_validate(body)
    item = catalog().item(parsed.item_code)
    assert item is not None
    validate_form(item, body["form"])
    assert regions().is_county(parsed.household.region_code)
    assert parsed.applicant.id_number[:6] == parsed.household.region_code
    assert all(f.name in body["form"] for f in item.fields if f.required)


@pytest.mark.parametrize("item_code", ITEM_CODES)
def test_200_bodies_of_each_item_pass_the_api_schema_and_the_form_check(item_code: str) -> None:
    rng = random.Random(item_code)
    for _ in range(200):
        _check_body(data.application_body(rng, item_code=item_code))


def test_200_bodies_as_the_load_test_draws_them_pass_and_spread_over_yunnan() -> None:
    rng = random.Random(42)
    bodies = [data.application_body(rng) for _ in range(200)]
    for body in bodies:
        _check_body(body)
    counties = {b["household"]["region_code"] for b in bodies}
    demo = sum(b["household"]["region_code"] == data.CLERK_COUNTY for b in bodies)
    assert len(counties) > 60
    assert 25 < demo < 80  # a quarter for the demo clerks' county
    assert len({b["item_code"] for b in bodies}) >= 12
    assert len({b["applicant"]["id_number"] for b in bodies}) == 200


def test_a_grid_workers_reports_are_in_his_county() -> None:
    rng = random.Random(7)
    for worker in gridworkers.pool("test", 10, 0.25):
        body = data.application_body(rng, region_code=worker.region)
        _check_body(body)
        assert body["household"]["region_code"] == worker.region


# --- the locustfile --------------------------------------------------------------------


def test_the_locustfile_exposes_the_chosen_shape_and_names_without_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loader = _import_without_monkey_patch("locust.util.load_locustfile")
    monkeypatch.setenv("LOADTEST_SHAPE", "spike")
    users, shape_objects = loader.load_locustfile(str(run.ROOT / "loadtests" / "locustfile.py"))
    assert [type(s).__name__ for s in shape_objects] == ["Spike"]
    assert set(users) == {
        "CitizenUser",
        "GridWorkerUser",
        "ClerkDeskUser",
        "OpsUser",
        "MetricsScraperUser",
    }
    assert sum(users[n].fixed_count for n in ("OpsUser", "MetricsScraperUser")) == FIXED_USERS
    citizens = importlib.import_module("loadtests.citizens")
    staff = importlib.import_module("loadtests.staff")
    names = [v for m in (citizens, staff) for k, v in vars(m).items() if k.isupper()]
    names = [n for n in names if isinstance(n, str) and n.startswith("/")]
    assert len(names) > 10
    assert not [n for n in names if re.search(r"[0-9a-f]{8}-|/\d+(/|$)", n)]
    monkey = importlib.import_module("gevent.monkey")
    assert not monkey.is_module_patched("socket")  # the test process is left as it was


# --- run.py ----------------------------------------------------------------------------


def test_run_builds_a_headless_locust_command_with_reports(tmp_path: Path) -> None:
    args = run.parse_args(["--shape", "sweep", "--speed", "50"])
    command = run.locust_command(args, tmp_path)
    assert "--headless" in command
    assert command[command.index("--csv") + 1] == str(tmp_path / "stats")
    assert command[command.index("--html") + 1] == str(tmp_path / "report.html")
    watched = run.locust_command(run.parse_args(["--headless", "0"]), tmp_path)
    assert "--headless" not in watched and "--autostart" in watched
    picking = run.locust_command(run.parse_args(["--headless", "0", "--shape", "pick"]), tmp_path)
    assert "--class-picker" in picking
    with pytest.raises(SystemExit):
        run.parse_args(["--shape", "pick"])
    assert re.fullmatch(r"\d{8}-\d{6}-spike", run.output_dir("spike").name)
    assert run.output_dir("spike").parent == run.ROOT / "runs" / "loadtest"


def test_run_passes_the_shape_and_leaves_gevent_patching_on(tmp_path: Path) -> None:
    args = run.parse_args(["--shape", "daily", "--speed", "100", "--duration", "60"])
    env = run.locust_environment(
        args, {"LOCUST_SKIP_MONKEY_PATCH": "1", "PATH": "/bin"}, tmp_path, "http://h:8001"
    )
    assert "LOCUST_SKIP_MONKEY_PATCH" not in env
    assert env["LOADTEST_SHAPE"] == "daily" and env["LOADTEST_SPEED"] == "100"
    assert env["LOADTEST_DURATION"] == "60" and env["LOADTEST_HOST"] == "http://h:8001"
    assert int(env["LOADTEST_GRID_WORKERS"]) >= 4
    assert env["LOADTEST_OUTPUT_DIR"] == str(tmp_path)


def test_run_summarizes_counted_429s_apart_from_failures(tmp_path: Path) -> None:
    header = ["Type", "Name", "Request Count", "Failure Count", "Requests/s", "95%"]
    rows = [
        ["POST", "/api/v1/applications", "100", "2", "1.0", "300"],
        ["POST", "/api/v1/applications [429]", "5", "0", "0.05", "10"],
        ["POST", "/api/v1/cases/{id}/claim [409 case_not_open]", "3", "0", "0.03", "20"],
        ["GET", "/api/v1/cases?status=[in progress]", "40", "0", "0.4", "30"],
        ["GET", "/api/v1/metrics/closure", "10", "0", "0.1", "50"],
        ["", "Aggregated", "158", "2", "1.58", "250"],
    ]
    with (tmp_path / "stats_stats.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    (tmp_path / "counters-1.json").write_text('{"applications:citizen": 4}')
    (tmp_path / "counters-2.json").write_text('{"applications:grid_worker": 1}')
    summary = run.summarize(tmp_path, 1.2)
    assert summary["requests"] == 158 and summary["failures"] == 2
    assert summary["visits"] == 105 and summary["clerk_requests"] == 43
    assert set(summary["counted_not_failed"]) == {
        "POST /api/v1/applications [429]",
        "POST /api/v1/cases/{id}/claim [409 case_not_open]",
    }
    assert summary["applications"] == 5 and summary["visits_per_application"] == 21.0
    assert summary["target_visits_per_second"] == 1.2


def test_other_services_default_to_the_intake_host(tmp_path: Path) -> None:
    assert service_urls({"LOADTEST_HOST": "http://10.0.0.5:8001/"}) == (
        "http://10.0.0.5:8001",
        "http://10.0.0.5:8002",
        "http://10.0.0.5:8003",
    )
    assert service_urls({})[1] == "http://127.0.0.1:8002"
    accounts = clerk_accounts(tmp_path)
    assert accounts["civil"] == ("civil-clerk", "demo-pass-2026") and len(accounts) == 7
