"""OpenAI's wire format: parsing and validating chat completion requests, and formatting
completions, stream chunks, model lists and errors.

Field policy (the README's gateway section has the user-facing table): the fields Gatehouse
can honour on every provider are used; sampling hints it cannot forward everywhere are
accepted and ignored;
fields that would change the shape or meaning of the answer (tools, JSON mode, logprobs, n > 1,
audio) are refused with 400 `unsupported_parameter` rather than silently dropped; anything that
would steer the upstream call itself (base URL, key, headers) is refused with 400
`forbidden_parameter`; any other unknown field is refused with 400 `unknown_parameter`, as
OpenAI does, so that a typo cannot pass silently.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any

from providers.adapters.base import ChatTurn, ErrorCode, ProviderError, Usage

# --- Errors -----------------------------------------------------------------------------------

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class WireError(Exception):
    """A request answered with an error in OpenAI's shape; `code` is a Gatehouse stable code,
    `message` is safe to show."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}
        super().__init__(message)

    @property
    def type(self) -> str:
        return _ERROR_TYPES.get(self.status, "server_error")

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


# Provider failures by stable code: the client's own mistakes keep their 4xx, a provider
# asking to slow down is a 429, the rest is the upstream's fault (502 bad answer or rejected
# credential, 503 unavailable or overloaded, 504 too slow).
_PROVIDER_STATUS = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.MODEL_NOT_FOUND: 404,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.AUTH_FAILED: 502,
    ErrorCode.STREAM_INTERRUPTED: 502,
    ErrorCode.URL_REFUSED: 502,
    ErrorCode.UPSTREAM_UNAVAILABLE: 503,
    ErrorCode.OVERLOADED: 503,
    ErrorCode.TIMEOUT: 504,
}


def from_provider_error(error: ProviderError) -> WireError:
    status = _PROVIDER_STATUS.get(error.code, 502)
    headers = None
    if error.retry_after and status in (429, 503):
        headers = {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
    param = "model" if status == 404 else None
    return WireError(status, error.code, error.message, param=param, headers=headers)


def invalid(message: str, param: str | None = None) -> WireError:
    return WireError(400, "invalid", message, param=param)


# --- Requests ---------------------------------------------------------------------------------

#: longest model name accepted (provider/model); the ledger's column holds 200
MAX_MODEL_LENGTH = 260
#: OpenAI allows at most four stop sequences
MAX_STOP = 4

_HANDLED = frozenset(
    [
        "model",
        "messages",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
    ]
)
# Hints that do not change the answer's shape and that not every provider supports: accepted
# so that clients written for OpenAI keep working, but not forwarded.
IGNORED = frozenset(
    [
        "user",
        "metadata",
        "store",
        "seed",
        "service_tier",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "parallel_tool_calls",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "reasoning_effort",
        "verbosity",
    ]
)
# Fields whose only acceptable values are the neutral ones (absent, null or the value shown);
# anything else would need a feature Gatehouse does not offer.
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "response_format": (None, {"type": "text"}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "web_search_options": (None,),
}
# The upstream call is Gatehouse's alone: its address, key and headers come from the
# organisation's credentials, never from a request.
FORBIDDEN = frozenset(
    [
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "api_type",
        "headers",
        "extra_headers",
        "extra_body",
        "extra_query",
        "organization",
        "project",
        "custom_llm_provider",
        "deployment_id",
    ]
)

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: list[ChatTurn]
    stream: bool
    include_usage: bool
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    stop: tuple[str, ...] | None


def parse_chat_request(body: bytes) -> ChatRequest:
    """The validated request, or `WireError` (400) naming the offending field."""
    data = _json_object(body)
    _check_fields(data)
    stream = _optional_bool(data, "stream") or False
    return ChatRequest(
        model=_model(data.get("model")),
        messages=_messages(data.get("messages")),
        stream=stream,
        include_usage=stream and _include_usage(data.get("stream_options")),
        temperature=_number(data, "temperature", 0.0, 2.0),
        top_p=_number(data, "top_p", 0.0, 1.0),
        max_tokens=_max_tokens(data),
        stop=_stop(data.get("stop")),
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WireError(400, "invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise WireError(400, "invalid_json", "The request body must be a JSON object.")
    return data


def _check_fields(data: dict[str, Any]) -> None:
    for name, value in data.items():
        if name in _HANDLED or name in IGNORED:
            continue
        if name in FORBIDDEN:
            raise WireError(
                400,
                "forbidden_parameter",
                f"'{name}' cannot be set: the upstream call uses the organisation's credentials.",
                param=name,
            )
        neutral = _NEUTRAL.get(name)
        if neutral is None:
            raise WireError(
                400,
                "unknown_parameter",
                f"Unrecognized request argument supplied: {name}",
                param=name,
            )
        if value not in neutral:
            raise WireError(
                400,
                "unsupported_parameter",
                f"'{name}' is not supported by this gateway.",
                param=name,
            )


def _model(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid("'model' is required: a string such as 'openai/gpt-4o-mini'.", "model")
    if len(value) > MAX_MODEL_LENGTH:
        raise invalid("'model' is too long.", "model")
    return value.strip()


def _messages(value: Any) -> list[ChatTurn]:
    if not isinstance(value, list) or not value:
        raise invalid("'messages' must be a non-empty array.", "messages")
    return [_message(item, f"messages[{i}]") for i, item in enumerate(value)]


def _message(item: Any, where: str) -> ChatTurn:
    if not isinstance(item, dict):
        raise invalid(f"'{where}' must be an object.", where)
    role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise WireError(
            400,
            "unsupported_parameter",
            f"'{where}.role' must be one of system, developer, user, assistant.",
            param=f"{where}.role",
        )
    if item.get("tool_calls") or item.get("function_call"):
        raise WireError(
            400,
            "unsupported_parameter",
            "Tool calls are not supported by this gateway.",
            param=f"{where}.tool_calls",
        )
    return {"role": role, "content": _content(item.get("content"), role, f"{where}.content")}


def _content(value: Any, role: str, where: str) -> str:
    if isinstance(value, str):
        return value
    if value is None and role == "assistant":
        return ""
    if isinstance(value, list):
        return "".join(_text_part(part, f"{where}[{i}]") for i, part in enumerate(value))
    raise invalid(f"'{where}' must be a string or an array of text parts.", where)


def _text_part(part: Any, where: str) -> str:
    if not isinstance(part, dict) or part.get("type") != "text":
        raise WireError(
            400,
            "unsupported_parameter",
            f"'{where}': only text content parts are supported.",
            param=where,
        )
    text = part.get("text")
    if not isinstance(text, str):
        raise invalid(f"'{where}.text' must be a string.", f"{where}.text")
    return text


def _optional_bool(data: dict[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise invalid(f"'{name}' must be a boolean.", name)


def _include_usage(options: Any) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict):
        raise invalid("'stream_options' must be an object.", "stream_options")
    value = options.get("include_usage")
    if value is not None and not isinstance(value, bool):
        raise invalid(
            "'stream_options.include_usage' must be a boolean.", "stream_options.include_usage"
        )
    return bool(value)


def _number(data: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid(f"'{name}' must be a number.", name)
    if not low <= value <= high:
        raise invalid(f"'{name}' must be between {low:g} and {high:g}.", name)
    return float(value)


def _max_tokens(data: dict[str, Any]) -> int | None:
    # The newer name wins when a client sends both (some SDK wrappers copy one into the other).
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise invalid(f"'{name}' must be a positive integer.", name)
        return value
    return None


def _stop(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > MAX_STOP:
        raise invalid(f"'stop' must be a string or an array of up to {MAX_STOP} strings.", "stop")
    if not all(isinstance(s, str) and s for s in items):
        raise invalid("'stop' sequences must be non-empty strings.", "stop")
    return tuple(items) or None


# --- Responses --------------------------------------------------------------------------------

_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


def finish_reason(value: str | None) -> str:
    """OpenAI's vocabulary only: SDKs type the field as a closed set."""
    return value if value in _FINISH_REASONS else "stop"  # type: ignore[return-value]


def usage_body(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def completion_body(
    *, completion_id: str, created: int, model: str, text: str, finish: str, usage: Usage
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(finish),
            }
        ],
        "usage": usage_body(usage),
    }


def model_object(model_id: str, owned_by: str) -> dict[str, Any]:
    # No creation date is known for a provider's model; 0 keeps the SDK's integer field valid.
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owned_by}


def models_body(models: list[tuple[str, str]]) -> dict[str, Any]:
    """OpenAI's list format for (id, owned_by) pairs."""
    return {"object": "list", "data": [model_object(i, owner) for i, owner in models]}


DONE = b"data: [DONE]\n\n"


class ChunkFormat:
    """The `chat.completion.chunk` frames of one stream. Everything but the delta text is the
    same in every frame, so it is encoded once here; a content frame then costs one JSON string
    escape and two concatenations."""

    __slots__ = (
        "_content_head",
        "_content_tail",
        "_finish_head",
        "_finish_tail",
        "_role_head",
        "_usage_head",
    )

    def __init__(self, *, completion_id: str, created: int, model: str, include_usage: bool):
        head = (
            'data: {"id":'
            + encode_basestring_ascii(completion_id)
            + ',"object":"chat.completion.chunk","created":'
            + str(int(created))
            + ',"model":'
            + encode_basestring_ascii(model)
            + ',"system_fingerprint":null,"choices":['
        )
        # With include_usage OpenAI puts `"usage": null` on every chunk but the last.
        usage_null = ',"usage":null' if include_usage else ""
        self._content_head = head + '{"index":0,"delta":{"content":'
        self._role_head = head + '{"index":0,"delta":{"role":"assistant","content":'
        self._content_tail = '},"logprobs":null,"finish_reason":null}]' + usage_null + "}\n\n"
        self._finish_head = head + '{"index":0,"delta":{},"logprobs":null,"finish_reason":'
        self._finish_tail = "}]" + usage_null + "}\n\n"
        self._usage_head = head + '],"usage":'

    def role(self) -> bytes:
        """The first frame: OpenAI opens every stream with the role and an empty content."""
        return (self._role_head + '""' + self._content_tail).encode()

    def content(self, delta: str) -> bytes:
        return (self._content_head + encode_basestring_ascii(delta) + self._content_tail).encode()

    def finish(self, reason: str | None) -> bytes:
        return (
            self._finish_head + encode_basestring_ascii(finish_reason(reason)) + self._finish_tail
        ).encode()

    def usage(self, usage: Usage) -> bytes:
        return (
            self._usage_head + json.dumps(usage_body(usage), separators=(",", ":")) + "}\n\n"
        ).encode()


def error_frame(error: WireError) -> bytes:
    """An error after the stream started: OpenAI's in-band `data: {"error": ...}` frame, which
    the official SDKs raise as `APIError` (no `[DONE]` follows)."""
    return b"data: " + json.dumps(error.body(), separators=(",", ":")).encode() + b"\n\n"
