"""The event loop's own PostgreSQL connections (config.apg): statements, the pool, and what a
failed statement or connection leaves behind."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from django.db import connection

from config import apg

ON_POSTGRES = connection.vendor == "postgresql"
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL (set DATABASE_URL)"),
]


@pytest.fixture(autouse=True)
def _on(settings) -> None:
    settings.GATEHOUSE_DB_ASYNC = True


async def test_it_is_off_where_the_setting_is(settings) -> None:
    assert apg.enabled()
    settings.GATEHOUSE_DB_ASYNC = False
    assert not apg.enabled()


async def test_statements_read_the_test_database_and_commit_by_themselves() -> None:
    name = await apg.fetchone("SELECT current_database(), current_setting('TimeZone')", [])
    assert name == (connection.settings_dict["NAME"], "UTC")
    await _ddl("CREATE TABLE apg_probe (v int)")
    try:
        rows = await apg.fetchall("INSERT INTO apg_probe VALUES (%s), (%s) RETURNING v", [1, 2])
        assert rows == [(1,), (2,)]
        # Another connection (Django's) sees the rows: they were committed.
        assert await asyncio.to_thread(_count, "apg_probe") == 2
    finally:
        await _ddl("DROP TABLE apg_probe")


async def _ddl(sql: str) -> None:
    await apg.execute(sql, [])


def _count(table: str) -> int:
    with psycopg.connect(dbname=connection.settings_dict["NAME"], **_where()) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608


def _where() -> dict:
    params = connection.get_connection_params()
    return {k: params[k] for k in ("user", "host", "port", "password") if params.get(k)}


async def test_connections_are_reused_and_a_failed_statement_leaves_its_connection_usable() -> None:
    first = await apg.fetchone("SELECT pg_backend_pid()", [])
    with pytest.raises(psycopg.errors.DivisionByZero):
        await apg.fetchone("SELECT 1 / %s", [0])
    assert await apg.fetchone("SELECT pg_backend_pid()", []) == first


async def test_a_broken_connection_is_replaced() -> None:
    (pid,) = await apg.fetchone("SELECT pg_backend_pid()", [])
    await asyncio.to_thread(_terminate, pid)
    with pytest.raises(psycopg.OperationalError):
        await apg.fetchone("SELECT 1", [])
    (fresh,) = await apg.fetchone("SELECT pg_backend_pid()", [])
    assert fresh != pid


def _terminate(pid: int) -> None:
    with psycopg.connect(dbname=connection.settings_dict["NAME"], **_where()) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", [pid])


async def test_the_pool_bounds_concurrent_connections() -> None:
    rows = await asyncio.gather(
        *(apg.fetchone("SELECT pg_backend_pid() FROM pg_sleep(0.05)", []) for _ in range(20))
    )
    assert len({row[0] for row in rows}) <= apg.POOL_SIZE
