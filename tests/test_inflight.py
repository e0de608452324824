"""What a server's shutdown does with the tasks it has (config/inflight.py); the whole path, a
real daphne process stopped with SIGTERM, is in tests/e2e/test_shutdown.py."""

from __future__ import annotations

import asyncio

import pytest

from config import inflight


@pytest.fixture(autouse=True)
def _not_stopping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inflight, "_stopping", False)


async def test_settlements_are_waited_for_and_everything_else_is_cancelled() -> None:
    written: list[str] = []

    async def settlement() -> None:
        await asyncio.sleep(0.2)
        written.append("ledger row")

    async def answer() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            # An answer settles on its way out, in a kept task of its own.
            inflight.keep(settlement())
            raise

    kept = inflight.keep(settlement())
    streaming = inflight.keep(answer(), stop_at_shutdown=True)
    orphan = asyncio.ensure_future(asyncio.sleep(60))  # say, left behind by a cancelled request
    await asyncio.sleep(0)  # all three under way

    assert await inflight.drain(5) == 0

    assert kept.done() and not kept.cancelled()
    assert streaming.cancelled() and orphan.cancelled()
    assert written == ["ledger row", "ledger row"]


async def test_an_answer_begun_while_draining_is_stopped_at_once() -> None:
    inflight._stopping = True

    late = inflight.keep(asyncio.sleep(60), stop_at_shutdown=True)

    with pytest.raises(asyncio.CancelledError):
        await late


async def test_the_grace_period_bounds_the_wait() -> None:
    stuck = inflight.keep(asyncio.sleep(60))  # a settlement that does not end

    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await inflight.drain(0.2) == 1
    assert loop.time() - started < 2
    assert not stuck.done()
    stuck.cancel()


async def test_a_task_begun_during_the_drain_is_waited_for_not_cancelled() -> None:
    results: list[str] = []

    async def answer() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            # A settlement's own task, not kept (3.11's wait_for and gather make such tasks).
            helper = asyncio.ensure_future(asyncio.sleep(0.1, "ledger row"))
            inflight.keep(_record(helper, results))
            raise

    inflight.keep(answer(), stop_at_shutdown=True)
    await asyncio.sleep(0)

    assert await inflight.drain(5) == 0
    assert results == ["ledger row"]


async def _record(helper: asyncio.Future[str], results: list[str]) -> None:
    results.append(await helper)
