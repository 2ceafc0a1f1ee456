"""Citizens and grid workers: locust users carrying out the journeys of `journeys.py`.

Each task call is one visit (one request); the wait before the next is the journey's think
time. A citizen journey uses a new WeChat openid (`dev:<openid>` logins, as `relief up` runs
in dev mode), so per-user limits never bite; a grid worker journey takes a registered grid
worker from the run's pool (see gridworkers.py).
"""

from __future__ import annotations

import itertools
import os
import random
import time
import uuid
from typing import Any, ClassVar

from locust import FastHttpUser, task

from loadtests import data
from loadtests.calls import TALLY, Reply, request
from loadtests.config import LoadtestConfig, config_from_env
from loadtests.gridworkers import GridWorker, IdentityPool
from loadtests.journeys import (
    NOT_SUBMITTED,
    SUBMITTED,
    Action,
    Journey,
    Visit,
    citizen_journey,
    grid_journey,
    warm_start_journey,
)
from loadtests.profile import TrafficProfile, profile_from_env

CONFIG: LoadtestConfig = config_from_env()
PROFILE: TrafficProfile = profile_from_env()

# Locust names: endpoint paths with {id} for identifiers, never the identifiers themselves.
API = "/api/v1"
LOGIN = f"{API}/auth/wechat"
REFRESH = f"{API}/auth/refresh"
CATALOG = f"{API}/catalog"
APPLICATIONS = f"{API}/applications"
RETRY = f"{API}/applications (retry, same Idempotency-Key)"
APPLICATION = f"{API}/applications/{{id}}"
ATTACHMENTS = f"{API}/applications/{{id}}/attachments"
SUPPLEMENTS = f"{API}/applications/{{id}}/supplements"
RATING = f"{API}/applications/{{id}}/rating"
WITHDRAW = f"{API}/applications/{{id}}/withdraw"

_SCORES = (5, 4, 3, 2, 1)
_SCORE_WEIGHTS = (50, 30, 12, 5, 3)
_COMMENTS = ("办事很快，谢谢政府", "工作人员很耐心", "", "等的时间有点长", "希望能再快一些")
_SUPPLEMENTS = (
    "已补充村委会出具的家庭困难证明。",
    "医院的费用清单拍照上传了，请查看。",
    "家里的收入情况：种了三亩玉米，没有其他收入。",
)
_openids = itertools.count(1)
WARM_START_SECONDS = 30.0  # users spawned this soon after the start begin mid-journey


class RunState:
    """Set up by the locustfile's hooks (init: the pool; test_start: the start time)."""

    # This run's grid workers; None when they could not be registered: grid users then
    # apply as citizens.
    pool: ClassVar[IdentityPool | None] = None
    started_at: ClassVar[float] = 0.0  # time.monotonic() at the start of the test

    @classmethod
    def warming_up(cls) -> bool:
        return time.monotonic() - cls.started_at < WARM_START_SECONDS


class _Phone(FastHttpUser):
    """The mini-program on someone's phone: logs in with WeChat and calls intake."""

    abstract = True
    host = CONFIG.intake_url
    role = "citizen"

    def on_start(self) -> None:
        self.rng = random.Random()
        self.access: str | None = None
        self.refresh_token: str | None = None
        self.openid = ""
        self.body: dict[str, Any] = {}
        self.idempotency_key = ""
        self.application_id: str | None = None
        self.submitted = False
        self.next_wait = 0.0
        self.pending: Visit | None = None
        self._begin()
        # The think time before the first visit, as before any other (locust's gevent
        # patches time.sleep: only this user waits).
        time.sleep(self.next_wait)

    def wait_time(self) -> float:
        return self.next_wait

    def _new_journey(self) -> Journey:
        raise NotImplementedError

    def _end_journey(self) -> None:
        """What to tidy up when a journey ends (or the user stops in the middle of one)."""

    def _begin(self) -> None:
        self.access = self.refresh_token = self.application_id = None
        self.submitted = False
        self.journey = self._new_journey()
        self.pending = next(self.journey)
        self.next_wait = self.pending.wait

    def on_stop(self) -> None:
        self._end_journey()

    @task
    def visit(self) -> None:
        if self.pending is None:
            self._begin()
            return
        answer = self.perform(self.pending)
        try:
            self.pending = self.journey.send(answer)
        except StopIteration:
            self._end_journey()
            self._begin()
            return
        self.next_wait = self.pending.wait

    # --- the visits ---------------------------------------------------------------------

    def perform(self, visit: Visit) -> str | None:
        if visit.action not in (Action.LOGIN, Action.CATALOG) and self.access is None:
            self.login()  # the login failed before: the phone tries again first
            if self.access is None:
                return NOT_SUBMITTED if visit.action is Action.SUBMIT else None
        if visit.action is Action.SUBMIT:
            return self.submit()
        if visit.action is Action.DETAIL:
            return self.detail(self.application_id)
        handlers = {
            Action.LOGIN: self.login,
            Action.REFRESH: self.refresh,
            Action.CATALOG: self.catalog,
            Action.LIST: self.list_mine,
            Action.RESUBMIT: self.resubmit,
            Action.UPLOAD: self.upload,
            Action.DETAIL_EARLIER: self.detail_earlier,
            Action.SUPPLEMENT: self.supplement,
            Action.RATE: self.rate,
            Action.WITHDRAW: self.withdraw,
        }
        handlers[visit.action]()
        return None

    def _auth(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}", **(extra or {})}

    def _get(self, path: str, name: str) -> Reply:
        reply = request(
            self.client, "GET", f"{CONFIG.intake_url}{path}", name=name, headers=self._auth()
        )
        self._forget_token_on_401(reply)
        return reply

    def _post(self, path: str, name: str, body: Any, **kwargs: Any) -> Reply:
        reply = request(
            self.client,
            "POST",
            f"{CONFIG.intake_url}{path}",
            name=name,
            json=body,
            headers=self._auth(kwargs.pop("headers", None)),
            **kwargs,
        )
        self._forget_token_on_401(reply)
        return reply

    def _forget_token_on_401(self, reply: Reply) -> None:
        if reply.status == 401:
            self.access = None

    def _take_tokens(self, reply: Reply) -> None:
        if reply.ok and isinstance(reply.data, dict):
            self.access = reply.data.get("access_token")
            self.refresh_token = reply.data.get("refresh_token")

    def catalog(self) -> None:
        request(self.client, "GET", f"{CONFIG.intake_url}{CATALOG}", name=CATALOG)

    def list_mine(self) -> None:
        self._get(f"{APPLICATIONS}?limit=20", APPLICATIONS)

    def login(self) -> None:
        reply = request(
            self.client,
            "POST",
            f"{CONFIG.intake_url}{LOGIN}",
            name=LOGIN,
            json={"code": f"dev:{self.openid}"},
        )
        self._take_tokens(reply)

    def refresh(self) -> None:
        if self.refresh_token is None:
            self.login()
            return
        reply = request(
            self.client,
            "POST",
            f"{CONFIG.intake_url}{REFRESH}",
            name=REFRESH,
            json={"refresh_token": self.refresh_token},
        )
        if reply.ok:
            self._take_tokens(reply)
        else:
            self.access = self.refresh_token = None

    def submit(self) -> str:
        self.idempotency_key = str(uuid.uuid4())
        reply = self._post(
            APPLICATIONS,
            APPLICATIONS,
            self.body,
            expect=(201,),
            headers={"Idempotency-Key": self.idempotency_key},
        )
        if not reply.ok or not isinstance(reply.data, dict):
            TALLY[f"submit_failed:{self.role}"] += 1
            return NOT_SUBMITTED
        self.application_id = str(reply.data["id"])
        self.submitted = True
        TALLY[f"applications:{self.role}"] += 1
        TALLY[f"item:{self.body['item_code']}"] += 1
        return SUBMITTED

    def resubmit(self) -> None:
        """The answer was lost on a weak network: the same request, the same key."""
        first = self.application_id

        def same_application(body: Any) -> str | None:
            if isinstance(body, dict) and str(body.get("id")) == first:
                return None
            return "the same Idempotency-Key gave another application"

        self._post(
            APPLICATIONS,
            RETRY,
            self.body,
            expect=(201,),
            headers={"Idempotency-Key": self.idempotency_key},
            check=same_application,
        )
        TALLY["retries_same_key"] += 1

    def upload(self) -> None:
        if self.application_id is None:
            return
        boundary = uuid.uuid4().hex
        payload = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="photo.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            + data.photo(self.rng)
            + f"\r\n--{boundary}--\r\n".encode()
        )
        reply = request(
            self.client,
            "POST",
            f"{CONFIG.intake_url}{APPLICATIONS}/{self.application_id}/attachments",
            name=ATTACHMENTS,
            data=payload,
            headers=self._auth({"Content-Type": f"multipart/form-data; boundary={boundary}"}),
            expect=(201,),
            races=("application_closed",),
        )
        self._forget_token_on_401(reply)
        TALLY["uploads"] += reply.ok

    def detail(self, application_id: str | None) -> str | None:
        if application_id is None:
            return None
        reply = self._get(f"{APPLICATIONS}/{application_id}", APPLICATION)
        if reply.ok and isinstance(reply.data, dict):
            status = reply.data.get("status")
            return str(status) if status is not None else None
        return None

    def detail_earlier(self) -> None:
        self.list_mine()

    def supplement(self) -> None:
        reply = self._post(
            f"{APPLICATIONS}/{self.application_id}/supplements",
            SUPPLEMENTS,
            {"message": self.rng.choice(_SUPPLEMENTS)},
            races=("no_info_requested",),
        )
        TALLY["supplements"] += reply.ok

    def rate(self) -> None:
        score = self.rng.choices(_SCORES, weights=_SCORE_WEIGHTS)[0]
        reply = self._post(
            f"{APPLICATIONS}/{self.application_id}/rating",
            RATING,
            {"score": score, "comment": self.rng.choice(_COMMENTS)},
            races=("already_rated",),
        )
        TALLY["ratings"] += reply.ok

    def withdraw(self) -> None:
        reply = self._post(
            f"{APPLICATIONS}/{self.application_id}/withdraw",
            WITHDRAW,
            {"reason": "家里情况好转了，不需要了"},
            races=("application_closed",),
        )
        TALLY["withdrawals"] += reply.ok


def _citizen_openid() -> str:
    return f"lt-{CONFIG.run_id}-{os.getpid() % 100000}-c{next(_openids)}"


class CitizenUser(_Phone):
    """A rural resident applying for himself (农户自主申报) through the mini-program."""

    def on_start(self) -> None:
        self.warm = RunState.warming_up()
        super().on_start()

    def _new_journey(self) -> Journey:
        self.openid = _citizen_openid()
        self.body = data.application_body(self.rng, clerk_county_share=PROFILE.clerk_county_share)
        if self.warm:
            self.warm = False
            return warm_start_journey(self.rng, PROFILE.citizen_model, PROFILE.pace)
        return citizen_journey(self.rng, PROFILE.citizen_model, PROFILE.pace)


class GridWorkerUser(_Phone):
    """A grid worker (网格员) reporting for households of his county (代报)."""

    role = "grid_worker"

    def on_start(self) -> None:
        self.worker: GridWorker | None = None
        self.booked = False  # this journey booked one of the worker's hourly submissions
        super().on_start()

    def _new_journey(self) -> Journey:
        pool = RunState.pool
        if pool is None:  # no registered grid workers: this user applies as a citizen
            TALLY["grid_worker_as_citizen"] += 1
            self.role = "citizen"
            self.openid = _citizen_openid()
            self.body = data.application_body(
                self.rng, clerk_county_share=PROFILE.clerk_county_share
            )
            return citizen_journey(self.rng, PROFILE.citizen_model, PROFILE.pace)
        self.role = "grid_worker"
        worker = pool.acquire(self.rng)
        can_submit = self.booked = worker is not None
        if worker is None:
            TALLY["grid_pool_exhausted"] += 1
            worker = pool.any_worker(self.rng)
        if worker is None:
            self.openid = _citizen_openid()
            return grid_journey(self.rng, PROFILE.grid_model, PROFILE.grid_pace, can_submit=False)
        self.worker = worker
        self.openid = worker.openid
        self.body = data.application_body(self.rng, region_code=worker.region)
        return grid_journey(self.rng, PROFILE.grid_model, PROFILE.grid_pace, can_submit=can_submit)

    def _end_journey(self) -> None:
        pool = RunState.pool
        if pool is not None and self.worker is not None:
            if self.submitted and self.application_id is not None:
                pool.reports[self.worker.openid].append(self.application_id)
            pool.release(self.worker, booked=self.booked, submitted=self.submitted)
        self.worker = None

    def detail_earlier(self) -> None:
        pool = RunState.pool
        reports = pool.reports.get(self.openid, []) if pool is not None else []
        candidates = [*reports, *([self.application_id] if self.application_id else [])]
        if candidates:
            self.detail(self.rng.choice(candidates))
        else:
            super().detail_earlier()
