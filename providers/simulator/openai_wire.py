"""OpenAI chat completions wire format, as `openai` (Stream / AsyncStream) parses it.

The SDK raises `APIError` on a `data: {"error": ...}` frame, stops at `data: [DONE]` and maps
HTTP statuses to its exception classes from `{"error": {...}}` bodies.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from providers.simulator.scenario import MIDSTREAM_FAULTS, DirectiveError, Scenario

if TYPE_CHECKING:
    from providers.simulator.app import Exchange

MODELS = ("sim-gpt", "sim-gpt-mini")
CREATED = 1_735_689_600  # 2025-01-01: fixed so model lists are stable
SSE = "text/event-stream; charset=utf-8"

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

_MESSAGES = {
    "429": (
        "rate_limit_exceeded",
        "requests",
        "Rate limit reached for requests on the simulator. Please try again in {retry}s.",
    ),
    "500": (
        None,
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
    ),
    "503": (None, "server_error", "The engine is currently overloaded, please try again later."),
}


def _dumps(payload: object) -> bytes:
    return _encode(payload).encode("utf-8")


def _error(message: str, type_: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _headers() -> list[tuple[str, str]]:
    return [
        ("x-request-id", "req_" + uuid.uuid4().hex),
        ("openai-version", "2020-10-01"),
        ("openai-processing-ms", "1"),
    ]


def _usage(scenario: Scenario, fault: str | None) -> dict[str, Any]:
    prompt, completion = (
        (0, 0) if fault == "zero_usage" else (scenario.input_tokens, scenario.output_tokens)
    )
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


async def _check_auth(ex: Exchange, headers: list[tuple[str, str]]) -> bool:
    scheme, _, key = ex.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and ex.key_valid(key.strip()):
        return True
    message = (
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
        if key
        else "You didn't provide an API key. You need to provide your API key in an "
        "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    )
    await ex.respond_json(401, _error(message, "invalid_request_error", "invalid_api_key"), headers)
    return False


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": "gatehouse-sim"}


async def list_models(ex: Exchange) -> None:
    headers = _headers()
    if await _check_auth(ex, headers):
        await ex.respond_json(
            200, {"object": "list", "data": [_model_object(m) for m in MODELS]}, headers
        )


async def retrieve_model(ex: Exchange) -> None:
    headers = _headers()
    if not await _check_auth(ex, headers):
        return
    model_id = ex.path.rsplit("/", 1)[1]
    if model_id in MODELS:
        await ex.respond_json(200, _model_object(model_id), headers)
    else:
        await ex.respond_json(404, _not_found(model_id), headers)


def _not_found(model: str) -> dict:
    message = f"The model `{model}` does not exist or you do not have access to it."
    return _error(message, "invalid_request_error", "model_not_found", "model")


def _max_tokens(payload: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = payload.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


async def chat_completions(ex: Exchange) -> None:
    headers = _headers()
    if not await _check_auth(ex, headers):
        return
    payload = await ex.read_json_object()
    if payload is None:
        message = "We could not parse the JSON body of your request."
        await ex.respond_json(400, _error(message, "invalid_request_error", None), headers)
        return
    model = payload.get("model")
    messages = payload.get("messages")
    if not isinstance(model, str) or not model:
        message = "you must provide a model parameter"
        await ex.respond_json(400, _error(message, "invalid_request_error", None), headers)
        return
    if not isinstance(messages, list) or not messages:
        message = "Missing required parameter: 'messages'."
        error = _error(message, "invalid_request_error", "missing_required_parameter", "messages")
        await ex.respond_json(400, error, headers)
        return
    if model not in MODELS:
        await ex.respond_json(404, _not_found(model), headers)
        return
    try:
        scenario = ex.plan(payload, None, _max_tokens(payload))
    except DirectiveError as err:
        await ex.respond_json(400, _error(str(err), "invalid_request_error", None), headers)
        return

    fault = ex.fault(scenario)
    stream = payload.get("stream") is True
    status_fault = "503" if fault == "overloaded" else fault
    if status_fault == "inband_error" and not stream:
        status_fault = "500"
    if status_fault in _MESSAGES:
        code, type_, message = _MESSAGES[status_fault]
        if status_fault == "429":
            headers.append(("retry-after", scenario.retry_after_header))
        body = _error(message.format(retry=scenario.retry_after_header), type_, code)
        await ex.respond_json(int(status_fault), body, headers)
        return

    if stream:
        options = payload.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        await _stream(ex, model, scenario, fault, include_usage, headers)
    else:
        await _complete(ex, model, scenario, fault, headers)


async def _complete(
    ex: Exchange, model: str, scenario: Scenario, fault: str | None, headers: list
) -> None:
    await ex.sleep(scenario.total_delay(fault))
    if fault == "stall":
        await ex.stall()
        return
    body: dict[str, Any] = {
        "id": "chatcmpl-" + uuid.uuid4().hex[:29],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": scenario.text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "length" if scenario.truncated else "stop",
            }
        ],
        "service_tier": "default",
        "system_fingerprint": "fp_sim",
    }
    if fault != "no_usage":
        body["usage"] = _usage(scenario, fault)
    raw = _dumps(body)
    if fault == "reset":
        await ex.start(200, "application/json", headers)
        await ex.frame(raw[: len(raw) // 2])
        await ex.abort()
    if fault == "malformed":
        raw = raw[: len(raw) // 2]
    await ex.respond(200, raw, "application/json", headers)


async def _stream(
    ex: Exchange,
    model: str,
    scenario: Scenario,
    fault: str | None,
    include_usage: bool,
    headers: list,
) -> None:
    include_usage = include_usage and fault != "no_usage"
    await ex.start(200, SSE, [*headers, ("cache-control", "no-cache")])

    head: dict[str, Any] = {
        "id": "chatcmpl-" + uuid.uuid4().hex[:29],
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_sim",
    }
    # With include_usage the real API puts `"usage": null` on every chunk but the last.
    tail = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return b"data: " + _dumps({**head, "choices": [choice], **tail}) + b"\n\n"

    # Content frames are the hot path: pre-render everything around the text once.
    prefix, _, suffix = chunk({"content": "\0"}, None).partition(b'"\\u0000"')

    def render(piece: str) -> bytes:
        return prefix + _dumps(piece) + suffix

    await ex.sleep(scenario.first_delay(fault))
    await ex.frame(chunk({"role": "assistant", "content": "", "refusal": None}, None))
    pieces = scenario.pieces_before(fault, MIDSTREAM_FAULTS)
    await ex.frames(pieces, render, scenario.delay)

    if fault == "inband_error":
        message = "The server had an error while processing your request. Sorry about that!"
        await ex.finish(b"data: " + _dumps(_error(message, "server_error", None)) + b"\n\n")
        return
    if fault == "reset":
        await ex.abort(SSE)
    if fault == "malformed":
        await ex.finish(prefix + b'"unterminated \n\n')
        return
    if fault == "stall":
        await ex.stall(SSE)
        return

    await ex.frame(chunk({}, "length" if scenario.truncated else "stop"))
    if include_usage:
        usage_chunk = {**head, "choices": [], "usage": _usage(scenario, fault)}
        await ex.frame(b"data: " + _dumps(usage_chunk) + b"\n\n")
    await ex.finish(b"data: [DONE]\n\n")
