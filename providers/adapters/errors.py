"""Every way a provider call can fail, mapped to a `ProviderError` with a stable code.

Sources: the SDKs' exceptions (openai.*, anthropic.*, ollama.ResponseError / RequestError), the
HTTP stacks under them (httpx2 for openai/anthropic, httpx for ollama), asyncio timeouts, and
in-band errors (an error frame after a 200: openai's `APIError`, anthropic's `APIStatusError`
with status 200, ollama's `ResponseError` with status -1).

Policy, in order:

- a `ProviderError` anywhere in the exception chain wins: the request hook (netguard) raises it
  and some SDKs wrap it (anthropic's APIConnectionError).
- timeouts → `timeout`.
- an HTTP error status → by status (401/403/402 auth_failed, 404 model_not_found, 408 timeout,
  409 upstream_unavailable, 429 rate_limited, 529 overloaded, 5xx upstream_unavailable, other
  4xx bad_request), refined by the provider's error code/type (`model_not_found`,
  `overloaded_error`, ...). 503 stays `upstream_unavailable` unless the body's type says
  overloaded: the status is the provider's own statement, the message wording is not.
- in-band errors → by the error type in the frame: overloaded_error → overloaded,
  rate_limit_error → rate_limited, invalid_request_error → bad_request, anything else
  (server_error, api_error, an ollama error line) → upstream_unavailable.
- no connection made (refused, DNS, TLS setup) → upstream_unavailable.
- the answer broke after it started: connection reset, incomplete body, a chunk or body that is
  not valid JSON, or (in a stream) valid JSON of the wrong shape → `stream_interrupted`
  (retryable: it is the upstream's answer that broke, not our request, so `bad_request` would
  wrongly stop a retry or fallback before the first token).
- anything else (an SDK error class not known here, a bug) → `upstream_unavailable`, not
  retryable, so that a bug does not multiply calls.

`detail` (for logs only) is the exception's type and text with anything resembling the
endpoint's key removed; `message` is always the fixed safe text of the code.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import ssl
import sys
import time
from collections.abc import Mapping
from datetime import UTC
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import pydantic

from .base import ErrorCode, ProviderError

if TYPE_CHECKING:
    import anthropic
    import ollama
    import openai


class _Never(Exception):
    """Stands in for the exception classes of an SDK this process never loaded: no call can
    have raised one."""


class _NotLoaded:
    def __getattr__(self, name: str) -> type[_Never]:
        return _Never


def _sdk(name: str) -> Any:
    """An SDK module if this process has loaded it. Adapters import their SDK on first use
    (`providers.adapters.adapter_class`): each costs tens of MiB of memory."""
    return sys.modules.get(name) or _NotLoaded()


_DETAIL_LIMIT = 500
_REDACTED = "[redacted]"


def _timeouts() -> tuple[type[BaseException], ...]:
    httpx = _sdk("httpx")
    return (
        TimeoutError,  # asyncio.timeout (asyncio.TimeoutError is the builtin since 3.11)
        _sdk("openai").APITimeoutError,
        _sdk("anthropic").APITimeoutError,
        httpx2.TimeoutException,
        httpx.TimeoutException,
    )


def _no_connection() -> tuple[type[BaseException], ...]:
    httpx = _sdk("httpx")
    return (
        httpx2.ConnectError,
        httpx.ConnectError,
        httpx2.UnsupportedProtocol,
        httpx.UnsupportedProtocol,
        httpx2.ProxyError,
        httpx.ProxyError,
        ConnectionRefusedError,
        ssl.SSLError,
    )


def _broken_answer() -> tuple[type[BaseException], ...]:
    httpx = _sdk("httpx")
    return (
        httpx2.TransportError,  # RemoteProtocolError, ReadError, ... once the connection exists
        httpx.TransportError,
        httpx2.DecodingError,
        httpx.DecodingError,
        anyio.EndOfStream,
        anyio.BrokenResourceError,
        ConnectionError,  # reset / aborted / broken pipe surfacing raw from a socket
        json.JSONDecodeError,  # a malformed chunk or body (other ValueErrors: request-side)
    )


_STATUS_CODES = {
    401: ErrorCode.AUTH_FAILED,
    402: ErrorCode.AUTH_FAILED,  # billing: this credential cannot pay, another one may
    403: ErrorCode.AUTH_FAILED,
    404: ErrorCode.MODEL_NOT_FOUND,
    408: ErrorCode.TIMEOUT,
    409: ErrorCode.UPSTREAM_UNAVAILABLE,  # OpenAI documents 409 as "retry"
    429: ErrorCode.RATE_LIMITED,
    529: ErrorCode.OVERLOADED,
}

# Provider error `type` (anthropic's error.type, openai's error.type) for in-band errors.
_TYPE_CODES = {
    "overloaded_error": ErrorCode.OVERLOADED,
    "rate_limit_error": ErrorCode.RATE_LIMITED,
    "authentication_error": ErrorCode.AUTH_FAILED,
    "permission_error": ErrorCode.AUTH_FAILED,
    "billing_error": ErrorCode.AUTH_FAILED,
    "not_found_error": ErrorCode.MODEL_NOT_FOUND,
    "timeout_error": ErrorCode.TIMEOUT,
    "invalid_request_error": ErrorCode.BAD_REQUEST,
    "request_too_large": ErrorCode.BAD_REQUEST,
}

# OpenAI's error.code: more specific than its status (a 400 can be a missing model).
_OPENAI_CODES = {
    "invalid_api_key": ErrorCode.AUTH_FAILED,
    "model_not_found": ErrorCode.MODEL_NOT_FOUND,
    "rate_limit_exceeded": ErrorCode.RATE_LIMITED,
    "insufficient_quota": ErrorCode.RATE_LIMITED,
}

# OpenAI-compatible servers (vLLM, llama.cpp, LiteLLM...) often report an unknown model as a
# plain 400 with a sentence; ollama says `model "x" not found, try pulling it first`.
_MISSING_MODEL = re.compile(
    r"model.{0,200}?(not found|does not exist|not exist|unknown|no such|try pulling)",
    re.IGNORECASE | re.DOTALL,
)


def to_provider_error(exc: BaseException, *, secret: str = "") -> ProviderError:
    """The `ProviderError` for an exception raised by an SDK call. `secret` (the endpoint's API
    key) is scrubbed from the detail. Raise the result `from None`: the SDK's exception text
    may quote a key and must not reach a traceback in the logs."""
    found = _find_provider_error(exc)
    if found is not None:
        found.detail = redact(found.detail, secret)
        return found
    code, status, retry_after, retryable = _classify(exc)
    return ProviderError(
        code,
        retryable=retryable,
        retry_after=retry_after,
        status=status,
        detail=redact(describe(exc), secret),
    )


def stream_error(exc: BaseException, upstream: object | None, *, secret: str = "") -> ProviderError:
    """`to_provider_error` for a failure inside `stream()`. Once the stream is open, a lookup
    error on a decoded chunk (valid JSON of the wrong shape) means a malformed chunk."""
    if upstream is not None and isinstance(exc, _SHAPE_ERRORS):
        return ProviderError(
            ErrorCode.STREAM_INTERRUPTED, detail=redact(f"malformed chunk: {describe(exc)}", secret)
        )
    return to_provider_error(exc, secret=secret)


# ollama validates each line into a pydantic model; the others hand over dicts
_SHAPE_ERRORS = (AttributeError, KeyError, IndexError, TypeError, pydantic.ValidationError)


def detected_error(code: str, detail: str, *, secret: str = "") -> ProviderError:
    """For failures an adapter detects itself (a stream that ends without a finish)."""
    return ProviderError(code, detail=redact(detail, secret))


def _find_provider_error(exc: BaseException) -> ProviderError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ProviderError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _classify(exc: BaseException) -> tuple[str, int | None, float | None, bool | None]:
    """(code, HTTP status, retry_after, retryable override)."""
    openai, anthropic, ollama = _sdk("openai"), _sdk("anthropic"), _sdk("ollama")
    if isinstance(exc, _timeouts()):
        return ErrorCode.TIMEOUT, None, None, None
    if isinstance(exc, openai.APIStatusError | anthropic.APIStatusError):
        return _from_status_error(exc)
    if isinstance(exc, ollama.ResponseError):
        return _from_ollama(exc)
    if isinstance(exc, openai.APIResponseValidationError | anthropic.APIResponseValidationError):
        return ErrorCode.STREAM_INTERRUPTED, exc.status_code, None, None
    if isinstance(exc, openai.APIConnectionError | anthropic.APIConnectionError):
        # The SDK wraps the transport error; its cause says whether a connection was made.
        cause = exc.__cause__
        if cause is None or isinstance(cause, _no_connection()):
            return ErrorCode.UPSTREAM_UNAVAILABLE, None, None, None
        return _classify(cause)
    if isinstance(exc, openai.APIError):  # openai's in-band `data: {"error": ...}` frame
        return _from_type(exc.type, exc.code), None, None, None
    if isinstance(exc, ollama.RequestError):  # refused by the SDK before sending
        return ErrorCode.BAD_REQUEST, None, None, None
    if isinstance(exc, _no_connection()) or type(exc) is ConnectionError:
        # a bare ConnectionError is ollama's "Failed to connect to Ollama"
        return ErrorCode.UPSTREAM_UNAVAILABLE, None, None, None
    if isinstance(exc, httpx2.TooManyRedirects | _sdk("httpx").TooManyRedirects):
        return ErrorCode.UPSTREAM_UNAVAILABLE, None, None, False
    if isinstance(exc, _broken_answer()):
        return ErrorCode.STREAM_INTERRUPTED, None, None, None
    # Anything else is unexpected (an SDK error class we do not know, or a bug): reported, but
    # not retried, so that a bug does not multiply calls.
    return ErrorCode.UPSTREAM_UNAVAILABLE, None, None, False


def _from_status_error(
    exc: openai.APIStatusError | anthropic.APIStatusError,
) -> tuple[str, int | None, float | None, bool | None]:
    status = exc.status_code
    error_type, error_code = _error_type_and_code(exc)
    if status < 400:  # anthropic reports an `event: error` frame under the stream's 200
        return _from_type(error_type, error_code), None, None, None
    # the SDK's message usually quotes the body, but not always (a custom error class)
    code = _from_status(status, error_type, error_code, f"{exc.message} {exc.body}")
    retry_after = parse_retry_after(exc.response.headers) if code in _RETRY_AFTER_CODES else None
    return code, status, retry_after, None


_RETRY_AFTER_CODES = frozenset(
    {ErrorCode.RATE_LIMITED, ErrorCode.OVERLOADED, ErrorCode.UPSTREAM_UNAVAILABLE}
)


def _error_type_and_code(exc: BaseException) -> tuple[str | None, str | None]:
    if isinstance(exc, _sdk("anthropic").APIStatusError):
        return exc.type, exc.error_code
    if isinstance(exc, _sdk("openai").APIError):
        return exc.type, exc.code
    return None, None


def _from_status(status: int, error_type: str | None, error_code: str | None, text: str) -> str:
    if error_code in _OPENAI_CODES:
        return _OPENAI_CODES[error_code]
    if error_type == "overloaded_error":
        return ErrorCode.OVERLOADED
    code = _STATUS_CODES.get(status)
    if code is not None:
        return code
    if status >= 500:
        return ErrorCode.UPSTREAM_UNAVAILABLE
    if _MISSING_MODEL.search(text or ""):
        return ErrorCode.MODEL_NOT_FOUND
    return ErrorCode.BAD_REQUEST


def _from_type(error_type: str | None, error_code: str | None) -> str:
    if error_code in _OPENAI_CODES:
        return _OPENAI_CODES[error_code]
    return _TYPE_CODES.get(error_type or "", ErrorCode.UPSTREAM_UNAVAILABLE)


def _from_ollama(exc: ollama.ResponseError) -> tuple[str, int | None, float | None, bool | None]:
    text = str(exc.error)
    if exc.status_code < 400:  # -1: an `{"error": ...}` line inside a 200 stream
        if _MISSING_MODEL.search(text):
            return ErrorCode.MODEL_NOT_FOUND, None, None, None
        return ErrorCode.UPSTREAM_UNAVAILABLE, None, None, None
    code = _from_status(exc.status_code, None, None, text)
    # ResponseError keeps no headers; ollama raises it while handling httpx's HTTPStatusError,
    # which is still its __context__ and has the response.
    retry_after = None
    context = exc.__context__
    if code in _RETRY_AFTER_CODES and isinstance(context, _sdk("httpx").HTTPStatusError):
        retry_after = parse_retry_after(context.response.headers)
    return code, exc.status_code, retry_after, None


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI, Anthropic) or `Retry-After` (seconds or an
    HTTP date). None when absent or unreadable; never negative."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        seconds = _number(millis)
        if seconds is not None:
            return seconds / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    return _seconds_until(value, time.time() if now is None else now)


def _number(value: str) -> float | None:
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return max(number, 0.0) if math.isfinite(number) else None


def _seconds_until(http_date: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; parsedate leaves "-0000" naive
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - now, 0.0)


def describe(exc: BaseException) -> str:
    """`Type: text [status N]` of an exception, bounded, for the log detail (not yet redacted)."""
    kind = type(exc)
    module = kind.__module__.partition(".")[0]
    name = kind.__name__ if module == "builtins" else f"{module}.{kind.__name__}"
    status = getattr(exc, "status_code", None)
    text = str(exc)
    cause = exc.__cause__
    if cause is not None and str(cause) not in text:
        text = f"{text} (from {type(cause).__name__}: {cause})"
    suffix = f" [status {status}]" if isinstance(status, int) else ""
    detail = f"{name}: {text}{suffix}"
    return detail if len(detail) <= _DETAIL_LIMIT else detail[: _DETAIL_LIMIT - 1] + "…"


# Runs of characters an API key is made of (base64/url-safe alphabets, separators) and the
# masked forms providers echo ("sk-abc***wxyz").
_TOKEN = re.compile(r"[A-Za-z0-9_\-.~+/=*]{4,}")
_BEARER = re.compile(r"(?i)\b(bearer)\s+\S+")
_WINDOW = 8


def redact(text: str, secret: str) -> str:
    """`text` without the key: exact occurrences, and any token sharing 8 consecutive
    characters with it (truncated, masked or differently framed echoes of the key). Also any
    `Bearer <token>`. Runs on error paths only."""
    if not text:
        return text
    text = _BEARER.sub(r"\1 " + _REDACTED, text)
    if not secret:
        return text
    text = text.replace(secret, _REDACTED)
    if len(secret) < _WINDOW:
        return text
    windows = {secret[i : i + _WINDOW] for i in range(len(secret) - _WINDOW + 1)}

    def scrub(match: re.Match[str]) -> str:
        token = match.group(0)
        for i in range(len(token) - _WINDOW + 1):
            if token[i : i + _WINDOW] in windows:
                return _REDACTED
        return token

    return _TOKEN.sub(scrub, text)
