"""The wire format on its own (no server): request validation edge cases, error statuses, and
stream frames that parse as the official SDK's chunk type."""

from __future__ import annotations

import json

import pytest
from openai.types.chat import ChatCompletionChunk

from providers.adapters.base import ProviderError, Usage
from providers.gateway import wire


def _parse(**fields) -> wire.ChatRequest:
    body = {"model": "openai/x", "messages": [{"role": "user", "content": "hi"}], **fields}
    return wire.parse_chat_request(json.dumps(body).encode())


def test_defaults_leave_everything_to_the_provider():
    chat = _parse()

    assert (chat.stream, chat.include_usage) == (False, False)
    assert (chat.temperature, chat.top_p, chat.max_tokens, chat.stop) == (None, None, None, None)


def test_a_single_stop_string_and_neutral_values_are_accepted():
    chat = _parse(stop="END", n=1, logprobs=False, tools=[], response_format={"type": "text"})

    assert chat.stop == ("END",)


def test_include_usage_counts_only_for_streams():
    assert not _parse(stream_options={"include_usage": True}).include_usage
    assert _parse(stream=True, stream_options={"include_usage": True}).include_usage


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_completion_tokens": 1.5}, "max_completion_tokens"),
        ({"stop": ""}, "stop"),
        ({"stream": "yes"}, "stream"),
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ],
)
def test_invalid_values_name_their_field(fields, param):
    with pytest.raises(wire.WireError) as caught:
        _parse(**fields)

    assert (caught.value.status, caught.value.code, caught.value.param) == (400, "invalid", param)


def test_a_body_that_is_not_an_object_is_invalid_json():
    with pytest.raises(wire.WireError) as caught:
        wire.parse_chat_request(b"[1, 2]")

    assert caught.value.code == "invalid_json"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("bad_request", 400),
        ("model_not_found", 404),
        ("rate_limited", 429),
        ("auth_failed", 502),
        ("stream_interrupted", 502),
        ("url_refused", 502),
        ("upstream_unavailable", 503),
        ("overloaded", 503),
        ("timeout", 504),
    ],
)
def test_provider_errors_keep_their_code_with_the_matching_status(code, status):
    error = wire.from_provider_error(ProviderError(code, retry_after=2.5))

    assert (error.status, error.code) == (status, code)
    assert error.body()["error"]["message"] == ProviderError(code).message
    if status in (429, 503):
        assert error.headers == {"Retry-After": "3"}
    else:
        assert error.headers == {}


def test_every_stream_frame_is_a_valid_sdk_chunk():
    chunks = wire.ChunkFormat(
        completion_id="chatcmpl-1", created=7, model='odd/"model"', include_usage=True
    )
    frames = [
        chunks.role(),
        chunks.content('a "quoted" line\nand ünïcode'),
        chunks.finish("length"),
        chunks.usage(Usage(3, 4)),
    ]

    parsed = []
    for frame in frames:
        assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
        parsed.append(ChatCompletionChunk.model_validate(json.loads(frame[6:])))
    assert parsed[1].choices[0].delta.content == 'a "quoted" line\nand ünïcode'
    assert parsed[2].choices[0].finish_reason == "length"
    assert parsed[3].usage.total_tokens == 7
    assert {p.model for p in parsed} == {'odd/"model"'}


def test_an_unknown_finish_reason_becomes_stop():
    assert wire.finish_reason("end_turn") == "stop"
    assert wire.finish_reason(None) == "stop"


def test_v1_skips_the_browser_middleware_but_keeps_request_ids_and_nosniff() -> None:
    """/v1 is served by config.lean: no session cookie, no CSP; a request id and nosniff."""
    import asyncio

    import httpx

    from config.asgi import application

    async def call(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            return await client.get(path)

    response = asyncio.run(call("/v1/models"))
    assert response.status_code == 401
    assert response.headers["X-Request-ID"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in response.headers
    portal = asyncio.run(call("/accounts/login/"))
    assert "Content-Security-Policy" in portal.headers
