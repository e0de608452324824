"""Anthropic Messages wire format, as `anthropic` (Stream / AsyncStream) parses it.

The SDK skips `ping` and unnamed events, turns `event: error` into an `APIStatusError` whose
`status_code` is the stream's (200) and whose `body` is the parsed error, and maps HTTP statuses
(429 → RateLimitError, 529 → OverloadedError, ...) from `{"type": "error", "error": {...}}` bodies.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from providers.simulator.scenario import MIDSTREAM_FAULTS, DirectiveError, Scenario

if TYPE_CHECKING:
    from providers.simulator.app import Exchange

MODELS = {"sim-claude": "Sim Claude", "sim-claude-haiku": "Sim Claude Haiku"}
CREATED_AT = "2025-01-01T00:00:00Z"
SSE = "text/event-stream; charset=utf-8"
_STREAM_FAULTS = MIDSTREAM_FAULTS | {"overloaded"}

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# fault → (HTTP status, error type, message) when it is answered before any body.
_STATUS = {
    "429": (429, "rate_limit_error", "Number of requests has exceeded your rate limit."),
    "500": (500, "api_error", "Internal server error"),
    "503": (503, "api_error", "Service unavailable"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "inband_error": (500, "api_error", "Internal server error"),
}


def _dumps(payload: object) -> bytes:
    return _encode(payload).encode("utf-8")


def _event(name: str, payload: object) -> bytes:
    return b"event: " + name.encode("ascii") + b"\ndata: " + _dumps(payload) + b"\n\n"


def _error(type_: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error": {"type": type_, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


async def _check_auth(ex: Exchange, headers: list[tuple[str, str]]) -> bool:
    key = ex.headers.get("x-api-key")
    if key is None:  # the SDK's `auth_token` sends a bearer token instead
        scheme, _, token = ex.headers.get("authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else None
    if ex.key_valid(key):
        return True
    message = "invalid x-api-key" if key else "x-api-key header is required"
    await ex.respond_json(401, _error("authentication_error", message, headers[0][1]), headers)
    return False


def _model_info(model_id: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": MODELS[model_id],
        "created_at": CREATED_AT,
        "lifecycle": "active",
        "max_input_tokens": 200_000,
        "max_tokens": 64_000,
    }


async def list_models(ex: Exchange) -> None:
    headers = [("request-id", "req_" + uuid.uuid4().hex)]
    if await _check_auth(ex, headers):
        ids = list(MODELS)
        body = {
            "data": [_model_info(m) for m in ids],
            "has_more": False,
            "first_id": ids[0],
            "last_id": ids[-1],
        }
        await ex.respond_json(200, body, headers)


async def retrieve_model(ex: Exchange) -> None:
    headers = [("request-id", "req_" + uuid.uuid4().hex)]
    if not await _check_auth(ex, headers):
        return
    model_id = ex.path.rsplit("/", 1)[1]
    if model_id in MODELS:
        await ex.respond_json(200, _model_info(model_id), headers)
    else:
        body = _error("not_found_error", f"model: {model_id}", headers[0][1])
        await ex.respond_json(404, body, headers)


async def _bad_request(ex: Exchange, message: str, headers: list[tuple[str, str]]) -> None:
    await ex.respond_json(400, _error("invalid_request_error", message, headers[0][1]), headers)


async def messages(ex: Exchange) -> None:
    rid = "req_" + uuid.uuid4().hex
    headers = [("request-id", rid)]
    if not await _check_auth(ex, headers):
        return
    payload = await ex.read_json_object()
    if payload is None:
        await _bad_request(ex, "The request body is not valid JSON.", headers)
        return
    model = payload.get("model")
    max_tokens = payload.get("max_tokens")
    if not isinstance(model, str) or not model:
        await _bad_request(ex, "model: Field required", headers)
        return
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        await _bad_request(ex, "max_tokens: Field required", headers)
        return
    if not isinstance(payload.get("messages"), list) or not payload["messages"]:
        await _bad_request(ex, "messages: Field required", headers)
        return
    if model not in MODELS:
        await ex.respond_json(404, _error("not_found_error", f"model: {model}", rid), headers)
        return
    try:
        scenario = ex.plan(payload, payload.get("system"), max_tokens)
    except DirectiveError as err:
        await _bad_request(ex, str(err), headers)
        return

    fault = ex.fault(scenario)
    stream = payload.get("stream") is True
    if fault in _STATUS and not (stream and fault in _STREAM_FAULTS):
        status, type_, message = _STATUS[fault]
        if status == 429:
            headers.append(("retry-after", scenario.retry_after_header))
        await ex.respond_json(status, _error(type_, message, rid), headers)
        return
    if stream:
        await _stream(ex, model, scenario, fault, headers)
    else:
        await _complete(ex, model, scenario, fault, headers)


def _usage(scenario: Scenario, fault: str | None, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": 0 if fault == "zero_usage" else scenario.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _message(model: str, content: list, stop_reason: str | None) -> dict[str, Any]:
    return {
        "id": "msg_sim" + uuid.uuid4().hex[:20],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
    }


def _stop_reason(scenario: Scenario) -> str:
    return "max_tokens" if scenario.truncated else "end_turn"


async def _complete(
    ex: Exchange, model: str, scenario: Scenario, fault: str | None, headers: list
) -> None:
    await ex.sleep(scenario.total_delay(fault))
    if fault == "stall":
        await ex.stall()
        return
    body = _message(model, [{"type": "text", "text": scenario.text}], _stop_reason(scenario))
    if fault != "no_usage":
        output = 0 if fault == "zero_usage" else scenario.output_tokens
        body["usage"] = _usage(scenario, fault, output)
    raw = _dumps(body)
    if fault == "reset":
        await ex.start(200, "application/json", headers)
        await ex.frame(raw[: len(raw) // 2])
        await ex.abort()
    if fault == "malformed":
        raw = raw[: len(raw) // 2]
    await ex.respond(200, raw, "application/json", headers)


async def _stream(
    ex: Exchange, model: str, scenario: Scenario, fault: str | None, headers: list
) -> None:
    await ex.start(200, SSE, [*headers, ("cache-control", "no-cache")])
    await ex.sleep(scenario.first_delay(fault))

    start = _message(model, [], None)
    if fault != "no_usage":
        # The real API reports the first output token already in message_start.
        start["usage"] = _usage(scenario, fault, 0 if fault == "zero_usage" else 1)
    await ex.frame(_event("message_start", {"type": "message_start", "message": start}))
    block = {"type": "text", "text": ""}
    await ex.frame(
        _event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        )
    )
    await ex.frame(_event("ping", {"type": "ping"}))

    prefix, _, suffix = _event(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "\0"}},
    ).partition(b'"\\u0000"')

    def render(piece: str) -> bytes:
        return prefix + _dumps(piece) + suffix

    await ex.frames(scenario.pieces_before(fault, _STREAM_FAULTS), render, scenario.delay)

    if fault in ("overloaded", "inband_error"):
        _, type_, message = _STATUS[fault]
        await ex.finish(_event("error", _error(type_, message)))
        return
    if fault == "reset":
        await ex.abort(SSE)
    if fault == "malformed":
        await ex.finish(prefix + b'"unterminated \n\n')
        return
    if fault == "stall":
        await ex.stall(SSE)
        return

    await ex.frame(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(scenario), "stop_sequence": None},
    }
    if fault != "no_usage":
        delta["usage"] = {"output_tokens": 0 if fault == "zero_usage" else scenario.output_tokens}
    await ex.frame(_event("message_delta", delta))
    await ex.finish(_event("message_stop", {"type": "message_stop"}))
