"""Admission and settlement of gateway calls, through `providers.admission` exactly as chats use
it (docs/interfaces.md): same rate limits, same budget reservations, same ledger (rows without a
chat).

`Ledger` carries one admitted call to its settlement: it times the call (latency, time to first
token) and settles at most once. Settlements must survive the request that started them (a
client that hangs up cancels its request's task), so they run in tasks of their own: shielded
while the request still waits for them, detached when it is gone.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Coroutine
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from accounts.models import Membership
from config import inflight
from providers import admission as admissions
from providers.adapters.base import ChatTurn, Usage
from providers.calls import Candidate
from providers.gateway.wire import WireError
from providers.routing import Route

logger = logging.getLogger(__name__)


class Ledger:
    """One admitted call, from admission to its one settlement."""

    __slots__ = ("_settling", "admission", "first_token_at", "request_id", "started")

    def __init__(self, admission: Any, *, request_id: str, started: float) -> None:
        self.admission = admission
        self.request_id = request_id
        self.started = started
        self.first_token_at: float | None = None
        self._settling: asyncio.Future[None] | None = None

    def first_token(self) -> None:
        self.first_token_at = time.monotonic()

    @property
    def settled(self) -> bool:
        return self._settling is not None

    async def settle(
        self, *, candidate: Candidate | None, usage: Usage | None, status: str, error_code: str = ""
    ) -> None:
        """Settle (once: later calls wait for the first). Shielded: a cancelled caller does not
        interrupt the ledger write, which finishes in its own task."""
        if self._settling is None:
            self._settling = inflight.keep(self._write(candidate, usage, status, error_code))
        await asyncio.shield(self._settling)

    def settle_after_answer(
        self, *, candidate: Candidate | None, usage: Usage | None, status: str
    ) -> None:
        """Settle a call that answered, without holding the answer back: the settlement runs in
        a detached task while the response goes out (its reservation still holds the budget
        until then, so no limit can be overshot). Its ledger row lands a few milliseconds after
        the client has the answer."""
        if self._settling is None:
            self._settling = detach(self._write(candidate, usage, status, ""))

    def settle_later(self, coro: Coroutine[Any, Any, None]) -> None:
        """Hand the settlement over to a detached task (the request is gone). `coro` must end by
        calling `settle`; the ledger counts as settling from now on."""
        if self._settling is None:
            self._settling = detach(coro)
        else:
            coro.close()

    async def detached_settle(
        self, *, candidate: Candidate | None, usage: Usage | None, status: str, error_code: str
    ) -> None:
        # Runs outside any request, on asgiref's shared worker thread: make sure its database
        # connection is still usable, as Django only checks that at request boundaries.
        await sync_to_async(close_old_connections)()
        await self._write(candidate, usage, status, error_code)

    async def _write(
        self, candidate: Candidate | None, usage: Usage | None, status: str, error_code: str
    ) -> None:
        now = time.monotonic()
        first = self.first_token_at
        try:
            await settle(
                admission=self.admission,
                candidate=candidate,
                usage=usage,
                status=status,
                error_code=error_code,
                latency_ms=round((now - self.started) * 1000),
                ttft_ms=None if first is None else round((first - self.started) * 1000),
            )
        except Exception:
            # The answer has gone out; the reservation expires and is swept back.
            logger.exception("settling gateway call %s failed", self.request_id)


async def admit(
    *,
    request_id: str,
    membership: Membership,
    route: Route,
    messages: list[ChatTurn],
    max_tokens: int,
    started: float,
) -> Ledger:
    """Admit one call, or raise `WireError` (402 / 429 with Retry-After / 503). Shielded: when
    the client hangs up meanwhile, a reservation made anyway is released, not left to expire."""
    task = inflight.keep(  # kept: a shutdown lets it end, and the release below follows it
        _admit(
            request_id=request_id,
            membership=membership,
            route=route,
            messages=messages,
            max_tokens=max_tokens,
        )
    )
    try:
        admission = await asyncio.shield(task)
    except asyncio.CancelledError:
        detach(_release_when_admitted(task))
        raise
    return Ledger(admission, request_id=request_id, started=started)


async def _admit(**kwargs: Any) -> admissions.Admission:
    try:
        return await admissions.admit(**kwargs)
    except admissions.AdmissionRefused as exc:
        # The refusal's status and headers (Retry-After, the limit and when it resets) as
        # admission chose them; only the body takes OpenAI's shape.
        raise WireError(exc.status_code, exc.code, exc.message, headers=dict(exc.headers)) from None


async def _release_when_admitted(task: asyncio.Task[Any]) -> None:
    try:
        admission = await task
    except Exception:  # refused, or failed: nothing was reserved
        return
    await admissions.release(admission=admission)


async def settle(
    *,
    admission: admissions.Admission,
    candidate: Candidate | None,
    usage: Usage | None,
    status: str,
    error_code: str,
    latency_ms: int | None,
    ttft_ms: int | None,
) -> Any:
    """The ledger row (one per request id) and the reservation swapped for the real cost."""
    return await admissions.settle(
        admission=admission,
        candidate=candidate,
        usage=usage,
        status=status,
        error_code=error_code,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        chat_id=None,
    )


def detach(coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
    """Run `coro` in a task that outlives the request, and that the server waits for before it
    exits (`config.inflight`). Its context is a fresh one: the request's thread-sensitive
    context (and the worker thread behind it) ends with the request, and ORM calls made from a
    task still bound to it would each start a new thread."""
    return inflight.keep(coro, context=contextvars.Context())
