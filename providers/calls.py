"""The one retry layer: calls a provider through an ordered list of candidate routes, retrying
transient failures and falling back to the next candidate.

Per candidate (in the order given; one whose circuit breaker is open is skipped):

- The call is attempted up to `RetryPolicy.attempts` times while it fails with a RETRYABLE error
  (rate_limited, overloaded, timeout, upstream_unavailable, stream_interrupted before the first
  event). Between attempts: exponential backoff with full jitter, `uniform(0, min(max_delay,
  base_delay * 2**n))`, or exactly the provider's `retry_after` when it gives one. When the
  provider asks for longer than `retry_after_cap`, this candidate fails at once ("the provider
  asked us to wait 120 s, more than the 10 s allowed") and the next one is tried.
- auth_failed, model_not_found and url_refused are about this route (its credential, its model,
  its address): no retry, straight to the next candidate.
- bad_request stops everything: the messages and parameters are the same for every candidate,
  so another provider would most likely refuse them too, and the caller should see the 400.
- Any other non-retryable code is treated like auth_failed: next candidate.

For a stream, "the call" is opening it and receiving its FIRST event; after that nothing is
retried and errors propagate unchanged (the user has already seen text).

Circuit breaker (`providers.breaker`, per `Candidate.breaker_key`): each retryable failure is
recorded as a failure (every attempt counts), the first event / a completion as a success.
Non-retryable errors are recorded as neither: they say nothing about the route's health (a
rejected key or a bad request), and must not open the route for everybody.

When every candidate fails, `CallFailed` is raised: a `ProviderError` with the code and message
of the most informative error (the first non-retryable one, which the operator can act on;
else the last one), plus `.attempts` and `.errors`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings

from providers import breaker
from providers.adapters import get_adapter
from providers.adapters.base import (
    Adapter,
    ChatTurn,
    Completion,
    Endpoint,
    ErrorCode,
    ProviderError,
    StreamEnd,
    Timeouts,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: the pseudo error code logged in `attempts` for a candidate skipped because its breaker is open
CIRCUIT_OPEN = "circuit_open"

#: codes after which the next candidate is not tried (see the module docstring)
STOP_CODES = frozenset({ErrorCode.BAD_REQUEST})


@dataclass(frozen=True)
class Candidate:
    """One route to try: `provider` is the name the user picked (credential name or kind)."""

    provider: str
    model: str
    endpoint: Endpoint
    credential_id: int | None
    breaker_key: str


@dataclass(frozen=True)
class CallParams:
    temperature: float | None = None
    max_tokens: int | None = None
    stop: Sequence[str] | None = None
    top_p: float | None = None

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stop": self.stop,
            "top_p": self.top_p,
        }


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` per candidate; delays in seconds."""

    attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 4.0
    retry_after_cap: float = 10.0

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        return cls(
            attempts=max(1, int(getattr(settings, "GATEHOUSE_RETRY_ATTEMPTS", cls.attempts))),
            base_delay=float(getattr(settings, "GATEHOUSE_RETRY_BASE_DELAY", cls.base_delay)),
            max_delay=float(getattr(settings, "GATEHOUSE_RETRY_MAX_DELAY", cls.max_delay)),
            retry_after_cap=float(
                getattr(settings, "GATEHOUSE_RETRY_AFTER_CAP", cls.retry_after_cap)
            ),
        )

    def backoff(self, retry: int) -> float:
        """Full-jitter delay before retry number `retry` (1 for the first retry)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return random.uniform(0.0, max(0.0, ceiling))

    def delay_for(self, retry: int, error: ProviderError) -> float:
        """The wait before retrying after `error`; raises a fail-fast `ProviderError` when the
        provider asks for more than `retry_after_cap`."""
        if error.retry_after is None:
            return self.backoff(retry)
        if error.retry_after > self.retry_after_cap:
            raise ProviderError(
                error.code,
                f"The provider asked us to wait {error.retry_after:g} s, "
                f"more than the {self.retry_after_cap:g} s allowed.",
                retryable=True,
                retry_after=error.retry_after,
                status=error.status,
                detail=error.detail,
            )
        return max(0.0, error.retry_after)


def timeouts_from_settings() -> Timeouts:
    """The platform's timeouts (GATEHOUSE_TIMEOUT_*), used when a call passes none."""
    default = Timeouts()
    return Timeouts(
        connect=float(getattr(settings, "GATEHOUSE_TIMEOUT_CONNECT", default.connect)),
        first_token=float(getattr(settings, "GATEHOUSE_TIMEOUT_FIRST_TOKEN", default.first_token)),
        chunk_gap=float(getattr(settings, "GATEHOUSE_TIMEOUT_CHUNK_GAP", default.chunk_gap)),
        total=float(getattr(settings, "GATEHOUSE_TIMEOUT_TOTAL", default.total)),
    )


Attempt = tuple[Candidate, str]


class CallFailed(ProviderError):
    """Every candidate failed. Code, message, retryability and retry_after are those of the most
    informative error (`cause`); `attempts` lists every (candidate, code) tried, `errors` each
    candidate's final error."""

    def __init__(
        self, cause: ProviderError, attempts: list[Attempt], errors: list[ProviderError]
    ) -> None:
        super().__init__(
            cause.code,
            cause.message,
            retryable=cause.retryable,
            retry_after=cause.retry_after,
            status=cause.status,
            detail=cause.detail,
        )
        self.cause = cause
        self.attempts = attempts
        self.errors = errors


class RoutedStream:
    """An opened stream: the first event (already received) then the rest, from `candidate`.
    `attempts` lists the (candidate, error code) pairs that failed before it. Errors after the
    first event propagate as they are. Closes itself at the end or on error; `aclose()` (or
    `async with`) closes it early."""

    _NOTHING: Any = object()

    def __init__(
        self,
        candidate: Candidate,
        attempts: list[Attempt],
        stream: AsyncIterator[str | StreamEnd],
        first: str | StreamEnd,
    ) -> None:
        self.candidate = candidate
        self.attempts = attempts
        self._stream = stream
        self._first: Any = first
        self._closed = False

    def __aiter__(self) -> RoutedStream:
        return self

    async def __anext__(self) -> str | StreamEnd:
        if self._first is not self._NOTHING:
            event, self._first = self._first, self._NOTHING
            return event
        if self._closed:
            raise StopAsyncIteration
        try:
            return await anext(self._stream)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._first = self._NOTHING
        await _aclose_stream(self._stream)

    async def __aenter__(self) -> RoutedStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# --- Public API -------------------------------------------------------------------------------


async def open_stream(
    candidates: Sequence[Candidate],
    messages: Sequence[ChatTurn],
    *,
    params: CallParams,
    policy: RetryPolicy | None = None,
    timeouts: Timeouts | None = None,
) -> RoutedStream:
    """Open a stream on the first candidate that delivers a first event (see module docstring)."""

    async def first_event(adapter: Adapter, candidate: Candidate) -> _Opened:
        return await _open_one(adapter, candidate, messages, params)

    opened, candidate, attempts = await _route(candidates, first_event, policy, timeouts)
    return RoutedStream(candidate, attempts, opened.stream, opened.first)


async def complete(
    candidates: Sequence[Candidate],
    messages: Sequence[ChatTurn],
    *,
    params: CallParams,
    policy: RetryPolicy | None = None,
    timeouts: Timeouts | None = None,
) -> tuple[Completion, Candidate]:
    """A whole (non-streamed) completion from the first candidate that answers."""

    async def one_completion(adapter: Adapter, candidate: Candidate) -> Completion:
        return await adapter.complete(messages, model=candidate.model, **params.as_kwargs())

    completion, candidate, _ = await _route(candidates, one_completion, policy, timeouts)
    return completion, candidate


# --- Internals --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Opened:
    stream: AsyncIterator[str | StreamEnd]
    first: str | StreamEnd


async def _open_one(
    adapter: Adapter, candidate: Candidate, messages: Sequence[ChatTurn], params: CallParams
) -> _Opened:
    stream = adapter.stream(messages, model=candidate.model, **params.as_kwargs())
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        await _aclose_stream(stream)
        raise ProviderError(
            ErrorCode.STREAM_INTERRUPTED, detail="the stream ended before its first event"
        ) from None
    except BaseException:
        await _aclose_stream(stream)
        raise
    return _Opened(stream, first)


Operation = Callable[[Adapter, Candidate], Awaitable[T]]


async def _route(
    candidates: Sequence[Candidate],
    operation: Operation[T],
    policy: RetryPolicy | None,
    timeouts: Timeouts | None,
) -> tuple[T, Candidate, list[Attempt]]:
    """Try each candidate in turn; return the result, who answered and the failed attempts
    before it. Raises `CallFailed` when none answers."""
    if not candidates:
        raise ValueError("open_stream/complete need at least one candidate")
    policy = policy or RetryPolicy.from_settings()
    timeouts = timeouts or timeouts_from_settings()
    attempts: list[Attempt] = []
    errors: list[ProviderError] = []
    for candidate in candidates:
        try:
            result = await _try_candidate(candidate, operation, policy, timeouts, attempts)
        except ProviderError as error:
            errors.append(error)
            if error.code in STOP_CODES:
                break
            continue
        return result, candidate, attempts
    raise CallFailed(_most_informative(errors), attempts, errors) from errors[-1]


async def _try_candidate(
    candidate: Candidate,
    operation: Operation[T],
    policy: RetryPolicy,
    timeouts: Timeouts | None,
    attempts: list[Attempt],
) -> T:
    """Attempt one candidate, with retries."""
    if not await breaker.allow(candidate.breaker_key):
        attempts.append((candidate, CIRCUIT_OPEN))
        raise _CircuitOpen(candidate)
    # Adapters are shared per event loop (`get_adapter` caches them): never close one here.
    adapter = get_adapter(candidate.endpoint, timeouts=timeouts)
    return await _with_retries(adapter, candidate, operation, policy, attempts)


async def _with_retries(
    adapter: Adapter,
    candidate: Candidate,
    operation: Operation[T],
    policy: RetryPolicy,
    attempts: list[Attempt],
) -> T:
    key = candidate.breaker_key
    attempt = 1
    while True:
        try:
            result = await operation(adapter, candidate)
        except ProviderError as error:
            failure = error
        else:
            await breaker.record_success(key)
            return result
        attempts.append((candidate, failure.code))
        _log_failure(candidate, attempt, failure)
        if not failure.retryable:
            raise failure
        now_open = await breaker.record_failure(key)
        delay = policy.delay_for(attempt, failure)  # raises when asked to wait too long
        if now_open or attempt >= policy.attempts:
            raise failure
        await asyncio.sleep(delay)
        attempt += 1
        # Another process may have opened the route (or be probing it) while we slept.
        if not await breaker.allow(key):
            raise failure


def _most_informative(errors: list[ProviderError]) -> ProviderError:
    # A configuration problem (rejected key, unknown model, refused URL, invalid request) is what
    # the operator can fix; transient ones only say "try later". A skipped candidate (circuit
    # open) is the least informative of all.
    for error in errors:
        if not error.retryable:
            return error
    real = [e for e in errors if not isinstance(e, _CircuitOpen)]
    return real[-1] if real else errors[-1]


class _CircuitOpen(ProviderError):
    def __init__(self, candidate: Candidate) -> None:
        super().__init__(
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "The provider is paused after repeated failures. Try again shortly.",
            retryable=True,
            detail=f"circuit open for route {candidate.breaker_key!r}",
        )


def _log_failure(candidate: Candidate, attempt: int, error: ProviderError) -> None:
    logger.warning(
        "provider call failed: provider=%s model=%s attempt=%d code=%s status=%s detail=%s",
        candidate.provider,
        candidate.model,
        attempt,
        error.code,
        error.status,
        error.detail,
    )


async def _aclose_stream(stream: AsyncIterator[Any]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
