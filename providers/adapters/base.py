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

import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal, TypedDict


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


def estimate_tokens(text: str) -> int:
    """Token estimate for text the provider did not count: one token per 4 characters, rounded
    up (OpenAI's published rule of thumb for English), and never less than the word count."""
    if not text:
        return 0
    return max(math.ceil(len(text) / 4), len(text.split()))


class Adapter(ABC):
    """Base class of all provider adapters; see the module docstring for the contract."""

    kind: ClassVar[str]
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

    async def aclose(self) -> None:
        """Release the SDK client's connections."""
