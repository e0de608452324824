"""Everything Gatehouse needs before daphne starts: its environment (production-like: DEBUG off,
PostgreSQL, Redis), the database, migrations and the seeded organisation."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from gatehouse_bench.servers import BENCH, ROOT, VENV_BIN, WORK, RunLogs

PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "gatehouse_bench"
# Redis database 9 keeps the bench's cache, channel layer and counters apart from the test
# suite's (database 0); a fresh organisation per run keeps runs apart from each other.
REDIS_URL = "redis://127.0.0.1:6379/9"
SQLITE_PATH = WORK / "gatehouse_bench.sqlite3"
SECRETS_PATH = WORK / "bench-secrets.json"
# Variables of the caller's shell that would change what is measured (another database,
# platform-wide credentials beside the bench's own, an allow-list without loopback).
_FOREIGN_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "GATEHOUSE_PROVIDER_ALLOWED_HOSTS",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OLLAMA_BASE_URL",
    "DEFAULT_PROVIDER",
)


@dataclass
class GatehouseSetup:
    env: dict[str, str]
    database: str  # "postgresql" or "sqlite"
    redis: bool
    notes: list[str] = field(default_factory=list)
    seed: dict[str, Any] = field(default_factory=dict)


def _bench_secrets() -> dict[str, str]:
    """Kept across runs: credentials of earlier runs stay decryptable in the same database."""
    if SECRETS_PATH.exists():
        return json.loads(SECRETS_PATH.read_text())
    WORK.mkdir(parents=True, exist_ok=True)
    values = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "GATEHOUSE_ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }
    SECRETS_PATH.write_text(json.dumps(values))
    SECRETS_PATH.chmod(0o600)
    return values


def postgres_database(name: str = PG_DATABASE) -> str | None:
    """The URL of a bench database, created when missing. None when PostgreSQL is unreachable."""
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error:
        return None
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def application_name(run_id: str) -> str:
    """Tags the run's PostgreSQL connections: another bench run may use the same database."""
    return f"gatehouse-bench-{run_id}"


def prepare_environment(run_id: str) -> GatehouseSetup:
    env = dict(os.environ)
    for name in _FOREIGN_VARIABLES:
        env.pop(name, None)
    env.update(_bench_secrets())
    env.update(
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        # Production sits behind a TLS proxy; on plain loopback HTTP the redirect would answer
        # every request with a 301 instead.
        SECURE_SSL_REDIRECT="false",
        GATEHOUSE_SIMULATOR_MOUNT="false",
        GATEHOUSE_VAR_DIR=str(WORK / "var"),
        PYTHONPATH=str(ROOT),
    )
    notes: list[str] = []
    database_url = postgres_database()
    if database_url:
        # django-environ passes query parameters on to psycopg as connection options.
        tagged = f"{database_url}?application_name={application_name(run_id)}"
        env["DATABASE_URL"], database = tagged, "postgresql"
    else:
        SQLITE_PATH.unlink(missing_ok=True)
        env["DATABASE_URL"], database = f"sqlite:///{SQLITE_PATH}", "sqlite"
        notes.append("PostgreSQL unreachable: Gatehouse ran on SQLite (not production-like).")
    has_redis = redis_up()
    if has_redis:
        env["REDIS_URL"] = REDIS_URL
    else:
        notes.append("Redis unreachable: in-memory channel layer and local-memory cache.")
    return GatehouseSetup(env=env, database=database, redis=has_redis, notes=notes)


def _manage(setup: GatehouseSetup, *args: str, timeout_s: float = 300) -> str:
    completed = subprocess.run(
        [str(VENV_BIN / "python"), *args],
        cwd=ROOT,
        env=setup.env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if completed.returncode != 0:
        # The whole output goes to the run's logs; the reason keeps the exception's last line.
        name = Path(args[0]).stem + (f"-{args[1]}" if len(args) > 1 else "")
        (RunLogs.directory / f"{name}.log").write_text(completed.stdout + completed.stderr)
        lines = [line for line in completed.stderr.splitlines() if line.strip()] or ["?"]
        raise RuntimeError(f"{' '.join(args[:2])} failed: {lines[-1].strip()[:400]}")
    return completed.stdout


def migrate(setup: GatehouseSetup) -> None:
    _manage(setup, "manage.py", "migrate", "--noinput")


def seed(
    setup: GatehouseSetup, *, simulator_url: str, run_id: str, member_limit: bool = False
) -> dict[str, Any]:
    flags = ["--member-limit"] if member_limit else []
    out = _manage(
        setup,
        str(BENCH / "seed.py"),
        "--simulator-url",
        simulator_url,
        "--run-id",
        run_id,
        *flags,
    )
    setup.seed = json.loads(out.strip().splitlines()[-1])
    return setup.seed


class DatabaseWatch:
    """The PostgreSQL backends of this run's Gatehouse: their pids (for CPU) and count."""

    def __init__(self, database: str, run_id: str) -> None:
        self._application = application_name(run_id)
        self._conn: psycopg.Connection | None = None
        if database == "postgresql":
            try:
                self._conn = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
            except psycopg.Error:
                self._conn = None

    def _pids(self) -> list[int]:
        if self._conn is None:
            return []
        rows = self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (PG_DATABASE, self._application),
        ).fetchall()
        return [row[0] for row in rows]

    def pids(self) -> list[int]:
        try:
            return self._pids()
        except psycopg.Error:
            return []

    def connections(self) -> int | None:
        return len(self.pids()) if self._conn is not None else None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
