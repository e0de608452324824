"""Live-server fixtures: a real `daphne config.asgi:application` subprocess on the pytest-django
test database, for tests that talk to it over real sockets (the `websockets` client library).

The server shares the test database, so tests create their data with the ordinary fixtures and
must be transactional (`django_db(transaction=True)`): committed rows are what the server sees.
For PostgreSQL that is `test_<name>`. For SQLite pytest-django would use an in-memory database
that no other process can open, so this module points the SQLite test database at a file (for
the whole session when e2e tests are collected: the setting is read when the database is made).

Cache and channel layer: with REDIS_URL set the servers use that Redis at database index
`E2E_REDIS_DB`, flushed at start, so keys other test runs keep in database 0 (model listings,
circuit breakers, keyed by ids that repeat across test databases) cannot leak in; two servers
started here share it, as two production processes would. Without Redis each server has its
in-process cache and channel layer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse, urlunparse

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
E2E_REDIS_DB = "14"
START_TIMEOUT = 60.0


def _sqlite_test_database_on_disk() -> None:
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        name = Path(tempfile.gettempdir()) / f"gatehouse-test-{os.getpid()}.sqlite3"
        database.setdefault("TEST", {})["NAME"] = str(name)


_sqlite_test_database_on_disk()


@dataclass
class Daphne:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _database_url() -> str:
    """The test database (already created: `NAME` is the test name) as a DATABASE_URL."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}{port}/{db['NAME']}"


def _redis_scratch(url: str) -> str:
    import redis

    scratch = urlunparse(urlparse(url)._replace(path=f"/{E2E_REDIS_DB}"))
    redis.Redis.from_url(scratch).flushdb()
    return scratch


@pytest.fixture(scope="session")
def server_env(django_db_setup) -> dict[str, str]:
    """The environment of the live servers: the test database, fast retries, quiet logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONPATH=str(ROOT),
        DATABASE_URL=_database_url(),
        GATEHOUSE_RETRY_BASE_DELAY="0.01",
        GATEHOUSE_RETRY_MAX_DELAY="0.05",
        GATEHOUSE_BREAKER_THRESHOLD="10000",
        LOG_LEVEL="WARNING",
    )
    if settings.REDIS_URL:
        env["REDIS_URL"] = _redis_scratch(settings.REDIS_URL)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _daphne_command(port: int) -> list[str]:
    # The launcher production uses (daphne on uvloop), so the live tests run what ships.
    launcher = [sys.executable, "-m", "config.serve"]
    return [*launcher, "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]


def _wait_until_up(server: Daphne) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"daphne exited early:\n{server.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", server.port), 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"daphne did not start within {START_TIMEOUT} s:\n{server.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def daphne_server(env: dict[str, str], log: Path) -> Iterator[Daphne]:
    """A daphne subprocess on a free port, up (accepting connections) when yielded, stopped
    (so its database connections are closed) when the block ends."""
    port = _free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            _daphne_command(port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server = Daphne(port, process, log)
    try:
        _wait_until_up(server)
        yield server
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def live_daphne(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daphne]:
    with daphne_server(server_env, tmp_path_factory.mktemp("daphne") / "daphne.log") as server:
        yield server


@pytest.fixture(scope="session")
def second_daphne(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daphne]:
    """Another server process on the same database and Redis: only meaningful with Redis (the
    in-memory channel layer and cache are per process)."""
    if "REDIS_URL" not in server_env:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail("Redis is required (REQUIRE_SERVICES=1) but REDIS_URL is not set")
        pytest.skip("two server processes share state only through Redis (set REDIS_URL)")
    with daphne_server(server_env, tmp_path_factory.mktemp("daphne2") / "daphne.log") as server:
        yield server


# A server settles calls after their answers went out (the ledger row lands a few milliseconds
# later), and may still be committing when a test ends. The test database's flush (TRUNCATE) then
# races that commit and PostgreSQL can break the tie with "deadlock detected", failing the next
# test's set-up. So a test that used a live server ends only once the server's connections are idle.
_BUSY_SQL = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND state IS NOT NULL AND state <> 'idle'"
)


def wait_until_servers_idle(timeout: float = 10.0) -> None:
    """Until no other connection to the test database is inside a statement or transaction (seen
    twice in a row, a little apart). PostgreSQL only: SQLite waits on its own file lock."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    deadline, quiet = time.monotonic() + timeout, 0
    while quiet < 2 and time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(_BUSY_SQL)
            quiet = quiet + 1 if cursor.fetchone()[0] == 0 else 0
        time.sleep(0.03)


@pytest.fixture(autouse=True)
def _servers_idle_at_teardown(
    request: pytest.FixtureRequest, django_db_blocker: object
) -> Iterator[None]:
    yield
    if "live_daphne" in request.fixturenames or "second_daphne" in request.fixturenames:
        with django_db_blocker.unblock():  # type: ignore[attr-defined]
            wait_until_servers_idle()
