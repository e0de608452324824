"""The WebSocket frames of /ws/chats/<id>/ and their encoding.

Client → server: `message`, `cancel`. Server → client: `start`, `token`, `done`, `error`.
After a `start`, exactly one `done` or `error` ends that generation. The socket is closed with
4403 after an `access_revoked` error, with 4404 after a `chat_deleted` one.

Server frames are serialised once and the same text goes to the generating socket and, through
the channel layer, to every other socket on the chat. Token frames are the hot path: they are
built by string concatenation around the C string encoder, not by `json.dumps` of a dict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii  # the C implementation when available
from typing import Any, Literal, NotRequired, TypedDict

#: the largest frame a client may send, in bytes of UTF-8
MAX_FRAME_BYTES = 32 * 1024


# --- Client → server ----------------------------------------------------------------------


class MessageFrame(TypedDict):
    type: Literal["message"]
    content: str
    provider: NotRequired[str | None]
    model: NotRequired[str | None]
    temperature: NotRequired[float | None]
    max_tokens: NotRequired[int | None]


class CancelFrame(TypedDict):
    type: Literal["cancel"]


# --- Server → client ----------------------------------------------------------------------


class StartFrame(TypedDict):
    type: Literal["start"]
    message_id: int
    user_message_id: int
    provider: str
    model: str
    request_id: str


class TokenFrame(TypedDict):
    type: Literal["token"]
    delta: str


class UsageBody(TypedDict):
    input_tokens: int
    output_tokens: int
    estimated: bool


class DoneFrame(TypedDict):
    type: Literal["done"]
    message_id: int
    status: str  # complete | partial | cancelled
    finish_reason: str
    usage: UsageBody | None
    cost: str | None  # a decimal string; null when the price is unknown
    request_id: str


class LimitBody(TypedDict):
    """A spending limit, as `providers.admission.AdmissionRefused.as_dict()` names it."""

    id: int
    name: str
    scope: str  # organization | member | credential
    period: str  # day | week | month | total
    amount: str  # USD, a decimal string


class ErrorFrame(TypedDict):
    """`code` is stable (the README's error codes). An admission refusal adds what the REST
    refusal says in its headers: `budget_exceeded` the limit that refused and when it resets,
    `rate_limited` and `service_unavailable` when to retry."""

    type: Literal["error"]
    code: str
    message: str
    request_id: str
    message_id: NotRequired[int]
    fields: NotRequired[dict[str, Any]]
    retry_after: NotRequired[float]  # seconds
    limit: NotRequired[LimitBody]  # the spending limit that refused the call
    resets_at: NotRequired[str]  # ISO 8601 with offset; absent: never resets, or unpriced model


ServerFrame = StartFrame | TokenFrame | DoneFrame | ErrorFrame


def done_frame(reply: Any) -> DoneFrame:
    """The `done` frame of a settled answer (a `chats.services.generation.Reply`)."""
    usage = reply.usage
    return {
        "type": "done",
        "message_id": reply.message_id,
        "status": reply.status,
        "finish_reason": reply.finish_reason,
        "usage": None
        if usage is None
        else {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "estimated": usage.estimated,
        },
        "cost": None if reply.cost is None else str(reply.cost),
        "request_id": reply.request_id,
    }


def error_frame(reply: Any) -> ErrorFrame:
    """The `error` frame of a failed answer (a `chats.services.generation.Reply`)."""
    error = reply.error
    assert error is not None
    frame: ErrorFrame = {
        "type": "error",
        "code": error.code,
        "message": error.message,
        "request_id": reply.request_id,
    }
    if reply.message_id is not None:
        frame["message_id"] = reply.message_id
    if error.retry_after:
        frame["retry_after"] = error.retry_after
    return frame


def encode(frame: Mapping[str, Any]) -> str:
    """Any server frame (`ServerFrame`), compact."""
    return json.dumps(frame, separators=(",", ":"))


def encode_token(delta: str) -> str:
    """`{"type":"token","delta":...}` without building a dict: this runs once per token."""
    return '{"type":"token","delta":' + encode_basestring_ascii(delta) + "}"


def frame_too_large(text: str) -> bool:
    # A character is at most 4 bytes of UTF-8: most frames are decided without encoding them.
    if len(text) <= MAX_FRAME_BYTES // 4:
        return False
    return len(text) > MAX_FRAME_BYTES or len(text.encode()) > MAX_FRAME_BYTES
