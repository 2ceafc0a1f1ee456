"""`relief replay` at a tiny scale, as a process: its own servers and services, applications
through intake, clerks through verification, and notify's counts equal to what it did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from shared.embedded import EmbeddedRedis
from shared.events import EVENTS_STREAM, Envelope, EventType
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

SCALE = "0.0003"  # 466,200 × 0.0003 → 140 applications; 462,500 × 0.0003 → 139 closed


def _leave_an_unread_event(home: Path) -> None:
    """What a replay stopped halfway leaves behind: notify's consumer group on the events
    stream, and an application's submission it never read."""
    queues = EmbeddedRedis(home, preferred_port=None, durable=True)
    queues.start()
    try:
        with redis.Redis.from_url(queues.url(1)) as client:
            client.xgroup_create(EVENTS_STREAM, "notify", id="$", mkstream=True)
            now = datetime.now(UTC)
            stale = Envelope(
                type=EventType.APPLICATION_SUBMITTED,
                application_id=uuid.uuid4(),
                department="medins",
                payload={
                    "item_code": "medical_assistance",
                    "region_code": "530129",
                    "deadline": (now + timedelta(days=15)).isoformat(),
                    "submitted_at": now.isoformat(),
                    "recipient": {"openid": "openid-earlier-run", "phone_enc": None},
                },
            )
            client.xadd(EVENTS_STREAM, stale.to_fields())
    finally:
        queues.stop()


def test_a_small_replay_is_counted_by_notify_as_it_was_done(
    server_home: Path, tmp_path: Path
) -> None:
    # An earlier run's leftovers are not counted with this run's.
    _leave_an_unread_event(server_home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "replay",
            "--scale",
            SCALE,
            "--concurrency",
            "16",
            "--home",
            str(server_home),
            "--out-dir",
            str(tmp_path),
            "--no-progress",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-5000:]

    reports = list(tmp_path.glob("replay-*.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["planned"] == {
        "submitted": 140,
        "closed": 139,
        "left_open": 1,
        "closure_rate": 99.29,
    }
    done, notify = report["done"], report["notify"]
    assert (done["submitted"], done["closed"], done["left_open"]) == (140, 139, 1)
    assert done["approved"] + done["rejected"] == 139
    assert done["rejected"] > 0
    # Read back from notify over HTTP: every submission and every decision counted once.
    assert notify["caught_up"] is True
    assert (notify["received"], notify["closed"], notify["open"]) == (140, 139, 1)
    assert (notify["approved"], notify["rejected"]) == (done["approved"], done["rejected"])
    assert notify["closure_rate"] == 99.29
    assert report["counties"] > 100
    assert sum(report["items"].values()) == 140
    assert report["requests"]["POST /applications"] >= 140
    assert report["requests"]["POST /cases/{id}/decide"] >= 139

    assert "closure rate 99.29%" in finished.stdout
    assert "applications/s" in finished.stdout
