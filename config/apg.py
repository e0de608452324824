"""PostgreSQL from the event loop, for the few statements on the way to a first token.

Every other database access goes through Django's ORM, in a thread (`config.dbhop`). A thread
hop costs more than the statement it carries: the worker thread is woken, the event loop is woken
back, and the GIL changes hands each way (measured: about 1 ms of a 4.6 ms hop that ran seven
statements). Here the hot statements — a token's lookup, a chat's gate and history, a budget
reservation, the rows of a new message — run on psycopg's async connections instead, on the
event loop itself, and PostgreSQL prepares them after a few uses (psycopg's
`prepare_threshold`), which also saves its parse and plan time.

Connections are this module's own (a small pool per event loop, autocommit, UTC), opened with the
parameters of Django's default database. Each statement commits by itself: where several writes
must commit together (the settlement of a call), they are one statement. Only for PostgreSQL,
and only where `GATEHOUSE_DB_ASYNC` is on: the in-process test suite runs each test inside one
connection's transaction, which these connections would not see, so it turns this off and every
caller falls back to its thread-hop path.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections

# Enough for the concurrency one process serves: statements here take well under a millisecond.
POOL_SIZE = 8


def enabled() -> bool:
    """Whether the hot statements run here (PostgreSQL, and the setting on)."""
    return bool(getattr(settings, "GATEHOUSE_DB_ASYNC", False)) and _postgresql()


@functools.cache
def _postgresql() -> bool:
    # Asked on every call: `connections[...]` goes through asgiref's Local, which costs more
    # than the question. The database's engine cannot change in a running process.
    return connections["default"].vendor == "postgresql"


def _conninfo() -> dict[str, Any]:
    # Read at first use, not import: the test runner renames the database before that. Django's
    # own parameters, adapters included (its JSON, inet and timezone loaders), so rows read here
    # convert exactly as the ORM's do.
    database = connections["default"]
    params = database.get_connection_params()
    params.pop("cursor_factory", None)  # Django's sync cursor classes
    if "prepare_threshold" not in (database.settings_dict.get("OPTIONS") or {}):
        # Django turns prepared statements off for connection poolers' sake; these few statements
        # run on every call and are worth preparing (OPTIONS' prepare_threshold still decides).
        params.pop("prepare_threshold", None)
    return params


class _Pool:
    """Idle connections of one event loop, and a bound on how many exist."""

    def __init__(self, size: int) -> None:
        self.idle: list[psycopg.AsyncConnection[Any]] = []
        self.slots = asyncio.Semaphore(size)

    async def acquire(self) -> psycopg.AsyncConnection[Any]:
        await self.slots.acquire()
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        try:
            conn = await psycopg.AsyncConnection.connect(**_conninfo(), autocommit=True)
            await conn.execute("SET TIME ZONE 'UTC'")  # as Django sets its own connections
        except BaseException:
            self.slots.release()
            raise
        return conn

    def release(self, conn: psycopg.AsyncConnection[Any], *, broken: bool) -> None:
        idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if broken or conn.closed or not idle:
            # A connection in doubt is not handed out again: the next caller opens a fresh one.
            closing = asyncio.ensure_future(conn.close())
            _closing.add(closing)
            closing.add_done_callback(_closing.discard)
        else:
            self.idle.append(conn)
        self.slots.release()


_pools: dict[asyncio.AbstractEventLoop, _Pool] = {}
_closing: set[asyncio.Future[Any]] = set()


def _pool() -> _Pool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        for other in [known for known in _pools if known.is_closed()]:
            _discard(_pools.pop(other))  # a finished loop's (tests run one loop per test)
        pool = _pools[loop] = _Pool(POOL_SIZE)
    return pool


def _discard(pool: _Pool) -> None:
    # Without their loop the connections cannot be closed the async way; libpq's own close
    # needs none.
    for conn in pool.idle:
        conn.pgconn.finish()
    pool.idle.clear()


def discard_all() -> None:
    """Close every idle connection of every loop, from sync code (the end of a test session:
    the test database cannot be dropped while connections to it are open)."""
    while _pools:
        _discard(_pools.popitem()[1])


@asynccontextmanager
async def _connection() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection of the pool for the block. An error of the block's own (a constraint, a
    rolled-back transaction) leaves it usable; a failed connection, or a block cancelled
    mid-statement (its state unknown: `_Pool.release` checks), is not handed out again."""
    pool = _pool()
    conn = await pool.acquire()
    broken = True
    try:
        yield conn
        broken = False
    except Exception as exc:
        broken = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        raise
    finally:
        pool.release(conn, broken=broken)


async def fetchone(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    """The first row of one statement (autocommit)."""
    async with _connection() as conn:
        return await (await conn.execute(sql, params)).fetchone()


async def execute(sql: str, params: Sequence[Any]) -> None:
    """One statement whose rows, if any, are not wanted (autocommit)."""
    async with _connection() as conn:
        await conn.execute(sql, params)


async def fetchall(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Every row of one statement (autocommit)."""
    async with _connection() as conn:
        return await (await conn.execute(sql, params)).fetchall()


async def close() -> None:
    """Close the idle connections of the running loop (tests; a server's shutdown)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await asyncio.gather(*(conn.close() for conn in pool.idle), return_exceptions=True)
