"""Load test of the relief platform (政府救助平台): citizens, grid workers, clerks and ops.

Run it through `make loadtest SHAPE=daily|sweep|spike` (loadtests/run.py), which starts the
platform with raised per-IP limits, registers nothing by hand and writes the reports; or by
hand against a running platform:

    LOADTEST_SHAPE=daily LOADTEST_SPEED=100 .venv/bin/locust -f loadtests/locustfile.py \\
        --headless --csv runs/loadtest/manual/stats --html runs/loadtest/manual/report.html

Users (weights from profile.py, so that the visit rate follows the shape and grid workers
make a fifth of the applications):

- `CitizenUser`: logs in with `dev:<openid>`, reads the catalog, applies with an
  Idempotency-Key, polls the status, answers a request for information, rates after
  closure (citizens.py).
- `GridWorkerUser`: a registered grid worker reporting for households of his county.
- `ClerkDeskUser`: the demo clerks of county 530129 working their queues (staff.py).
- `OpsUser`, `MetricsScraperUser`: the dashboard and Prometheus, one of each.

Hooks: `init` registers this run's grid workers with `relief grid-workers add` before the
test starts (in one subprocess; when that fails, grid-worker users apply as citizens
instead; why not `test_start`: see the hook); `test_stop` writes the domain counters
(calls.TALLY) next to the CSVs; `quitting` deactivates the grid workers.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests import gridworkers
from loadtests.calls import TALLY
from loadtests.citizens import CONFIG, PROFILE, CitizenUser, GridWorkerUser, RunState
from loadtests.shapes import SHAPES
from loadtests.staff import ClerkDeskUser, MetricsScraperUser, OpsUser

__all__ = [
    "CitizenUser",
    "ClerkDeskUser",
    "GridWorkerUser",
    "MetricsScraperUser",
    "OpsUser",
]

log = logging.getLogger("loadtests")

CitizenUser.weight, GridWorkerUser.weight, ClerkDeskUser.weight = PROFILE.weights()

# Locust takes every shape class it finds in this module, uses the first and offers all with
# --class-picker: expose only the one LOADTEST_SHAPE names, or all three when it is unset.
_chosen = os.environ.get("LOADTEST_SHAPE", "").strip().lower()
if _chosen and _chosen not in SHAPES:
    raise SystemExit(f"LOADTEST_SHAPE must be one of {', '.join(SHAPES)}, not {_chosen!r}")
for _name, _shape in SHAPES.items():
    if _chosen in ("", _name):
        globals()[_shape.__name__] = _shape
del _name, _shape  # a loop variable holding a shape class would be found too

_grid_workers: list[gridworkers.GridWorker] = []
_Handler = TypeVar("_Handler", bound=Callable[..., None])


def listener(hook: Any) -> Callable[[_Handler], _Handler]:
    """`@events.<hook>.add_listener`, typed (locust's EventHook is not)."""

    def add(handler: _Handler) -> _Handler:
        hook.add_listener(handler)
        return handler

    return add


def _pool_size(environment: Environment) -> int:
    if CONFIG.grid_workers is not None:
        return CONFIG.grid_workers
    shape: Any = environment.shape_class
    if shape is not None and hasattr(shape, "peak_visits_rps"):
        return gridworkers.grid_pool_size(PROFILE, shape)
    return 50


@listener(events.init)
def register_grid_workers(environment: Environment, **_: Any) -> None:
    """Register this run's grid workers before the test starts.

    Not in test_start: locust fires test_start inside the greenlet that spawns users, and a
    shape whose target changes every second has that greenlet killed and restarted every
    second — a registration taking a few seconds would never finish, and no user would start.
    """
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return  # the master registers; see share_out
    workers = gridworkers.pool(CONFIG.run_id, _pool_size(environment), PROFILE.clerk_county_share)
    started = time.monotonic()
    registered = gridworkers.register(workers)
    _grid_workers[:] = workers  # deactivated at the end, whatever went through
    if registered == len(workers):
        log.info(
            "registered %d grid workers (relief grid-workers add) in %.1f s",
            registered,
            time.monotonic() - started,
        )
        if not isinstance(runner, MasterRunner):
            RunState.pool = gridworkers.IdentityPool(workers)
    else:
        log.warning(
            "registered %d of %d grid workers: grid-worker users apply as citizens",
            registered,
            len(workers),
        )


@listener(events.test_start)
def share_out(environment: Environment, **_: Any) -> None:
    """Start the warm-start clock; in a worker process of --processes (whose index is
    known only now), take this process's share of the grid workers and of the cases."""
    RunState.started_at = time.monotonic()
    runner = environment.runner
    if isinstance(runner, WorkerRunner) and ClerkDeskUser.partition == (0, 1):
        processes = max(1, int(os.environ.get("LOADTEST_PROCESSES", "1")))
        index = max(0, runner.worker_index) % processes
        workers = gridworkers.pool(
            CONFIG.run_id, _pool_size(environment), PROFILE.clerk_county_share
        )
        RunState.pool = gridworkers.IdentityPool(workers[index::processes] or workers)
        ClerkDeskUser.partition = (index, processes)


@listener(events.quitting)
def deactivate_grid_workers(environment: Environment, **_: Any) -> None:
    if _grid_workers and not isinstance(environment.runner, WorkerRunner):
        gridworkers.deactivate(_grid_workers)
        _grid_workers.clear()


@listener(events.test_stop)
def write_counters(environment: Environment, **_: Any) -> None:
    counters = dict(sorted(TALLY.items()))
    log.info("domain counters: %s", json.dumps(counters, ensure_ascii=False))
    if CONFIG.output_dir is not None:
        CONFIG.output_dir.mkdir(parents=True, exist_ok=True)
        path = CONFIG.output_dir / f"counters-{os.getpid()}.json"
        path.write_text(json.dumps(counters, ensure_ascii=False, indent=2) + "\n")
