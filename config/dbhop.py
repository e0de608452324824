"""Database work from async code, one hop to a worker thread: `await db_hop(fn, *args)`.

`sync_to_async` (thread-sensitive) runs sync code in one thread per request context, or, where
there is none — the `/v1` handler (config.lean) and WebSocket consumers — in one thread shared by
the whole process. There concurrent calls queue behind each other's database round trips, and
each waits for the GIL too: with 32 clients the gateway measured 70% CPU and a third of the
throughput its CPU cost allowed.

`db_hop` runs the work in a small pool of its own threads instead (`GATEHOUSE_DB_THREADS`), each
keeping its database connection from one call to the next. Only self-contained units of work
belong here: each opens and commits its own transaction, and relies on no state of the calling
thread. A connection that failed is closed, so that the thread's next call opens a fresh one.

With `GATEHOUSE_DB_THREADS=0` it is `sync_to_async`: the in-process test suite runs each test
inside one connection's transaction, which other threads would not see.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

P = ParamSpec("P")
R = TypeVar("R")

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _pool(size: int) -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="db-hop")
        return _executor


def _guarded(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    try:
        return fn(*args, **kwargs)
    except (InterfaceError, OperationalError):
        connection.close()  # a broken connection must not stay with this thread
        raise


async def db_hop(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    size = int(getattr(settings, "GATEHOUSE_DB_THREADS", 0))
    if size <= 0:
        return await sync_to_async(fn)(*args, **kwargs)
    hop: Any = sync_to_async(_guarded, thread_sensitive=False, executor=_pool(size))
    return await hop(fn, *args, **kwargs)


def wait_unpooled(fn: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
    """`async_to_sync(fn)(*args)` from a request thread that will wait on a provider: its
    database connection goes back to the pool first (a later query takes one again).

    Held through the wait, the connection is one the awaited work lacks: that work runs in these
    hop threads, which take their connections from the same pool. As many waiting clients as the
    pool has connections then starved it until the pool's timeout (30 s). Inside a transaction
    (a test's, an admin form's) the connection stays: closing it would end the transaction."""
    if not connection.in_atomic_block:
        connection.close()
    return async_to_sync(fn)(*args, **kwargs)
