"""The `relief` command: starts and administers the services.

It sits above the three services (it starts them) and is the only module that imports more
than one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer

from shared import migrations
from shared.embedded import Infrastructure, provide
from shared.settings import ServiceSettings

app = typer.Typer(
    help="政府救助平台 relief platform: run and administer the services.",
    no_args_is_help=True,
    add_completion=False,
)
users_app = typer.Typer(help="Staff accounts (clerks, supervisors, admins).", no_args_is_help=True)
app.add_typer(users_app, name="users")
metrics_app = typer.Typer(help="The closure-rate numbers (notify).", no_args_is_help=True)
app.add_typer(metrics_app, name="metrics")
grid_app = typer.Typer(help="Grid workers (网格员) who report for citizens.", no_args_is_help=True)
app.add_typer(grid_app, name="grid-workers")
dead_app = typer.Typer(
    help="Stream messages that failed too often (the relief:dead stream).", no_args_is_help=True
)
app.add_typer(dead_app, name="dead-letters")

SERVICES = ("intake", "verification", "notify")
# Which long-running processes each service has besides its API.
WORKERS = {"intake": True, "verification": True, "notify": True}
RELAYS = {"intake": True, "verification": True, "notify": False}

ServiceName = Annotated[str, typer.Argument(help="intake | verification | notify")]


def _check_service(name: str) -> str:
    if name not in SERVICES:
        raise typer.BadParameter(f"unknown service {name!r}; choose from {', '.join(SERVICES)}")
    return name


@contextlib.contextmanager
def infrastructure() -> Iterator[Infrastructure]:
    """The database and Redis URLs from the environment, or embedded servers for those not
    given. Exported to the environment so services and child processes use them; the
    servers this call started are stopped when the block ends."""
    base = ServiceSettings()
    infra = provide(base.home, database_url=base.database_url, redis_url=base.redis_url)
    os.environ["RELIEF_DATABASE_URL"] = infra.database_url
    os.environ["RELIEF_REDIS_URL"] = infra.redis_url
    try:
        yield infra
    finally:
        infra.stop_started()


def _migrate_all(database_url: str) -> None:
    for service in SERVICES:
        migrations.upgrade(service, _service_database_url(service, database_url))


def _service_database_url(service: str, default: str) -> str:
    return os.environ.get(f"RELIEF_{service.upper()}_DATABASE_URL") or default


@app.command()
def migrate(
    service: Annotated[str | None, typer.Option(help="Only this service")] = None,
) -> None:
    """Bring every service's schema (or one) to the newest migration."""
    with infrastructure() as infra:
        for name in [_check_service(service)] if service else SERVICES:
            migrations.upgrade(name, _service_database_url(name, infra.database_url))
            typer.echo(f"migrated {name}")


@app.command()
def makemigration(
    service: ServiceName,
    message: Annotated[str, typer.Option("-m", "--message")],
) -> None:
    """Autogenerate a migration for a service from the difference between models and database."""
    with infrastructure() as infra:
        url = _service_database_url(_check_service(service), infra.database_url)
        migrations.upgrade(service, url)
        migrations.make_revision(service, url, message)


@app.command()
def serve(
    service: ServiceName,
    port: Annotated[int | None, typer.Option(help="Default: the service's setting")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
    nice: Annotated[int, typer.Option(help="lower this process's CPU priority by N")] = 0,
) -> None:
    """Run one service's HTTP API (with --workers N: N processes, each its own SO_REUSEPORT
    socket, so the kernel spreads connections evenly)."""
    from shared.serving import serve as serve_app

    _check_service(service)
    if nice:
        os.nice(nice)  # the worker processes inherit it
    with infrastructure():
        settings = _service_settings(service)
        serve_app(
            f"services.{service}.app:create_app",
            host=settings.host,
            port=port or int(getattr(settings, "port")),  # noqa: B009
            workers=workers,
            access_log=False,
            timeout_graceful_shutdown=10,
            server_header=False,
        )


def _service_settings(service: str) -> ServiceSettings:
    if service == "intake":
        from services.intake.settings import get_settings as intake_settings

        return intake_settings()
    if service == "verification":
        from services.verification.settings import get_settings as verification_settings

        return verification_settings()
    from services.notify.settings import get_settings as notify_settings

    return notify_settings()


# Consumers off the path from a submission to the clerk's queue: the citizen's timeline
# (intake's) and notifications and statistics (notify's). Where they share the machine's
# CPUs with the APIs (`relief up`), they run at a lower priority: under a burst they fall
# behind, and catch up after it, instead of the clerks' queue falling behind.
BACKGROUND_WORKERS = ("intake", "notify")
BACKGROUND_NICE = 10


def worker_options(service: str) -> list[str]:
    """The options `relief up` starts a service's worker with."""
    return ["--nice", str(BACKGROUND_NICE)] if service in BACKGROUND_WORKERS else []


# Intake's API, a little below the relays and the verification worker: when the machine is
# short of CPU, applications already accepted reach the clerks' queues first, and new
# submissions are slowed (and past capacity shed with 503) instead. Measured with wrk at
# 32 connections on 2 cores: the same throughput (222 vs 221 req/s), submission to the
# clerk's queue p50 144 → 107 ms, p99 364 → 250 ms. At nice 5 throughput fell (177 req/s).
API_NICE = {"intake": 3}


def serve_options(service: str) -> list[str]:
    """The options `relief up` starts a service's API with."""
    return ["--nice", str(API_NICE[service])] if service in API_NICE else []


@app.command()
def worker(
    service: ServiceName,
    nice: Annotated[int, typer.Option(help="lower this process's CPU priority by N")] = 0,
) -> None:
    """Run one service's stream consumer."""
    _check_service(service)
    if nice:
        os.nice(nice)
    with infrastructure():
        if service == "intake":
            from services.intake.settings import get_settings as intake_settings
            from services.intake.worker import run_worker as run_intake

            asyncio.run(run_intake(intake_settings()))
        elif service == "verification":
            from services.verification.settings import get_settings as verification_settings
            from services.verification.worker import run_worker as run_verification

            asyncio.run(run_verification(verification_settings()))
        else:
            from services.notify.settings import get_settings as notify_settings
            from services.notify.worker import run_worker as run_notify

            asyncio.run(run_notify(notify_settings()))


@app.command()
def relay(service: ServiceName) -> None:
    """Run one service's outbox relay (publishes committed messages to Redis Streams)."""
    _check_service(service)
    if not RELAYS[service]:
        raise typer.BadParameter(f"{service} has no outbox")
    with infrastructure():
        if service == "intake":
            from services.intake.settings import get_settings as intake_settings
            from services.intake.worker import run_outbox_relay as relay_intake

            asyncio.run(relay_intake(intake_settings()))
        else:
            from services.verification.settings import get_settings as verification_settings
            from services.verification.worker import run_outbox_relay as relay_verification

            asyncio.run(relay_verification(verification_settings()))


def _read_password(password_stdin: bool) -> str:
    # Never an option value: it would sit in the shell history and in `ps` for everyone.
    if not password_stdin:
        raise typer.BadParameter("pass the password on standard input with --password-stdin")
    return sys.stdin.readline().rstrip("\n")


_T = TypeVar("_T")


def _run_accounts(action: Callable[[Any], Awaitable[_T]]) -> _T:
    """Run `action` on one verification-database transaction; a refusal (an AppError) is
    printed on stderr and exits with status 2."""
    from shared.errors import AppError

    async def run() -> _T:
        async with _verification_session() as session:
            return await action(session)

    with infrastructure():
        try:
            return asyncio.run(run())
        except AppError as exc:
            typer.echo(f"error: {exc.code}: {exc.message}", err=True)
            raise typer.Exit(2) from exc


UsernameOption = Annotated[str, typer.Option(help="the staff account's username")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input")
]


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Option()],
    role: Annotated[str, typer.Option(help="clerk | supervisor | admin")],
    region: Annotated[str, typer.Option(help="county code (clerk), prefecture (supervisor)")],
    department: Annotated[str | None, typer.Option(help="department code")] = None,
    display_name: Annotated[str | None, typer.Option()] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a staff account."""
    from services.verification.accounts.service import create_user
    from shared.auth import Role

    password = _read_password(password_stdin)
    try:
        role_value = Role(role)
    except ValueError as exc:
        raise typer.BadParameter("role must be clerk, supervisor or admin") from exc

    async def create(session: Any) -> None:
        await create_user(
            session,
            username=username,
            password=password,
            role=role_value,
            department=department,
            region_code=region,
            display_name=display_name,
        )

    _run_accounts(create)
    typer.echo(f"created {role} {username}")


@users_app.command("disable")
def users_disable(username: UsernameOption) -> None:
    """Disable a staff account: login is refused and its tokens stop working at once."""
    from services.verification.accounts.service import disable_user

    async def disable(session: Any) -> None:
        await disable_user(session, username)

    _run_accounts(disable)
    typer.echo(f"disabled {username}")


@users_app.command("enable")
def users_enable(username: UsernameOption) -> None:
    """Enable a disabled staff account (he logs in again; old tokens stay revoked)."""
    from services.verification.accounts.service import enable_user

    async def enable(session: Any) -> None:
        await enable_user(session, username)

    _run_accounts(enable)
    typer.echo(f"enabled {username}")


@users_app.command("reset-password")
def users_reset_password(username: UsernameOption, password_stdin: PasswordStdin = False) -> None:
    """Set a new password, lift a lockout and revoke the account's tokens."""
    from services.verification.accounts.service import reset_password

    password = _read_password(password_stdin)

    async def reset(session: Any) -> None:
        await reset_password(session, username, password)

    _run_accounts(reset)
    typer.echo(f"password reset for {username}")


@users_app.command("list")
def users_list() -> None:
    """Every staff account: username, role, department, region and whether it can log in."""
    from services.verification.accounts.schemas import UserOut
    from services.verification.accounts.service import list_users
    from shared.pagination import MAX_LIMIT

    async def collect(session: Any) -> list[UserOut]:
        users: list[UserOut] = []
        cursor: str | None = None
        while True:
            page = await list_users(session, limit=MAX_LIMIT, cursor=cursor)
            users += page.items
            cursor = page.next_cursor
            if cursor is None:
                return users

    users = _run_accounts(collect)
    width = max([len("username"), *(len(u.username) for u in users)])
    typer.echo(f"{'username':<{width}}  {'role':<10}  {'dept':<8}  {'region':<6}  status")
    for user in users:
        if user.disabled:
            status = "disabled"
        elif user.locked_until is not None:
            status = f"locked until {user.locked_until.isoformat(timespec='seconds')}"
        else:
            status = "active"
        typer.echo(
            f"{user.username:<{width}}  {user.role:<10}  {user.department or '-':<8}  "
            f"{user.region_code:<6}  {status}"
        )


@metrics_app.command("rebuild")
def metrics_rebuild() -> None:
    """Recompute the closure-rate counters from the facts (after a bug fix or a restore)."""
    from zoneinfo import ZoneInfo

    from services.notify.metrics.rollups import rebuild
    from services.notify.settings import NotifySettings
    from shared.db import create_engine, create_sessionmaker, unit_of_work

    async def run() -> int:
        settings = NotifySettings()
        engine = create_engine(settings, application_name="relief-cli")
        try:
            async with unit_of_work(create_sessionmaker(engine)) as session:
                return await rebuild(session, ZoneInfo(settings.report_timezone))
        finally:
            await engine.dispose()

    with infrastructure():
        rows = asyncio.run(run())
    typer.echo(f"closure counters rebuilt: {rows} rollup rows")


def _with_redis(work: Callable[[Any], Awaitable[_T]]) -> _T:
    from shared.redis import create_redis

    async def run() -> _T:
        redis = create_redis(ServiceSettings().require_redis_url())
        try:
            return await work(redis)
        finally:
            await redis.aclose()

    with infrastructure():
        return asyncio.run(run())


@dead_app.command("list")
def dead_letters_list(
    count: Annotated[int, typer.Option(help="at most this many, oldest first")] = 100,
) -> None:
    """Show dead letters: id, the stream and group that failed, the error."""
    from shared.deadletters import list_dead

    letters = _with_redis(lambda redis: list_dead(redis, count=count))
    for letter in letters:
        event_type = json.loads(letter.fields.get("envelope", "{}")).get("type", "?")
        typer.echo(f"{letter.id}  {letter.stream}  {letter.group}  {event_type}  {letter.error}")
    typer.echo(f"{len(letters)} dead letter(s)")


@dead_app.command("retry")
def dead_letters_retry(
    ids: Annotated[list[str] | None, typer.Argument(help="dead-letter ids (from `list`)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="send every dead letter again")] = False,
) -> None:
    """Send dead letters back to their streams once the cause is fixed. Consumers are
    idempotent: groups that had applied a message change nothing."""
    from shared.deadletters import send_again

    if not ids and not all_:
        typer.echo("name dead-letter ids, or --all", err=True)
        raise typer.Exit(2)
    sent = _with_redis(lambda redis: send_again(redis, None if all_ else ids))
    typer.echo(f"sent again: {len(sent)}")


async def _in_intake(work: Callable[[Any], Awaitable[None]]) -> None:
    """Run `work(session)` in one intake transaction."""
    from services.intake.settings import IntakeSettings
    from shared.db import create_engine, create_sessionmaker, unit_of_work

    engine = create_engine(IntakeSettings(), application_name="relief-cli")
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            await work(session)
    finally:
        await engine.dispose()


def _run_intake(work: Callable[[Any], Awaitable[None]]) -> None:
    from shared.errors import AppError

    with infrastructure():
        try:
            asyncio.run(_in_intake(work))
        except AppError as exc:
            typer.echo(f"error: {exc.code}: {exc.message}", err=True)
            raise typer.Exit(2) from exc


@app.command()
def bench(
    connections: Annotated[
        str, typer.Option(help="comma-separated connection counts")
    ] = "32,128,512",
    seconds: Annotated[float, typer.Option(help="seconds per load level")] = 15,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 2,
    instructions: Annotated[
        bool,
        typer.Option(
            "--instructions",
            help="count CPU instructions per submission with valgrind instead (repeatable "
            "to a fraction of a percent, where throughput moves by 10%)",
        ),
    ] = False,
    requests: Annotated[int, typer.Option(help="with --instructions: requests counted")] = 40,
    warmup: Annotated[int, typer.Option(help="with --instructions: requests before")] = 20,
    home: Annotated[Path | None, typer.Option(help="default: <RELIEF_HOME>/bench")] = None,
    out_dir: Annotated[Path, typer.Option(help="where the JSON report goes")] = Path("runs")
    / "bench",
) -> None:
    """Measure intake (throughput, latency, submission-to-queue) against a minimal baseline on
    the same server settings, with wrk; with --instructions, count each one's instructions
    per request under valgrind instead. Prints a table; saves JSON under runs/bench/."""
    from services.bench import instructions as counted
    from services.bench.runner import render, run
    from services.bench.system import BenchError

    home = home or ServiceSettings().home / "bench"
    try:
        if instructions:
            counts = counted.run(requests=requests, warmup=warmup, home=home, out_dir=out_dir)
            typer.echo(counted.render(counts))
            return
        report = run(
            connections=[int(c) for c in connections.split(",") if c.strip()],
            seconds=seconds,
            workers=workers,
            home=home,
            out_dir=out_dir,
        )
    except BenchError as exc:
        typer.echo(f"bench not done: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(render(report))


@app.command()
def replay(
    scale: Annotated[float, typer.Option(help="share of the 466,200 applications")] = 0.1,
    concurrency: Annotated[int, typer.Option(help="HTTP requests in flight at most")] = 24,
    # 2, as `relief bench`: with one, the verification API (a third of the replay's CPU)
    # is a single process, and the clerks wait on one core while the other has room.
    workers: Annotated[int, typer.Option(help="uvicorn worker processes per API")] = 2,
    notice_day_seconds: Annotated[
        int, typer.Option(help="how long a public-notice day lasts in the replay")
    ] = 1,
    home: Annotated[Path | None, typer.Option(help="default: <RELIEF_HOME>/replay")] = None,
    out_dir: Annotated[Path, typer.Option(help="where the JSON report goes")] = Path("runs")
    / "replay",
    progress: Annotated[bool, typer.Option(help="progress bars")] = True,
) -> None:
    """Replay the platform's history through the real APIs and workers: 466,200 × SCALE
    applications, clerks closing 462,500 × SCALE; prints wall time and notify's closure
    rate; saves JSON under runs/replay/."""
    from services.bench.lanes import ReplayError
    from services.bench.replay import render, run
    from services.bench.system import PlatformBusy

    try:
        report = run(
            scale=scale,
            concurrency=concurrency,
            workers=workers,
            home=home or ServiceSettings().home / "replay",
            out_dir=out_dir,
            notice_day_seconds=notice_day_seconds,
            show_progress=progress,
        )
    except PlatformBusy as exc:
        typer.echo(f"replay not started: {exc}", err=True)
        raise typer.Exit(1) from None
    except ReplayError as exc:
        typer.echo(f"replay failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(render(report))
    if not report.complete:  # notify counted something else than the replay did
        raise typer.Exit(1)


@grid_app.command("add")
def grid_workers_add(
    openid: Annotated[str, typer.Option(help="the grid worker's WeChat openid")],
    name: Annotated[str, typer.Option(help="name shown to citizens")],
    region: Annotated[str, typer.Option(help="county code the worker reports for")],
) -> None:
    """Register (or update) a grid worker: his WeChat logins then carry the grid_worker role."""
    from services.intake.auth.service import register_grid_worker

    async def add(session: Any) -> None:
        await register_grid_worker(session, openid=openid, name=name, region_code=region)

    _run_intake(add)
    typer.echo(f"grid worker {name} ({openid}) reports for {region}")


@grid_app.command("remove")
def grid_workers_remove(
    openid: Annotated[str, typer.Option(help="the grid worker's WeChat openid")],
) -> None:
    """Deactivate a grid worker: his current tokens stop working at once."""
    from services.intake.auth.service import deactivate_grid_worker

    async def remove(session: Any) -> None:
        await deactivate_grid_worker(session, openid=openid)

    _run_intake(remove)
    typer.echo(f"grid worker {openid} deactivated")


@contextlib.asynccontextmanager
async def _verification_session() -> Any:
    from services.verification.settings import VerificationSettings
    from shared.db import create_engine, create_sessionmaker, unit_of_work

    engine = create_engine(VerificationSettings(), application_name="relief-cli")
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            yield session
    finally:
        await engine.dispose()


# --- relief up -------------------------------------------------------------------------

DEMO_PASSWORD = "demo-pass-2026"
DEMO_COUNTY = "530129"  # 寻甸回族彝族自治县, a rural county of Kunming
DEMO_PREFECTURE = "530100"


def demo_accounts() -> list[dict[str, str | None]]:
    from shared.catalog import catalog

    accounts: list[dict[str, str | None]] = []
    for dept in catalog().departments:
        accounts.append(
            {
                "username": f"{dept.code}-clerk",
                "role": "clerk",
                "department": dept.code,
                "region": DEMO_COUNTY,
                "display_name": f"{dept.name}办事员",
            }
        )
        accounts.append(
            {
                "username": f"{dept.code}-supervisor",
                "role": "supervisor",
                "department": dept.code,
                "region": DEMO_PREFECTURE,
                "display_name": f"{dept.name}督办",
            }
        )
    accounts.append(
        {
            "username": "admin",
            "role": "admin",
            "department": None,
            "region": "530000",
            "display_name": "系统管理员",
        }
    )
    return accounts


async def _seed_demo_accounts() -> list[dict[str, str | None]]:
    from services.verification.accounts.repository import by_username
    from services.verification.accounts.service import create_user
    from shared.auth import Role

    accounts = demo_accounts()
    async with _verification_session() as session:
        for account in accounts:
            if await by_username(session, str(account["username"])) is None:
                await create_user(
                    session,
                    username=str(account["username"]),
                    password=DEMO_PASSWORD,
                    role=Role(str(account["role"])),
                    department=account["department"],
                    region_code=str(account["region"]),
                    display_name=account["display_name"],
                )
    return [{**a, "password": DEMO_PASSWORD} for a in accounts]


def _set_parent_death_signal() -> None:
    """Children die with the supervisor even if it is killed with SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            # Own session: a terminal's Ctrl-C reaches only the supervisor, which then
            # stops the children in order.
            start_new_session=True,
            preexec_fn=_set_parent_death_signal,  # noqa: PLW1509
        )
        self.started_at = time.monotonic()


def _children() -> list[Child]:
    cmd = [sys.executable, "-m", "services.cli"]
    children = [Child(f"{s}-api", [*cmd, "serve", s, *serve_options(s)]) for s in SERVICES]
    children += [
        Child(f"{s}-worker", [*cmd, "worker", s, *worker_options(s)])
        for s in SERVICES
        if WORKERS[s]
    ]
    children += [Child(f"{s}-relay", [*cmd, "relay", s]) for s in SERVICES if RELAYS[s]]
    return children


def _ports() -> dict[str, int]:
    return {s: int(getattr(_service_settings(s), "port")) for s in SERVICES}  # noqa: B009


def _wait_ready(
    ports: dict[str, int], host: str, timeout: float, alive: Callable[[], bool]
) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(ports)
    while pending and time.monotonic() < deadline and alive():
        for service, port in list(pending.items()):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{host}:{port}/readyz", timeout=1).status_code == 200:
                    del pending[service]
        time.sleep(0.2)
    if pending:
        raise RuntimeError(f"not ready in time: {', '.join(pending)}")


def _stop_children(children: list[Child], timeout: float = 15.0) -> None:
    running = [c for c in children if c.process is not None and c.process.poll() is None]
    for child in running:
        assert child.process is not None
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in running:
        assert child.process is not None
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()


@app.command()
def up(
    seed_demo: Annotated[bool, typer.Option(help="Create demo staff accounts (dev only)")] = True,
) -> None:
    """Start everything: database and Redis (embedded unless URLs are given), migrations,
    demo accounts, the three APIs, their workers and relays. Ctrl-C stops it all."""
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    base = ServiceSettings()
    children = _children()
    with infrastructure() as infra:
        typer.echo(f"database: {_redact(infra.database_url)}\nredis:    {infra.redis_url}")
        _migrate_all(infra.database_url)
        typer.echo("migrations: all services at head")
        accounts: list[dict[str, str | None]] = []
        if seed_demo and base.is_dev:
            accounts = asyncio.run(_seed_demo_accounts())
            base.home.mkdir(parents=True, exist_ok=True)
            accounts_file = base.home / "demo-accounts.json"
            accounts_file.write_text(json.dumps(accounts, ensure_ascii=False, indent=2))
        try:
            for child in children:
                child.start()
            ports = _ports()
            _wait_ready(ports, base.host, 90, lambda: not stop_requested)
            if not stop_requested:
                _print_banner(base.host, ports, accounts, base.home)
            while not stop_requested:
                _restart_crashed(children)
                time.sleep(0.5)
            typer.echo("stopping…")
        finally:
            _stop_children(children)
    typer.echo("stopped")


def _restart_crashed(children: list[Child]) -> None:
    for child in children:
        if child.process is not None and child.process.poll() is not None:
            code = child.process.returncode
            # Back off a little when a process keeps dying straight after start.
            if time.monotonic() - child.started_at < 5 and child.restarts >= 3:
                continue
            typer.echo(f"{child.name} exited with {code}; restarting", err=True)
            child.restarts += 1
            child.start()


def _redact(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}" if ":" in credentials else url


def _print_banner(
    host: str, ports: dict[str, int], accounts: list[dict[str, str | None]], home: Path
) -> None:
    lines = ["", "政府救助平台 is up:"]
    for service, port in ports.items():
        lines.append(f"  {service:<13} http://{host}:{port}   docs: http://{host}:{port}/docs")
    if accounts:
        lines.append(
            f"demo staff accounts (password {DEMO_PASSWORD}), also in "
            f"{home / 'demo-accounts.json'}:"
        )
        for account in accounts:
            lines.append(
                f"  {account['username']:<22} {account['role']:<11} "
                f"{account['department'] or '-':<8} {account['region']}"
            )
        lines.append('citizen login (dev): POST /api/v1/auth/wechat {"code": "dev:<any openid>"}')
    lines.append("Ctrl-C stops everything.")
    typer.echo("\n".join(lines), color=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
