"""One assistant answer in flight: the provider stream, its fan-out to sockets, and settlement.

`Generation.run` settles exactly once whatever happens — the answer completes, the provider
fails, the client cancels or leaves, the task is cancelled from outside: the usage record is
written and the assistant message saved with its final status, text, provider, model and
credential, in one transaction on the event loop where the services allow
(`providers.admission.settle_on_loop`), else in one thread hop; the chat's lock is released; then
a `done` or `error` frame is sent.

Per token: one encode, one send to the caller's socket, and one channel-layer send only when
other sockets watch the chat. No database write, no logging.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from channels.layers import get_channel_layer
from django.utils import timezone

from chats.frames import done_frame, encode, encode_token, error_frame
from chats.models import Message
from chats.services import presence
from chats.services.records import AnswerEnd, answer_finish
from config.dbhop import db_hop
from config.inflight import keep
from providers import admission as billing
from providers.adapters.base import ChatTurn, ProviderError, StreamEnd, Usage, estimate_tokens
from providers.calls import CallParams, Candidate, open_stream
from providers.routing import Route

logger = logging.getLogger(__name__)

#: sends one pre-serialised frame to the socket that asked
Sink = Callable[[str], Awaitable[None]]

# Why a generation ended before its stream did.
CANCELLED = "cancelled"  # the client asked (cancel frame), or lost its rights
DRAIN_TIMEOUT = "drain_timeout"  # the client left and the stream outran the drain
INTERRUPTED = "interrupted"  # cancelled from outside (server shutdown)

_USAGE_STATUS = {
    Message.Status.COMPLETE: "ok",
    Message.Status.PARTIAL: "partial",
    Message.Status.ERROR: "error",
    Message.Status.CANCELLED: "cancelled",
}

_NOT_ON_LOOP = object()  # settlement must take the thread path


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an answer failed: a stable code and a message safe for end users."""

    code: str
    message: str
    retry_after: float | None = None

    @classmethod
    def of(cls, error: ProviderError) -> Failure:
        return cls(error.code, error.message, error.retry_after)


INTERNAL = Failure("internal_error", "The answer could not be completed. Try again.")


@dataclass(frozen=True, slots=True)
class Reply:
    """How a generation ended. `message_id` is None only when its rows could not be written."""

    message_id: int | None
    user_message_id: int | None
    request_id: str
    status: str
    content: str
    provider: str
    model: str
    finish_reason: str
    usage: Usage | None
    cost: Decimal | None
    error: Failure | None = None


@dataclass(slots=True)
class _Outcome:
    parts: list[str]
    end: StreamEnd | None = None
    error: Failure | None = None
    ttft_ms: int | None = None


class Generation:
    """One assistant answer. `run()` it once, in its own task (the WebSocket consumer must keep
    reading frames meanwhile); `cancel()`, `detach()` and `broadcast_on()` may be called at any
    time from the same event loop.

    `broadcast`: whether frames also go to the chat's channel-layer group, for the other sockets
    on the chat. It is decided from the chat's watcher count at start and switched on when a
    socket joins mid-stream, so a lone socket — the common case — costs no channel-layer send per
    token. Group messages carry the origin's channel name; the origin never receives them.
    """

    def __init__(
        self,
        *,
        chat_id: int,
        group: str,
        request_id: str,
        owner: str,
        title: str | None,
        route: Route,
        context: list[ChatTurn],
        params: CallParams,
        admission: billing.Admission,
        ids: tuple[int, int],
        store: Callable[[], Awaitable[None]] | None,
        input_tokens: int,
        defaults: tuple[str, str],
        sink: Sink | None,
        origin: str | None,
        broadcast: bool,
    ) -> None:
        self.chat_id = chat_id
        self.request_id = request_id
        self.provider = route.provider
        self.model = route.model
        # The ids of the user message and the answer's placeholder. `store`, when given, writes
        # those rows (None: written already); it is started with the provider request, and the
        # start frame (which names the rows) and settlement wait for it.
        self.user_message_id: int | None = ids[0]
        self.message_id: int | None = ids[1]
        self._store_later = store
        self._store: asyncio.Future[None] | None = None
        self.defaults = defaults  # the chat's default provider and model, as read for it
        self.input_tokens = input_tokens  # the context's, as admission estimated them
        self.start_text: str | None = None  # the start frame, once sent
        self.broadcast = broadcast
        self.finished = False
        self._owner = owner  # the value of the chat's lock while this answer holds it
        self._group = group
        self._title = title
        self._route = route
        self._context = context
        self._params = params
        self._admission = admission
        self._sink = sink
        self._origin = origin
        self._parts: list[str] = []
        self._candidate: Candidate | None = None
        self._stop_reason: str | None = None
        self._detached = False
        self._settling = False
        self._start_sent = False
        self._task: asyncio.Task[Any] | None = None
        self._drain: asyncio.TimerHandle | None = None

    # --- control, from the consumer ----------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether the start frame has gone out."""
        return self._start_sent

    @property
    def history_tokens(self) -> int:
        """The chat's system prompt and history in tokens with this answer in it, counted as
        admission counts them: the next message's `history_tokens` (see `message_start`)."""
        return self.input_tokens + estimate_tokens("".join(self._parts))

    def cancel(self) -> None:
        """Stop the upstream call; the answer is saved `cancelled` with the text so far."""
        self._stop(CANCELLED)

    def detach(self) -> None:
        """The client left. Stop sending to it but read the stream on, for at most
        `presence.DRAIN_SECONDS`, so the tokens used are known; the answer is saved `partial`."""
        self._sink = None
        if self._detached or self.finished:
            return
        self._detached = True
        loop = asyncio.get_running_loop()
        self._drain = loop.call_later(presence.DRAIN_SECONDS, self._stop, DRAIN_TIMEOUT)

    def broadcast_on(self) -> str | None:
        """Send to the group from now on (a socket joined the chat). Returns the text so far, for
        the newcomer to catch up with; None when the answer is already settling."""
        if self._settling:
            return None
        self.broadcast = True
        return "".join(self._parts)

    def _stop(self, reason: str) -> None:
        if self._stop_reason is not None or self._settling:
            return
        self._stop_reason = reason
        if self._task is not None:
            self._task.cancel()

    # --- the run -----------------------------------------------------------------------------

    async def run(self) -> Reply:
        """Stream the answer, settle. Returns how it ended; re-raises an outside cancellation
        after settling."""
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = _Outcome(parts=self._parts)
        outside = False
        try:
            if self._stop_reason is None:
                await self._stream(outcome, started)
        except asyncio.CancelledError:
            if self._stop_reason is None:
                self._stop_reason, outside = INTERRUPTED, True
            elif self._task.uncancel() > 0:  # ours, absorbed; another one is still pending
                outside = True
        except ProviderError as exc:
            outcome.error = Failure.of(exc)
        except Exception:
            logger.exception("generation %s failed", self.request_id)
            outcome.error = INTERNAL
        self._settling = True
        if self._drain is not None:
            self._drain.cancel()
        latency_ms = round((loop.time() - started) * 1000)
        settling = keep(self._settle(outcome, latency_ms))
        try:
            reply = await asyncio.shield(settling)
        except asyncio.CancelledError:
            outside = True
            reply = await settling  # settlement is not abandoned, whoever asks
        if outside:
            raise asyncio.CancelledError
        return reply

    async def _stream(self, outcome: _Outcome, started: float) -> None:
        loop = asyncio.get_running_loop()
        # The rows' INSERT goes out with the provider request and is done long before its first
        # chunk comes back; the start frame, which names the rows, waits for it (`_announce`).
        self._start_store()
        try:
            stream = await open_stream(self._route.candidates, self._context, params=self._params)
        except ProviderError as exc:
            self._candidate = _last_tried(exc, self._route)
            await self._announce()
            raise
        self._candidate = stream.candidate
        try:
            await self._announce()
            parts = outcome.parts
            # The hot loop. `broadcast` is read before the sends: a socket joining during one is
            # caught up with the text so far, which already holds this token.
            async for event in stream:
                if event.__class__ is str:
                    if not parts:
                        outcome.ttft_ms = round((loop.time() - started) * 1000)
                    parts.append(event)
                    text = encode_token(event)
                    group = self.broadcast
                    if self._sink is not None:
                        await self._send_own(text)
                    if group:
                        await self._send_group(text, None)
                    if len(parts) == 1:
                        # Let the event loop run once, so the server writes the start frame and
                        # this token to the socket now: sends only fill the server's buffer,
                        # and a burst of chunks already read would otherwise all be processed
                        # (~5 ms for 50) before the loop gets to write the first of them.
                        await asyncio.sleep(0)
                    if self._stop_reason is not None:
                        # Stopped, yet still here: a send swallowed the cancellation (Python
                        # 3.11's asyncio.wait_for does when what it waits on finishes then).
                        raise asyncio.CancelledError
                else:
                    outcome.end = event
        finally:
            # Nothing to do once the stream has ended. Stopped in a send, it ends the upstream
            # call now, not when the stream is collected.
            await stream.aclose()

    async def _announce(self) -> None:
        """The start frame, once the provider answered (or failed) and the rows it names exist:
        a client may read them as soon as it has the frame."""
        await self._rows_written()  # on failure the ids are dropped, and settlement reports it
        self._build_start()
        await self._emit(self.start_text, kind="start")

    def _build_start(self) -> None:
        self.start_text = encode(
            {
                "type": "start",
                "message_id": self.message_id,
                "user_message_id": self.user_message_id,
                "provider": self.provider,
                "model": self.model,
                "request_id": self.request_id,
            }
        )
        self._start_sent = True

    # --- fan-out -----------------------------------------------------------------------------

    async def _send_own(self, text: str) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            await sink(text)
        except Exception:  # the socket is gone: the same as a disconnect
            self.detach()

    async def _send_group(self, text: str, kind: str | None) -> None:
        event = {"type": "chat.frame", "text": text, "origin": self._origin}
        if kind is not None:
            event["kind"] = kind
        try:
            await get_channel_layer().group_send(self._group, event)
        except Exception:
            # Watchers miss the rest of this answer (they can reload it); the answer itself
            # must not fail because the channel layer did.
            logger.warning("chat %s: group send failed; broadcast off", self.chat_id, exc_info=True)
            self.broadcast = False

    async def _emit(self, text: str, *, kind: str) -> None:
        group = self.broadcast
        await self._send_own(text)
        if group:
            await self._send_group(text, kind)

    # --- settlement --------------------------------------------------------------------------

    def _status(self, outcome: _Outcome) -> tuple[str, str, str]:
        """(message status, error code, finish reason)."""
        end = outcome.end
        if outcome.error is not None:
            return Message.Status.ERROR, outcome.error.code, ""
        if self._stop_reason == CANCELLED:
            return Message.Status.CANCELLED, "", "cancelled"
        if self._stop_reason is not None:
            return Message.Status.PARTIAL, "", self._stop_reason
        if end is None:  # adapters end every stream with a StreamEnd or an error
            return Message.Status.ERROR, "stream_interrupted", ""
        if self._detached:
            return Message.Status.PARTIAL, "", end.finish_reason
        return Message.Status.COMPLETE, "", end.finish_reason

    def _usage(self, outcome: _Outcome) -> Usage | None:
        """As reported at the end of the stream; else estimated when a provider answered at all
        (cancelled or broken streams still cost their tokens); else unknown (None)."""
        if outcome.end is not None:
            return outcome.end.usage
        if self._candidate is None or not outcome.parts:
            return None
        return Usage(
            input_tokens=sum(estimate_tokens(turn["content"]) for turn in self._context),
            output_tokens=estimate_tokens("".join(outcome.parts)),
            estimated=True,
        )

    async def _settle(self, outcome: _Outcome, latency_ms: int) -> Reply:
        status, error_code, finish_reason = self._status(outcome)
        usage = self._usage(outcome)
        content = "".join(outcome.parts)
        if not await self._rows_written():
            status, error_code, outcome.error = Message.Status.ERROR, INTERNAL.code, INTERNAL
        candidate = self._candidate
        end = AnswerEnd(
            message_id=self.message_id,
            chat_id=self.chat_id,
            title=self._title,
            status=status,
            content=content,
            provider=candidate.provider if candidate else self.provider,
            model=candidate.model if candidate else self.model,
            credential_id=candidate.credential_id if candidate else None,
            error_code=error_code,
            finish_reason=finish_reason,
        )
        usage_fields = {
            "status": _USAGE_STATUS[status],
            "error_code": error_code,
            "latency_ms": latency_ms,
            "ttft_ms": outcome.ttft_ms,
            "chat_id": self.chat_id,
        }
        record = await self._settle_on_loop(end, usage, usage_fields)
        if record is _NOT_ON_LOOP:
            record = await db_hop(
                _settle_answer,
                admission=self._admission,
                candidate=candidate,
                usage=usage,
                usage_fields=usage_fields,
                end=end,
                owner=self._owner,
            )
        self.finished = True
        reply = Reply(
            message_id=self.message_id,
            user_message_id=self.user_message_id,
            request_id=self.request_id,
            status=status,
            content=content,
            provider=self.provider,
            model=self.model,
            finish_reason=finish_reason,
            usage=usage,
            cost=getattr(record, "cost", None),
            error=outcome.error,
        )
        await self._emit_end(reply)
        return reply

    async def _settle_on_loop(
        self, end: AnswerEnd, usage: Usage | None, usage_fields: dict[str, Any]
    ) -> Any:
        """The usage record, the answer's final state and the release of the chat's lock, all
        committed together on the event loop (`providers.admission.settle_on_loop`: one
        statement, where at most one counter is charged); `_NOT_ON_LOOP` when that is not
        possible, with nothing written."""
        if not presence.on_loop():
            return _NOT_ON_LOOP
        release = (presence.RELEASE_SQL, [self.chat_id, self._owner])
        try:
            record = await billing.settle_on_loop(
                self._admission,
                self._candidate,
                usage,
                also=lambda usage_id: [*end.statements(usage_id, timezone.now()), release],
                **usage_fields,
            )
        except Exception:
            logger.exception("settling request %s on the event loop failed", self.request_id)
            # Rolled back, or (a failure after the commit) complete: the thread path writes the
            # rows, or finds the ledger row there and saves the same final state again.
            return _NOT_ON_LOOP
        return _NOT_ON_LOOP if record is None else record

    def _start_store(self) -> None:
        if self._store_later is not None:
            self._store = keep(self._store_later())
            self._store_later = None

    async def _rows_written(self) -> bool:
        self._start_store()
        store, self._store = self._store, None
        if store is None:
            return self.message_id is not None
        try:
            await store
        except Exception:
            logger.exception("storing the messages of request %s failed", self.request_id)
            self.user_message_id = self.message_id = None
            return False
        return True

    async def _emit_end(self, reply: Reply) -> None:
        # Clients see `start` before the `done` or `error` of every answer with a message.
        if not self._start_sent and self.message_id is not None:
            self._build_start()
            await self._emit(self.start_text, kind="start")
        if reply.error is not None:
            await self._emit(encode(error_frame(reply)), kind="error")
        else:
            await self._emit(encode(done_frame(reply)), kind="done")


def _settle_answer(
    *,
    admission: billing.Admission,
    candidate: Candidate | None,
    usage: Usage | None,
    usage_fields: dict[str, Any],
    end: AnswerEnd,
    owner: str,
) -> Any:
    """The settlement hop: the usage record, then the answer's final state and the release of
    the chat's lock (`answer_finish`). Each step runs whatever failed before it; the usage
    record is returned, or None when it could not be written."""
    record = None
    try:
        record = billing.settle_sync(admission, candidate, usage, **usage_fields)
    except Exception:
        # The message must still be saved and the chat unlocked; the ledger's own sweep
        # returns a reservation left behind.
        logger.exception("settling request %s failed", admission.request_id)
    try:
        answer_finish(end=end, usage_id=getattr(record, "pk", None), owner=owner)
    except Exception:
        logger.exception("saving message %s failed", end.message_id)
    return record


def _last_tried(error: ProviderError, route: Route) -> Candidate | None:
    attempts = getattr(error, "attempts", None)
    if attempts:
        return attempts[-1][0]
    return route.candidates[0] if route.candidates else None
