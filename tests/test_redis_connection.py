"""A Redis send cancelled at any moment ends cancelled (config/redis_connection.py).

Each try cancels a send one loop step later than the try before, until sends finish before
their cancel. One of those steps lands as the send finishes: on Python 3.11, redis-py's own
connection then returns as if nothing had happened, and the cancellation is lost."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
from channels.layers import get_channel_layer
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection

from config.redis_connection import CancelSafeConnection

DONE_AT_LAST = 10  # sends over before their cancel: the sweep has passed the finish


async def _cancel_at_every_step(send: Callable[[], Awaitable[object]]) -> Counter[str]:
    """How each try ended: `cancelled`, `done` (over before the cancel), or `lost` (the task
    accepted the cancel, yet returned normally)."""
    loop = asyncio.get_running_loop()
    outcomes: Counter[str] = Counter()
    for attempt in itertools.count():
        if outcomes["done"] >= DONE_AT_LAST:
            return outcomes
        assert attempt < 10_000, outcomes
        task = asyncio.ensure_future(send())

        def cancel_after(steps: int, task: asyncio.Future[object] = task) -> None:
            if steps:
                loop.call_soon(cancel_after, steps - 1)
            else:
                task.cancel()

        loop.call_soon(cancel_after, attempt)
        try:
            await task
        except asyncio.CancelledError:
            outcomes["cancelled"] += 1
        else:
            outcomes["lost" if task.cancelling() else "done"] += 1
    raise AssertionError("unreachable")


async def _pings(redis_url: str, connection_class: type[Connection]) -> Counter[str]:
    pool = ConnectionPool.from_url(redis_url, connection_class=connection_class, socket_timeout=10)
    client = Redis(connection_pool=pool)
    try:
        return await _cancel_at_every_step(client.ping)
    finally:
        await client.aclose()
        await pool.disconnect()


async def test_a_cancelled_send_ends_cancelled(redis_url: str) -> None:
    outcomes = await _pings(redis_url, CancelSafeConnection)

    assert outcomes["lost"] == 0, outcomes
    assert outcomes["cancelled"] > 0, outcomes


async def test_the_channel_layer_keeps_a_cancelled_group_send_cancelled(redis_url: str) -> None:
    layer = get_channel_layer()
    try:
        outcomes = await _cancel_at_every_step(
            lambda: layer.group_send("chat.test", {"type": "chat.frame", "text": "x"})
        )
    finally:
        await layer.close_pools()

    assert outcomes["lost"] == 0, outcomes
    assert outcomes["cancelled"] > 0, outcomes


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for is fixed in 3.12")
async def test_redis_py_s_own_connection_loses_cancellations(redis_url: str) -> None:
    """The control: the steps above do reach the moment the send finishes."""
    outcomes = await _pings(redis_url, Connection)

    assert outcomes["lost"] > 0, outcomes
