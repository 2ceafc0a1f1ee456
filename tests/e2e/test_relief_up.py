"""The whole platform as separate processes: `relief up` starts the three APIs, their
workers and relays; one application walks the happy path over HTTP; stopping leaves no
process behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ROOT, Infra
from tests.e2e.conftest import RunningSystem, base_env, relief_up, sibling_database, wait_for
from tests.factories import APPROVAL, application_body

pytestmark = pytest.mark.e2e


def _assert_all_gone(processes: list[psutil.Process], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    alive = processes
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    assert not alive, [(p.pid, p.name()) for p in alive]


def _stop(system: RunningSystem, sig: signal.Signals) -> list[psutil.Process]:
    tree = system.tree()
    assert len(tree) >= 9  # supervisor, 3 APIs, 3 workers, 2 relays
    system.process.send_signal(sig)
    assert system.process.wait(timeout=60) == 0, system.log()[-3000:]
    assert "stopped" in system.log()
    return tree


def test_happy_path_across_processes_and_clean_sigterm(
    infra: Infra, tmp_path: Path, http: httpx.Client
) -> None:
    env = base_env(tmp_path)
    env["RELIEF_DATABASE_URL"] = sibling_database(infra.database_url, "relief_e2e")
    env["RELIEF_REDIS_URL"] = infra.redis_url.rsplit("/", 1)[0] + "/2"
    with relief_up(env, tmp_path) as system:
        intake, verification, notify = (system.url(s) for s in ("intake", "verification", "notify"))
        token = http.post(f"{intake}/api/v1/auth/wechat", json={"code": "dev:e2e-citizen"})
        citizen = {"Authorization": f"Bearer {token.json()['access_token']}"}
        created = http.post(
            f"{intake}/api/v1/applications",
            json=application_body(),
            headers={**citizen, "Idempotency-Key": "e2e-application-1"},
        )
        assert created.status_code == 201, created.text
        application_id = created.json()["id"]

        # The demo clerk of the county and department sees it in the queue.
        login = http.post(
            f"{verification}/api/v1/auth/login",
            json={"username": "medins-clerk", "password": "demo-pass-2026"},
        )
        clerk = {"Authorization": f"Bearer {login.json()['access_token']}"}

        def queued() -> list[dict[str, object]]:
            items = http.get(f"{verification}/api/v1/cases", headers=clerk).json()["items"]
            return [c for c in items if c["application_id"] == application_id]

        case_id = wait_for(queued)[0]["id"]  # type: ignore[index]
        case_url = f"{verification}/api/v1/cases/{case_id}"
        assert http.post(f"{case_url}/claim", headers=clerk).is_success
        # 医疗救助: 实地调查 -> 乡镇审核 -> 县级确定
        assert http.post(f"{case_url}/advance", headers=clerk, json={}).is_success
        field_check = {"visited_on": "2026-11-01", "findings": "属实", "household_confirmed": True}
        assert http.post(f"{case_url}/field-check", headers=clerk, json=field_check).is_success
        for expected in ("township_audit", "county_decision"):
            advanced = http.post(f"{case_url}/advance", headers=clerk, json={})
            assert advanced.json()["status"] == expected, advanced.text
        decided = http.post(
            f"{verification}/api/v1/cases/{case_id}/decide", headers=clerk, json=APPROVAL
        )
        assert decided.status_code == 200, decided.text

        def closed() -> dict[str, object] | None:
            detail = http.get(
                f"{intake}/api/v1/applications/{application_id}", headers=citizen
            ).json()
            return detail if detail["status"] == "closed" else None

        detail = wait_for(closed)
        assert detail["outcome"] == "approved"  # type: ignore[index]
        kinds = [e["kind"] for e in detail["timeline"]]  # type: ignore[index]
        assert kinds == ["submitted", "case.opened", "case.claimed"] + ["case.stage_passed"] * 3 + [
            "case.decided"
        ]

        def counted() -> dict[str, object] | None:
            totals = http.get(f"{notify}/api/v1/metrics/closure").json()
            return totals if totals["closed"]["total"] == 1 else None

        totals = wait_for(counted)
        assert totals["received"] == 1  # type: ignore[index]
        assert totals["closure_rate"] == 100.0  # type: ignore[index]

        # `relief users create` works against the same running system.
        created_user = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.cli",
                "users",
                "create",
                "--username",
                "new-clerk",
                "--department",
                "civil",
                "--region",
                "530129",
                "--role",
                "clerk",
                "--password-stdin",
            ],
            input="a-long-password\n",
            text=True,
            capture_output=True,
            cwd=ROOT,
            env=system.env,
            timeout=60,
            check=False,
        )
        assert created_user.returncode == 0, created_user.stderr
        assert http.post(
            f"{verification}/api/v1/auth/login",
            json={"username": "new-clerk", "password": "a-long-password"},
        ).is_success

        # Priorities on one machine: the path to the clerks' queue first, then new
        # submissions, then the citizen's timeline and notify's work.
        assert _raised_niceness(system) == {
            "serve intake": 3,
            "serve verification": 0,
            "serve notify": 0,
            "worker intake": 10,
            "worker verification": 0,
            "worker notify": 10,
            "relay intake": 0,
            "relay verification": 0,
        }

        tree = _stop(system, signal.SIGTERM)
    _assert_all_gone(tree)


def _raised_niceness(system: RunningSystem) -> dict[str, int]:
    """How far each service process's priority is below the supervisor's."""
    base = system.tree()[0].nice()
    found = {}
    for process in system.tree()[1:]:
        argv = process.cmdline()
        commands = [i for i, arg in enumerate(argv) if arg in ("serve", "worker", "relay")]
        if "services.cli" in argv and commands:
            at = commands[0]
            found[f"{argv[at]} {argv[at + 1]}"] = process.nice() - base
    return found


def test_embedded_servers_from_scratch_and_ctrl_c_leaves_nothing(
    server_home: Path, http: httpx.Client
) -> None:
    """No URLs: `relief up` starts its own PostgreSQL and Redis, and stops them on Ctrl-C."""
    with relief_up(base_env(server_home), server_home) as system:
        for service in system.ports:
            ready = http.get(f"{system.url(service)}/readyz")
            assert ready.status_code == 200, ready.text
        accounts = (server_home / "demo-accounts.json").read_text()
        assert "medins-clerk" in accounts
        postgres_pid = int((server_home / "postgres/data/postmaster.pid").read_text().split()[0])
        redis_pid = int((server_home / "redis/redis.pid").read_text().strip())
        servers = [psutil.Process(postgres_pid), psutil.Process(redis_pid)]
        tree = _stop(system, signal.SIGINT)
    _assert_all_gone(tree + servers)
