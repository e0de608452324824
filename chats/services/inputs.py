"""Validation of one message's input, shared by every entry point (REST, legacy route, WebSocket).

A plain function rather than a DRF serializer: it runs on the WebSocket's time-to-first-token
path, where a serializer's ~100 µs is a noticeable share of the budget, and one function keeps
the REST and WebSocket error codes identical. The REST views document the same shape with a
serializer for the OpenAPI schema.

Checks that need the route (the provider's temperature range, the model's output cap) happen
in `params_check`, once the route is known.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chats.services.errors import InputError

#: the longest message a member may send, in characters
MAX_CONTENT_CHARS = 16_000

ALLOWED_FIELDS = frozenset({"content", "provider", "model", "temperature", "max_tokens"})

# Fields that would let a client steer the call somewhere else or with other credentials. Every
# unknown field is refused; these get a message that says why.
STEERING_FIELDS = frozenset(
    {
        "api_key",
        "apikey",
        "key",
        "base_url",
        "api_base",
        "base",
        "url",
        "endpoint",
        "headers",
        "extra_headers",
        "default_headers",
        "extra_body",
        "extra_query",
        "organization",
        "credential",
        "credential_id",
    }
)


@dataclass(frozen=True, slots=True)
class MessageInput:
    content: str
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


def message_input_parse(
    data: Any, *, content_field: str = "content", ignore: frozenset[str] = frozenset()
) -> MessageInput:
    """Validate a message request body (or frame, minus `type`). `content_field` names the text
    field (`message` on the legacy route); `ignore` lists fields consumed elsewhere."""
    if not isinstance(data, Mapping):
        raise InputError.one("non_field_errors", "invalid", "Expected a JSON object.")
    errors: dict[str, tuple[str, str]] = {}
    _check_unknown(data, content_field, ignore, errors)
    content = _content(data.get(content_field), content_field in data, content_field, errors)
    provider = _name(data.get("provider"), "provider", 50, errors)
    model = _name(data.get("model"), "model", 200, errors)
    temperature = _temperature(data.get("temperature"), errors)
    max_tokens = _max_tokens(data.get("max_tokens"), errors)
    if errors:
        raise InputError(errors)
    return MessageInput(content, provider, model, temperature, max_tokens)


def params_check(
    message: MessageInput,
    *,
    model: str,
    max_output_tokens: int,
    temperature_range: tuple[float, float],
) -> None:
    """The checks that depend on the route: temperature within the provider's range, max_tokens
    within the model's output cap."""
    errors: dict[str, tuple[str, str]] = {}
    low, high = temperature_range
    if message.temperature is not None and not low <= message.temperature <= high:
        errors["temperature"] = (
            "temperature_out_of_range",
            f"Temperature must be between {low:g} and {high:g} for this provider.",
        )
    if message.max_tokens is not None and message.max_tokens > max_output_tokens:
        errors["max_tokens"] = (
            "max_tokens_out_of_range",
            f"max_tokens must be between 1 and {max_output_tokens} for model {model!r}.",
        )
    if errors:
        raise InputError(errors)


def _check_unknown(
    data: Mapping[str, Any],
    content_field: str,
    ignore: frozenset[str],
    errors: dict[str, tuple[str, str]],
) -> None:
    allowed = (ALLOWED_FIELDS - {"content"}) | {content_field} | ignore
    for name in data:
        if name in allowed:
            continue
        if str(name).lower() in STEERING_FIELDS:
            errors[str(name)] = (
                "field_not_allowed",
                "The provider, its address and credentials are chosen by the server.",
            )
        else:
            errors[str(name)] = ("unknown_field", "Unknown field.")


def _content(value: Any, present: bool, field: str, errors: dict[str, tuple[str, str]]) -> str:
    if not present or value is None:
        errors[field] = ("content_required", "The message content is required.")
        return ""
    if not isinstance(value, str):
        errors[field] = ("invalid_type", "The message content must be a string.")
        return ""
    if not value.strip():
        errors[field] = ("content_empty", "The message content is empty.")
    elif len(value) > MAX_CONTENT_CHARS:
        errors[field] = (
            "content_too_long",
            f"The message is {len(value)} characters long; the limit is {MAX_CONTENT_CHARS}.",
        )
    return value


def _name(value: Any, field: str, limit: int, errors: dict[str, tuple[str, str]]) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        errors[field] = ("invalid_type", f"Expected a name of at most {limit} characters.")
        return None
    return value


def _temperature(value: Any, errors: dict[str, tuple[str, str]]) -> float | None:
    if value is None:
        return None
    # bool is an int subclass: `true` is not a temperature.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors["temperature"] = ("invalid_type", "Temperature must be a number.")
        return None
    return float(value)


def _max_tokens(value: Any, errors: dict[str, tuple[str, str]]) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        errors["max_tokens"] = ("invalid_type", "max_tokens must be an integer.")
        return None
    if value < 1:
        errors["max_tokens"] = ("max_tokens_out_of_range", "max_tokens must be at least 1.")
        return None
    return value
