"""Work that must end before the server exits: answers in flight, and the writes that settle calls.

An answer streams in a task of its own (the socket's consumer keeps reading frames meanwhile), and
a gateway call's settlement runs detached from its request. daphne waits for neither at shutdown:
on SIGTERM it cancels its application instances, waits for those, and stops the loop. So a
restart during an answer left the message `streaming` and the call out of the ledger, although
the provider had charged for it (measured: SIGTERM one second into an answer, no usage record).

Such tasks are kept here (`keep`). At shutdown `drain` cancels every task of the loop except
the kept ones that settle calls: an answer then settles as `partial` with finish reason
`interrupted`, its tokens so far recorded, and its socket gets that final frame; a gateway call
settles as one whose client has gone. It waits for all of them, settlements started meanwhile
included, for at most `GATEHOUSE_SHUTDOWN_GRACE_S` seconds (default 15: a gateway call whose
client has gone reads its upstream on for up to 10 s to learn the tokens used).
`draining_server` is daphne's server with that drain after its own shutdown step; `config.serve`
runs it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
from collections.abc import Awaitable
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_GRACE_S = 15.0

#: kept task -> whether shutdown cancels it (an answer) rather than only waiting for it
_kept: dict[asyncio.Future[Any], bool] = {}
_stopping = False


def keep(
    work: Awaitable[Any],
    *,
    stop_at_shutdown: bool = False,
    context: contextvars.Context | None = None,
) -> asyncio.Future[Any]:
    """Run `work` as a task held until it ends (asyncio keeps only a weak reference) and waited
    for at shutdown, not cancelled, unless `stop_at_shutdown` (an answer). `context`: the task's
    contextvars (by default a copy of the caller's). Work that must finish keeps any task of its
    own that it waits on, too: an unkept one under way when the drain starts is cancelled."""
    if context is None:
        task = asyncio.ensure_future(work)
    else:
        task = asyncio.get_running_loop().create_task(work, context=context)  # type: ignore[arg-type]
    _kept[task] = stop_at_shutdown
    task.add_done_callback(_forget)
    if stop_at_shutdown and _stopping:
        task.cancel()  # begun while the server drains: it ends now, settled like the others
    return task


def _forget(task: asyncio.Future[Any]) -> None:
    _kept.pop(task, None)


async def drain(grace_s: float) -> int:
    """Cancel the tasks of this loop, as `asyncio.run` does on its way out, and wait for them,
    for at most `grace_s` seconds. Returns how many were still running then (logged: lost).

    Cancelled: every task there is when the drain starts, except the kept ones that settle
    calls; and the answers, whenever they begin. Not only the answers: a cancelled daphne
    application instance can leave tasks behind (Django's ASGI handler, cancelled itself, does
    not cancel the request it runs in a task of its own), and a gateway stream learns that its
    client is gone only when its task is cancelled. Tasks begun during the drain are waited for,
    not cancelled: a settlement's own (`gather`, 3.11's `wait_for`) among them."""
    global _stopping
    _stopping = True
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    deadline = loop.time() + grace_s
    for task in asyncio.all_tasks(loop):
        if task is not me and _kept.get(task, True):
            task.cancel()
    while True:
        pending = [task for task in asyncio.all_tasks(loop) if task is not me]
        if not pending:
            return 0
        left = deadline - loop.time()
        if left <= 0:
            logger.error("shutdown: %d tasks still running after %.0f s", len(pending), grace_s)
            return len(pending)
        await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)


def grace_seconds() -> float:
    return float(os.environ.get("GATEHOUSE_SHUTDOWN_GRACE_S", DEFAULT_GRACE_S))


def draining_server() -> type:
    """daphne's `Server`, whose shutdown step (cancel the application instances, wait for them)
    is followed by `drain`. Imported late: importing `daphne.server` installs a reactor."""
    from daphne.server import Server
    from twisted.internet import defer

    class DrainingServer(Server):  # type: ignore[misc]
        def kill_all_applications(self) -> defer.Deferred[Any]:
            instances_ended = super().kill_all_applications()
            instances_ended.addCallback(
                lambda _: defer.Deferred.fromFuture(asyncio.ensure_future(drain(grace_seconds())))
            )
            return instances_ended

    return DrainingServer
