"""The Server-Sent Events body of a streamed completion, settled exactly once however it ends.

Ways a stream ends, and what is billed:

- the provider finishes: finish chunk, usage chunk (when asked for), `data: [DONE]`, and the
  settlement `ok` with the provider's usage, started as `[DONE]` goes out and finished a few
  milliseconds later in a task of its own (`Ledger.settle_after_answer`: bookkeeping does not
  hold the answer back; the call's reservation holds its budget until then);
- the provider fails after the first token: settlement `partial` with usage estimated from the
  text received, then OpenAI's in-band error frame;
- the client hangs up: Django cancels the response (the task is cancelled inside an upstream
  read, or the generator is closed at a `yield`, or — when the body never started — the
  response is closed). A detached task then keeps reading the upstream for at most
  `DRAIN_SECONDS` to learn the provider's real usage, and settles `cancelled`; when the
  upstream is gone too (a cancellation inside a read closes it), usage is estimated from the
  text received and marked estimated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from providers.adapters.base import ChatTurn, ProviderError, StreamEnd, build_usage
from providers.calls import RoutedStream
from providers.gateway import wire
from providers.gateway.billing import Ledger

logger = logging.getLogger(__name__)

#: how long a stream whose client hung up is still read, for the provider's usage
DRAIN_SECONDS = 10.0
DISCONNECTED = "client_disconnected"


class GatewayStream:
    """The body of a `StreamingHttpResponse` (`aiter()` of it streams the frames; Django calls
    `close()` when the response is done with, from a worker thread)."""

    def __init__(
        self,
        *,
        stream: RoutedStream,
        ledger: Ledger,
        chunks: wire.ChunkFormat,
        messages: list[ChatTurn],
        include_usage: bool,
    ) -> None:
        self._stream = stream
        self._ledger = ledger
        self._chunks = chunks
        self._messages = messages
        self._include_usage = include_usage
        self._parts: list[str] = []
        self._end: StreamEnd | None = None
        self._loop = asyncio.get_running_loop()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()

    def close(self) -> None:
        # RuntimeError: the loop is closed, the process is shutting down.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._abandon)

    async def _frames(self) -> AsyncIterator[bytes]:
        # The relay loop is inlined here, with its lookups hoisted: it runs once per chunk.
        content = self._chunks.content
        append = self._parts.append
        try:
            yield self._chunks.role()
            try:
                async for event in self._stream:
                    if type(event) is str:
                        append(event)
                        yield content(event)
                    else:
                        self._end = event
                if self._end is None:
                    raise ProviderError("stream_interrupted", detail="stream ended without its end")
            except Exception as exc:
                yield await self._failed(exc)
                return
            async for frame in self._finish(self._end):
                yield frame
        finally:
            self._abandon()

    async def _failed(self, exc: Exception) -> bytes:
        if isinstance(exc, ProviderError):
            error = exc
        else:
            logger.exception("gateway stream %s failed", self._ledger.request_id)
            error = ProviderError("stream_interrupted", detail=repr(exc))
        usage = build_usage(None, None, self._messages, self._parts)
        status = "partial" if self._parts else "error"
        await self._ledger.settle(
            candidate=self._stream.candidate, usage=usage, status=status, error_code=error.code
        )
        return wire.error_frame(wire.from_provider_error(error))

    async def _finish(self, end: StreamEnd) -> AsyncIterator[bytes]:
        yield self._chunks.finish(end.finish_reason)
        if self._include_usage:
            yield self._chunks.usage(end.usage)
        self._ledger.settle_after_answer(
            candidate=self._stream.candidate, usage=end.usage, status="ok"
        )
        yield wire.DONE

    def _abandon(self) -> None:
        """The response is over without a settlement: settle in a detached task."""
        if not self._ledger.settled:
            self._ledger.settle_later(self._settle_abandoned())

    async def _settle_abandoned(self) -> None:
        end = self._end or await self._drain()
        if end is not None:
            usage, status = end.usage, ("ok" if self._end is not None else "cancelled")
        else:
            usage, status = build_usage(None, None, self._messages, self._parts), "cancelled"
        await self._ledger.detached_settle(
            candidate=self._stream.candidate,
            usage=usage,
            status=status,
            error_code="" if status == "ok" else DISCONNECTED,
        )

    async def _drain(self) -> StreamEnd | None:
        """Read what is left of the upstream, for its usage; None when it cannot be had."""
        append = self._parts.append
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                async for event in self._stream:
                    if type(event) is str:
                        append(event)
                    else:
                        return event
        except (TimeoutError, ProviderError):
            pass
        except Exception:
            logger.exception("draining gateway stream %s failed", self._ledger.request_id)
        finally:
            await self._stream.aclose()
        return None
