"""The provider adapter contract.

An adapter talks to one provider kind through that provider's official SDK. It is built for one
`Endpoint` (a credential's base URL, key and defaults) and knows nothing of Django models, the
database, budgets or retries: those live in the layers above (`providers.calls`, `chats.services`).

Contract, for every adapter:

- `complete(messages, *, model, temperature, max_tokens, stop, top_p) -> Completion`
- `stream(...)` is an async iterator of text deltas (`str`, never empty) ending with exactly one
  `StreamEnd` carrying usage and finish reason. A stream that breaks raises `ProviderError`
  (`stream_interrupted` after the first delta), never a silent end.
- `list_models() -> list[ModelInfo]`, `validate_model(model) -> bool`.
- Temperature and max tokens fall back to the endpoint's defaults, then the platform's
  (`settings.GATEHOUSE_DEFAULT_TEMPERATURE` / `GATEHOUSE_DEFAULT_MAX_TOKENS`).
- The SDK's own retries are off (`max_retries=0`): the one retry layer is `providers.calls`.
- Every SDK exception and in-band error becomes a `ProviderError` with a stable `code`.
- A reported usage of 0 is 0. When the provider reports no usage, tokens are estimated from the
  text (`estimate_tokens`) and `Usage.estimated` is True.
"""

from __future__ import annotations

import asyncio
import ssl
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypedDict

from .transport import LeanTransport


class ChatTurn(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Everything an adapter needs to reach one credential. `api_key` is plaintext: never log it."""

    kind: str
    base_url: str | None
    api_key: str = field(repr=False)
    default_temperature: float | None = None
    default_max_tokens: int | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `first_token` and `chunk_gap` bound a stream; `total` bounds a whole call."""

    connect: float = 5.0
    first_token: float = 30.0
    chunk_gap: float = 30.0
    total: float = 300.0


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: Usage
    finish_reason: str
    provider_request_id: str | None = None


@dataclass(frozen=True, slots=True)
class StreamEnd:
    usage: Usage
    finish_reason: str
    provider_request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    context_window: int | None = None
    max_output_tokens: int | None = None


class ErrorCode:
    """The stable codes a provider failure is reported under."""

    AUTH_FAILED = "auth_failed"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    MODEL_NOT_FOUND = "model_not_found"
    BAD_REQUEST = "bad_request"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    STREAM_INTERRUPTED = "stream_interrupted"
    URL_REFUSED = "url_refused"


SAFE_MESSAGES: dict[str, str] = {
    ErrorCode.AUTH_FAILED: "The provider rejected the credential.",
    ErrorCode.RATE_LIMITED: "The provider is rate limiting requests. Try again shortly.",
    ErrorCode.OVERLOADED: "The provider is overloaded. Try again shortly.",
    ErrorCode.TIMEOUT: "The provider did not answer in time.",
    ErrorCode.MODEL_NOT_FOUND: "The provider does not offer this model.",
    ErrorCode.BAD_REQUEST: "The provider refused the request as invalid.",
    ErrorCode.UPSTREAM_UNAVAILABLE: "The provider is unavailable.",
    ErrorCode.STREAM_INTERRUPTED: "The provider's answer was interrupted.",
    ErrorCode.URL_REFUSED: "The provider address is not allowed.",
}

RETRYABLE_CODES = frozenset(
    {
        ErrorCode.RATE_LIMITED,
        ErrorCode.OVERLOADED,
        ErrorCode.TIMEOUT,
        ErrorCode.UPSTREAM_UNAVAILABLE,
        ErrorCode.STREAM_INTERRUPTED,
    }
)


class ProviderError(Exception):
    """One failure of a provider call. `message` is safe to show a user; `detail` is for the log
    only (already redacted of keys by the raiser). `retryable` says whether a retry or a fallback
    to another credential may succeed — only ever acted on before the first token."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        retryable: bool | None = None,
        retry_after: float | None = None,
        status: int | None = None,
        detail: str = "",
    ) -> None:
        self.code = code
        self.message = message or SAFE_MESSAGES.get(code, "The provider call failed.")
        self.retryable = code in RETRYABLE_CODES if retryable is None else retryable
        self.retry_after = retry_after
        self.status = status
        self.detail = detail
        super().__init__(f"{code}: {self.message}")


async def collect_all(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


def estimate_tokens(text: str) -> int:
    """Token estimate for text the provider did not count: one token per 4 characters, rounded
    up (OpenAI's published rule of thumb for English), and never less than the word count."""
    if not text:
        return 0
    by_length = -(-len(text) // 4)
    # Words are at most the separators plus one: when that bound cannot beat the length rule,
    # skip the split (the estimate runs over every turn of a chat's history, on every message).
    if text.isascii():
        count = text.count
        separators = count(" ") + count("\n") + count("\t") + count("\r")
        if separators + count("\x0b") + count("\x0c") < by_length:
            return by_length
    return max(by_length, len(text.split()))


class Adapter(ABC):
    """Base class of all provider adapters; see the module docstring for the contract."""

    kind: ClassVar[str]
    #: human name of the kind, for forms (`providers.adapters.KINDS`)
    label: ClassVar[str] = ""
    #: inclusive range of the provider's temperature parameter
    temperature_range: ClassVar[tuple[float, float]] = (0.0, 2.0)

    def __init__(self, endpoint: Endpoint, *, timeouts: Timeouts | None = None) -> None:
        self.endpoint = endpoint
        self.timeouts = timeouts or Timeouts()

    @abstractmethod
    async def complete(
        self,
        messages: Sequence[ChatTurn],
        *,
        model: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        top_p: float | None = None,
    ) -> Completion: ...

    @abstractmethod
    def stream(
        self,
        messages: Sequence[ChatTurn],
        *,
        model: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        top_p: float | None = None,
    ) -> AsyncIterator[str | StreamEnd]: ...

    @abstractmethod
    async def list_models(self) -> list[ModelInfo]: ...

    async def validate_model(self, model: str) -> bool:
        return any(m.id == model for m in await self.list_models())

    async def aclose(self) -> None:  # noqa: B027 - a no-op default, not an abstract method
        """Release the SDK client's connections."""

    def _http_options(self, httpx_module: Any, base_url: str) -> dict[str, Any]:
        """The keyword arguments of an SDK's httpx (or httpx2) client, the same for every kind:
        `connect` bounds the TCP/TLS setup and `total` is the read backstop (streams are bounded
        tighter by StreamClock); our own HTTP/1.1 transport (transport.py: CPU, and connections
        go to the very address the network guard checked); the request guard on every request,
        redirects included."""
        return {
            "timeout": httpx_module.Timeout(self.timeouts.total, connect=self.timeouts.connect),
            "transport": LeanTransport(httpx_module, verify=shared_ssl_context()),
            "event_hooks": {"request": [request_guard(base_url)]},
        }

    async def _bounded(self, call: Awaitable[Any]) -> Any:
        """One whole (non-streamed) provider call within the total timeout; any failure comes
        out as a `ProviderError`, redacted of this endpoint's key."""
        try:
            async with asyncio.timeout(self.timeouts.total):
                return await call
        except Exception as exc:
            raise self._error(exc) from None

    def _error(self, exc: BaseException) -> ProviderError:
        from providers.adapters.errors import to_provider_error  # errors imports this module

        return to_provider_error(exc, secret=self.endpoint.api_key)


# --- Helpers shared by the adapter implementations ------------------------------------------
# Not part of the contract above: small pieces every adapter module needs the same way.

_FALLBACK_TEMPERATURE = 0.7
_FALLBACK_MAX_TOKENS = 1024


def resolve_temperature(adapter: Adapter, temperature: float | None) -> float:
    """The call's temperature, else the endpoint's, else the platform default; clamped into the
    adapter's `temperature_range` (a chat set to 1.5 for OpenAI must still run on Anthropic)."""
    value = temperature
    if value is None:
        value = adapter.endpoint.default_temperature
    if value is None:
        value = _platform_setting("GATEHOUSE_DEFAULT_TEMPERATURE", _FALLBACK_TEMPERATURE)
    low, high = adapter.temperature_range
    return min(max(float(value), low), high)


def resolve_max_tokens(adapter: Adapter, max_tokens: int | None) -> int:
    """The call's max tokens, else the endpoint's, else the platform default."""
    if max_tokens is not None:
        return max_tokens
    if adapter.endpoint.default_max_tokens is not None:
        return adapter.endpoint.default_max_tokens
    return int(_platform_setting("GATEHOUSE_DEFAULT_MAX_TOKENS", _FALLBACK_MAX_TOKENS))


def _platform_setting(name: str, fallback: float) -> float:
    # Imported here so that base.py stays importable without Django (the simulator, scripts).
    from django.conf import settings

    return getattr(settings, name, fallback) if settings.configured else fallback


def build_usage(
    input_tokens: int | None,
    output_tokens: int | None,
    messages: Sequence[ChatTurn],
    output_parts: Sequence[str],
) -> Usage:
    """Usage as reported; a count the provider left out is estimated (and flagged), a reported
    0 stays 0."""
    if input_tokens is not None and output_tokens is not None:
        return Usage(input_tokens, output_tokens)
    if input_tokens is None:
        input_tokens = estimate_tokens("\n".join(m["content"] for m in messages))
    if output_tokens is None:
        output_tokens = estimate_tokens("".join(output_parts))
    return Usage(input_tokens, output_tokens, estimated=True)


class StreamClock:
    """The deadlines of one stream: `first_token` from the start of the call until the first
    text delta, then `chunk_gap` for each later read, and `total` over everything.

    Call `wait()` right before awaiting the upstream and `idle()` right after; only the awaits
    between them are bounded, so a slow consumer between two chunks is never timed out.

    Why not `asyncio.timeout` around each read: that costs a context manager, a timer handle
    and a heap push per chunk (about 4 µs measured, against a budget of 60 µs per chunk for the
    whole gateway). Here a chunk only moves a deadline; the single timer re-arms itself when it
    finds the deadline moved, so it fires at most once per `chunk_gap`. On expiry it cancels the
    waiting task exactly like `asyncio.timeout` (same `cancelling()`/`uncancel()` accounting);
    `timed_out()` tells that cancellation apart from one coming from outside.
    """

    __slots__ = (
        "_cancelling",
        "_deadline",
        "_end",
        "_expired",
        "_expired_deadline",
        "_first",
        "_gap",
        "_handle",
        "_loop",
        "_started",
        "_task",
        "_when",
    )

    def __init__(self, timeouts: Timeouts) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._loop = loop
        self._gap = timeouts.chunk_gap
        self._end = now + timeouts.total
        self._first = min(now + timeouts.first_token, self._end)
        self._started = False
        self._deadline: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._when = 0.0
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self._expired = False
        self._expired_deadline = 0.0

    def first_token(self) -> None:
        """The first text delta arrived: from now on `chunk_gap` applies."""
        self._started = True

    def wait(self) -> None:
        if self._started:
            deadline = self._loop.time() + self._gap
            if deadline > self._end:
                deadline = self._end
        else:
            deadline = self._first
        self._deadline = deadline
        # With the loop named: without it, Python 3.11 asks the kernel for the process id
        # (getpid, ~0.7 µs on this machine) to find the running loop, once per chunk.
        task = asyncio.current_task(self._loop)
        if task is not self._task:
            self._task = task
            self._cancelling = task.cancelling() if task is not None else 0
        if self._handle is None or deadline < self._when:
            if self._handle is not None:
                self._handle.cancel()
            self._when = deadline
            self._handle = self._loop.call_at(deadline, self._fire)

    def idle(self) -> None:
        self._deadline = None

    def _fire(self) -> None:
        self._handle = None
        deadline = self._deadline
        if deadline is None or self._task is None:
            return  # not waiting: the next wait() arms a new timer
        if self._loop.time() < deadline - _CLOCK_SLACK:
            self._when = deadline
            self._handle = self._loop.call_at(deadline, self._fire)
            return
        self._expired = True
        self._expired_deadline = deadline
        self._task.cancel()

    def timed_out(self) -> bool:
        """Call when CancelledError reaches the stream: True when this clock caused it, in
        which case the cancellation is absorbed and the caller raises a timeout instead."""
        if not self._expired or self._task is None:
            return False
        self._expired = False
        return self._task.uncancel() <= self._cancelling

    def timeout_error(self) -> ProviderError:
        """The error to raise after `timed_out()`, saying which limit was hit."""
        if self._expired_deadline >= self._end:
            limit = "total"
        elif self._started:
            limit = "chunk_gap"
        else:
            limit = "first_token"
        return ProviderError(ErrorCode.TIMEOUT, detail=f"stream exceeded its {limit} timeout")

    def close(self) -> None:
        self._deadline = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


# The event loop may run a timer up to its clock resolution early; re-arming for that sliver
# would only spin.
_CLOCK_SLACK = 0.001


def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every SDK client: building one (loading the CA bundle) is ~20 ms,
    which would otherwise be paid for each new adapter. SSLContext is safe to share."""
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        import httpx2

        _SSL_CONTEXT = httpx2.create_ssl_context()
    return _SSL_CONTEXT


_SSL_CONTEXT: ssl.SSLContext | None = None

# Headers that carry a credential in one of the supported SDKs. httpx itself only drops
# `Authorization` on a cross-origin redirect; Anthropic's `x-api-key` would follow it.
_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key")


def request_guard(base_url: str) -> Callable[[Any], Awaitable[None]]:
    """An httpx/httpx2 `request` event hook for an adapter's HTTP client. It runs before every
    request the client sends, redirects included: a request leaving the base URL's origin loses
    its credential headers, and every URL must pass `providers.netguard.acheck_url`."""
    origin = _origin(base_url)

    async def guard(request: Any) -> None:
        url = request.url
        if _origin_of(url.scheme, url.host, url.port) != origin:
            for name in _CREDENTIAL_HEADERS:
                request.headers.pop(name, None)
        await _netguard_check()(str(url))

    return guard


def _origin(url: str) -> tuple[str, str, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return _origin_of(parts.scheme, parts.hostname or "", parts.port)


def _origin_of(scheme: str, host: str, port: int | None) -> tuple[str, str, int | None]:
    scheme = scheme.lower()
    return scheme, host.lower(), port or _DEFAULT_PORTS.get(scheme)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _netguard_check() -> Callable[[str], Awaitable[None]]:
    # netguard imports this module, so it cannot be imported at the top of it.
    global _ACHECK_URL
    if _ACHECK_URL is None:
        from providers.netguard import acheck_url

        _ACHECK_URL = acheck_url
    return _ACHECK_URL


_ACHECK_URL: Callable[[str], Awaitable[None]] | None = None
