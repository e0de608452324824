"""The upstream simulator, driven by the official SDKs (what the adapters use) and raw httpx."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import anthropic
import httpx
import httpx2
import ollama
import openai
import pytest

from providers.management.commands.simulate_upstreams import Command, base_urls
from providers.simulator.app import build_app
from providers.simulator.scenario import DirectiveError, build_scenario, parse_directives
from providers.simulator.server import SimulatorServer

KEY = "sim-test"
USER = "please tell me something nice"  # 5 words


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(api_keys=["configured-key"]) as server:
        yield server


@pytest.fixture
def oai(sim: SimulatorServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sim.url + "/openai/v1", api_key=KEY, max_retries=0)


@pytest.fixture
def claude(sim: SimulatorServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=sim.url + "/anthropic", api_key=KEY, max_retries=0)


@pytest.fixture
def llama(sim: SimulatorServer) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=sim.url + "/ollama")


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def openai_stream(client: openai.AsyncOpenAI, text: str, **kwargs) -> list:
    stream = await client.chat.completions.create(
        model="sim-gpt", messages=user(text), stream=True, **kwargs
    )
    return [chunk async for chunk in stream]


async def anthropic_events(client: anthropic.AsyncAnthropic, text: str, **kwargs) -> list:
    kwargs.setdefault("max_tokens", 100)
    stream = await client.messages.create(
        model="sim-claude", messages=user(text), stream=True, **kwargs
    )
    return [event async for event in stream]


def delta_texts(chunks: list) -> list[str]:
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


# -- scenario -----------------------------------------------------------------------------------


def test_same_request_gives_same_text_and_counts() -> None:
    first = build_scenario(["be brief", USER], USER, None)
    again = build_scenario(["be brief", USER], USER, None)
    other = build_scenario(["be brief", USER + " now"], USER + " now", None)
    assert first == again
    assert first.text != other.text
    assert (first.input_tokens, first.output_tokens) == (7, 12)
    assert first.pieces[0].endswith(" ") and not first.pieces[-1].endswith(" ")


def test_directives_parse_and_unknown_ones_are_rejected() -> None:
    assert parse_directives("hi sim:chunks=3 sim:echo sim:delay=0.5 sim:fault=reset") == {
        "chunks": 3,
        "echo": True,
        "delay": 0.5,
        "fault": "reset",
    }
    for bad in ("sim:chunkz=3", "sim:fault=explode", "sim:chunks=-1", "sim:delay=soon"):
        with pytest.raises(DirectiveError):
            parse_directives(bad)


def test_chunk_size_groups_words_and_max_tokens_cuts_words() -> None:
    scenario = build_scenario(
        ["x sim:chunks=3 sim:chunk_size=2"], "x sim:chunks=3 sim:chunk_size=2", 5
    )
    assert [len(p.split()) for p in scenario.pieces] == [2, 2, 1]
    assert scenario.output_tokens == 5 and scenario.truncated


# -- OpenAI ---------------------------------------------------------------------------------------


async def test_openai_completion_returns_text_and_usage(oai: openai.AsyncOpenAI) -> None:
    first = await oai.chat.completions.create(
        model="sim-gpt", messages=[{"role": "system", "content": "be brief"}, *user(USER)]
    )
    again = await oai.chat.completions.create(
        model="sim-gpt", messages=[{"role": "system", "content": "be brief"}, *user(USER)]
    )
    assert first.choices[0].message.content == again.choices[0].message.content
    assert len(first.choices[0].message.content.split()) == 12
    assert first.choices[0].finish_reason == "stop"
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (7, 12)
    assert first.usage.total_tokens == 19
    assert first._request_id.startswith("req_")


async def test_openai_stream_ends_with_usage_chunk_and_done(sim: SimulatorServer) -> None:
    body = {
        "model": "sim-gpt",
        "messages": user(USER + " sim:chunks=4"),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with httpx.AsyncClient() as client:
        response = await client.post(
            sim.url + "/openai/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {KEY}"},
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"].startswith("req_")
    frames = [f for f in response.text.split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    assert frames[-1] == "data: [DONE]"
    chunks = [json.loads(f.removeprefix("data: ")) for f in frames[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:5]] != [None] * 4
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 6
    assert chunks[-1]["usage"]["completion_tokens"] == 4


async def test_openai_stream_through_sdk_matches_completion(oai: openai.AsyncOpenAI) -> None:
    chunks = await openai_stream(oai, USER, stream_options={"include_usage": True})
    completion = await oai.chat.completions.create(model="sim-gpt", messages=user(USER))
    assert "".join(delta_texts(chunks)) == completion.choices[0].message.content
    assert len(delta_texts(chunks)) == 12
    assert chunks[-1].usage.completion_tokens == 12


async def test_openai_max_tokens_cuts_with_length(oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(
        model="sim-gpt", messages=user(USER), max_completion_tokens=5
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5
    chunks = await openai_stream(oai, USER, max_tokens=5)
    assert len(delta_texts(chunks)) == 5
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_openai_lists_models(oai: openai.AsyncOpenAI) -> None:
    models = [m.id async for m in oai.models.list()]
    assert models == ["sim-gpt", "sim-gpt-mini"]
    assert (await oai.models.retrieve("sim-gpt-mini")).owned_by


async def test_openai_unknown_model_is_not_found(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.chat.completions.create(model="gpt-nope", messages=user("hi"))
    assert caught.value.code == "model_not_found"


async def test_openai_wrong_key_is_401(sim: SimulatorServer) -> None:
    client = openai.AsyncOpenAI(base_url=sim.url + "/openai/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        await client.chat.completions.create(model="sim-gpt", messages=user("hi"))
    assert caught.value.code == "invalid_api_key"
    configured = openai.AsyncOpenAI(
        base_url=sim.url + "/openai/v1", api_key="configured-key", max_retries=0
    )
    assert (await configured.models.list()).data


async def test_openai_429_carries_retry_after(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await openai_stream(oai, "hi sim:fault=429 sim:retry_after=7")
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"


@pytest.mark.parametrize(("fault", "status"), [("500", 500), ("503", 503), ("overloaded", 503)])
async def test_openai_server_faults_are_status_errors(
    oai: openai.AsyncOpenAI, fault: str, status: int
) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await oai.chat.completions.create(model="sim-gpt", messages=user(f"hi sim:fault={fault}"))
    assert caught.value.status_code == status


async def test_openai_inband_error_after_chunks_raises_api_error(
    oai: openai.AsyncOpenAI,
) -> None:
    received: list[str] = []
    stream = await oai.chat.completions.create(
        model="sim-gpt", messages=user("hi sim:fault=inband_error sim:after=2"), stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            received.extend(delta_texts([chunk]))
    assert len(received) == 2
    assert caught.value.type == "server_error"
    with pytest.raises(openai.InternalServerError):  # not streamed: a plain 500
        await oai.chat.completions.create(
            model="sim-gpt", messages=user("x sim:fault=inband_error")
        )


async def test_openai_reset_surfaces_as_connection_error(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        await openai_stream(oai, "hi sim:fault=reset sim:after=1")
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(model="sim-gpt", messages=user("hi sim:fault=reset"))


async def test_openai_malformed_chunk_fails_to_decode(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(json.JSONDecodeError):
        await openai_stream(oai, "hi sim:fault=malformed")


async def test_openai_stall_hits_the_client_timeout(sim: SimulatorServer) -> None:
    client = openai.AsyncOpenAI(
        base_url=sim.url + "/openai/v1", api_key=KEY, max_retries=0, timeout=0.3
    )
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await openai_stream(client, "hi sim:fault=stall sim:after=1")
    assert time.monotonic() - started < 5


async def test_openai_usage_faults(oai: openai.AsyncOpenAI) -> None:
    chunks = await openai_stream(
        oai, "hi sim:fault=no_usage", stream_options={"include_usage": True}
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    zero = await oai.chat.completions.create(
        model="sim-gpt", messages=user("x sim:fault=zero_usage")
    )
    assert (zero.usage.prompt_tokens, zero.usage.completion_tokens) == (0, 0)
    assert zero.choices[0].message.content


async def test_unknown_directive_is_a_bad_request(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        await oai.chat.completions.create(model="sim-gpt", messages=user("hi sim:fault=boom"))


# -- Anthropic ------------------------------------------------------------------------------------


async def test_anthropic_message_returns_text_and_usage(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(
        model="sim-claude", max_tokens=100, system="be brief", messages=user(USER)
    )
    assert message.stop_reason == "end_turn"
    assert len(message.content[0].text.split()) == 12
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 12)
    assert message._request_id.startswith("req_")


async def test_anthropic_stream_sends_the_documented_events(sim: SimulatorServer) -> None:
    body = {
        "model": "sim-claude",
        "max_tokens": 100,
        "messages": user(USER + " sim:chunks=3"),
        "stream": True,
    }
    async with httpx.AsyncClient() as client:
        response = await client.post(
            sim.url + "/anthropic/v1/messages",
            json=body,
            headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    events = []
    for frame in filter(None, response.text.split("\n\n")):
        event_line, data_line = frame.split("\n")
        name, data = (
            event_line.removeprefix("event: "),
            json.loads(data_line.removeprefix("data: ")),
        )
        assert data["type"] == name
        events.append(data)
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"]["usage"]["input_tokens"] == 6
    assert events[-2]["usage"]["output_tokens"] == 3
    assert events[-2]["delta"]["stop_reason"] == "end_turn"


async def test_anthropic_stream_helper_accumulates_the_message(
    claude: anthropic.AsyncAnthropic,
) -> None:
    async with claude.messages.stream(
        model="sim-claude", max_tokens=4, messages=user(USER)
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert len(text.split()) == 4
    assert final.stop_reason == "max_tokens"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (5, 4)


async def test_anthropic_lists_models(claude: anthropic.AsyncAnthropic) -> None:
    assert [m.id async for m in claude.models.list()] == ["sim-claude", "sim-claude-haiku"]
    assert (await claude.models.retrieve("sim-claude-haiku")).display_name == "Sim Claude Haiku"


async def test_anthropic_unknown_model_is_not_found(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        await claude.messages.create(model="claude-nope", max_tokens=10, messages=user("hi"))
    assert caught.value.body["error"]["type"] == "not_found_error"


async def test_anthropic_wrong_key_is_401(sim: SimulatorServer) -> None:
    client = anthropic.AsyncAnthropic(
        base_url=sim.url + "/anthropic", api_key="sk-ant-wrong", max_retries=0
    )
    with pytest.raises(anthropic.AuthenticationError) as caught:
        await client.messages.create(model="sim-claude", max_tokens=10, messages=user("hi"))
    assert caught.value.body["error"]["type"] == "authentication_error"


async def test_anthropic_429_carries_retry_after(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        await anthropic_events(claude, "hi sim:fault=429 sim:retry_after=3")
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.body["error"]["type"] == "rate_limit_error"


async def test_anthropic_overloaded_is_529_or_a_mid_stream_error_event(
    claude: anthropic.AsyncAnthropic,
) -> None:
    with pytest.raises(anthropic.OverloadedError) as caught:
        await claude.messages.create(
            model="sim-claude", max_tokens=10, messages=user("hi sim:fault=overloaded")
        )
    assert caught.value.status_code == 529

    texts: list[str] = []
    stream = await claude.messages.create(
        model="sim-claude",
        max_tokens=100,
        messages=user("hi sim:fault=overloaded sim:after=2"),
        stream=True,
    )
    with pytest.raises(anthropic.APIStatusError) as caught:
        async for event in stream:
            if event.type == "content_block_delta":
                texts.append(event.delta.text)
    assert len(texts) == 2
    assert caught.value.status_code == 200  # the SDK reports the stream's own status
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


async def test_anthropic_inband_error_is_an_api_error_event(
    claude: anthropic.AsyncAnthropic,
) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        await anthropic_events(claude, "hi sim:fault=inband_error")
    assert caught.value.body["error"]["type"] == "api_error"
    with pytest.raises(anthropic.InternalServerError):
        await claude.messages.create(
            model="sim-claude", max_tokens=10, messages=user("hi sim:fault=500")
        )


async def test_anthropic_503_is_service_unavailable_and_max_tokens_is_required(
    claude: anthropic.AsyncAnthropic, sim: SimulatorServer
) -> None:
    with pytest.raises(anthropic.ServiceUnavailableError):
        await claude.messages.create(
            model="sim-claude", max_tokens=10, messages=user("hi sim:fault=503")
        )
    async with httpx.AsyncClient() as client:
        response = await client.post(
            sim.url + "/anthropic/v1/messages",
            json={"model": "sim-claude", "messages": user("hi")},
            headers={"x-api-key": KEY},
        )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_anthropic_reset_and_malformed_break_the_stream(
    claude: anthropic.AsyncAnthropic,
) -> None:
    # The anthropic SDK does not wrap transport errors raised while iterating a stream.
    with pytest.raises((httpx2.TransportError, anthropic.APIConnectionError)):
        await anthropic_events(claude, "hi sim:fault=reset")
    with pytest.raises(json.JSONDecodeError):
        await anthropic_events(claude, "hi sim:fault=malformed")


async def test_anthropic_stall_hits_the_client_timeout(sim: SimulatorServer) -> None:
    client = anthropic.AsyncAnthropic(
        base_url=sim.url + "/anthropic", api_key=KEY, max_retries=0, timeout=0.3
    )
    with pytest.raises((httpx2.TimeoutException, anthropic.APITimeoutError)):
        await anthropic_events(client, "hi sim:fault=stall")


async def test_anthropic_usage_faults(claude: anthropic.AsyncAnthropic) -> None:
    events = await anthropic_events(claude, "hi sim:fault=no_usage")
    assert events[0].message.usage is None
    assert events[-2].type == "message_delta" and events[-2].usage is None
    events = await anthropic_events(claude, "hi sim:fault=zero_usage")
    assert events[0].message.usage.input_tokens == 0
    assert events[-2].usage.output_tokens == 0


# -- Ollama ---------------------------------------------------------------------------------------


async def test_ollama_chat_returns_text_and_counts(llama: ollama.AsyncClient) -> None:
    response = await llama.chat(model="sim-llama", messages=user(USER))
    assert response.done and response.done_reason == "stop"
    assert len(response.message.content.split()) == 12
    assert (response.prompt_eval_count, response.eval_count) == (5, 12)
    assert response.total_duration > 0


async def test_ollama_streams_ndjson_by_default(sim: SimulatorServer) -> None:
    body = {"model": "sim-llama", "messages": user(USER + " sim:chunks=3")}  # no "stream"
    async with httpx.AsyncClient() as client:
        response = await client.post(sim.url + "/ollama/api/chat", json=body)
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["done"] for line in lines] == [False, False, False, True]
    assert lines[-1]["eval_count"] == 3 and lines[-1]["prompt_eval_count"] == 6
    assert lines[-1]["done_reason"] == "stop"


async def test_ollama_num_predict_cuts_with_length(llama: ollama.AsyncClient) -> None:
    parts = [
        part
        async for part in await llama.chat(
            model="sim-llama", messages=user(USER), stream=True, options={"num_predict": 4}
        )
    ]
    assert [p.done for p in parts] == [False] * 4 + [True]
    assert parts[-1].done_reason == "length" and parts[-1].eval_count == 4


async def test_ollama_lists_models(llama: ollama.AsyncClient) -> None:
    listed = await llama.list()
    assert [m.model for m in listed.models] == ["sim-llama:latest"]
    assert (await llama.chat(model="sim-llama:latest", messages=user("hi"))).done


async def test_ollama_unknown_model_is_404(llama: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        await llama.chat(model="llama-nope", messages=user("hi"))
    assert caught.value.status_code == 404
    assert caught.value.error == 'model "llama-nope" not found, try pulling it first'


async def test_ollama_status_faults(llama: ollama.AsyncClient, sim: SimulatorServer) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        await llama.chat(model="sim-llama", messages=user("hi sim:fault=overloaded"))
    assert caught.value.status_code == 503
    async with httpx.AsyncClient() as client:
        response = await client.post(
            sim.url + "/ollama/api/chat",
            json={"model": "sim-llama", "messages": user("hi sim:fault=429 sim:retry_after=2")},
        )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert "error" in response.json()


async def test_ollama_inband_error_line_raises_response_error(llama: ollama.AsyncClient) -> None:
    parts = []
    with pytest.raises(ollama.ResponseError) as caught:
        async for part in await llama.chat(
            model="sim-llama", messages=user("hi sim:fault=inband_error sim:after=2"), stream=True
        ):
            parts.append(part)
    assert len(parts) == 2
    assert caught.value.status_code == -1  # in-band: the SDK has no status to report


async def test_ollama_reset_malformed_and_stall(sim: SimulatorServer) -> None:
    client = ollama.AsyncClient(host=sim.url + "/ollama", timeout=0.3)

    async def drain(text: str) -> None:
        async for _ in await client.chat(model="sim-llama", messages=user(text), stream=True):
            pass

    with pytest.raises(httpx.RemoteProtocolError):
        await drain("hi sim:fault=reset")
    with pytest.raises(json.JSONDecodeError):
        await drain("hi sim:fault=malformed")
    with pytest.raises(httpx.ReadTimeout):
        await drain("hi sim:fault=stall")


async def test_ollama_no_usage_drops_the_counts(llama: ollama.AsyncClient) -> None:
    response = await llama.chat(model="sim-llama", messages=user("hi sim:fault=no_usage"))
    assert response.done and response.eval_count is None and response.prompt_eval_count is None


# -- behaviour shared by all providers ------------------------------------------------------------


async def test_echo_returns_the_message_without_directives(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, llama: ollama.AsyncClient
) -> None:
    text = "Hello,  big\nworld sim:echo sim:chunk_size=2"
    chunks = await openai_stream(oai, text)
    assert delta_texts(chunks) == ["Hello,  big\n", "world"]
    message = await claude.messages.create(model="sim-claude", max_tokens=50, messages=user(text))
    assert message.content[0].text == "Hello,  big\nworld"
    assert message.usage.output_tokens == 3
    assert (await llama.chat(model="sim-llama", messages=user(text))).message.content == (
        "Hello,  big\nworld"
    )


async def test_delays_pace_the_stream(oai: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    await openai_stream(oai, "hi sim:chunks=4 sim:delay=0.05 sim:first_token_delay=0.1")
    assert time.monotonic() - started >= 0.24  # 0.1 + 3 x 0.05, minus timer slack


async def test_slow_first_delays_the_first_token(claude: anthropic.AsyncAnthropic) -> None:
    started = time.monotonic()
    await anthropic_events(claude, "hi sim:fault=slow_first sim:first_token_delay=0.2")
    assert time.monotonic() - started >= 0.19
    client = claude.with_options(timeout=0.3)
    with pytest.raises((httpx2.TimeoutException, anthropic.APITimeoutError)):
        await anthropic_events(client, "hi sim:fault=slow_first")  # default 5 s


async def test_fail_times_fails_then_succeeds(oai: openai.AsyncOpenAI) -> None:
    text = "hi sim:fault=503 sim:fail_times=2 sim:fault_key=fail-then-ok"
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await oai.chat.completions.create(model="sim-gpt", messages=user(text))
    completion = await oai.chat.completions.create(model="sim-gpt", messages=user(text))
    assert completion.choices[0].finish_reason == "stop"


async def test_slow_first_with_fail_times_is_fast_once_the_failures_are_spent(
    oai: openai.AsyncOpenAI,
) -> None:
    impatient = oai.with_options(timeout=0.3)
    text = "hi sim:fault=slow_first sim:fail_times=1 sim:fault_key=slow-once"
    with pytest.raises(openai.APITimeoutError):
        await openai_stream(impatient, text)
    assert delta_texts(await openai_stream(impatient, text))


async def test_stats_count_provider_calls_and_reset_zeroes_them(
    sim: SimulatorServer, oai: openai.AsyncOpenAI, llama: ollama.AsyncClient
) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as client:
        assert (await client.post("/_sim/reset")).json() == {"ok": True}
        await oai.chat.completions.create(model="sim-gpt", messages=user("hi"))
        await llama.chat(model="sim-llama", messages=user("hi"))
        await llama.list()
        stats = (await client.get("/_sim/stats")).json()
        assert stats["requests"] == 3
        assert stats["by_path"] == {
            "/openai/v1/chat/completions": 1,
            "/ollama/api/chat": 1,
            "/ollama/api/tags": 1,
        }

        text = "hi sim:fault=500 sim:fail_times=1 sim:fault_key=reset-me"
        with pytest.raises(openai.InternalServerError):
            await oai.chat.completions.create(model="sim-gpt", messages=user(text))
        await oai.chat.completions.create(model="sim-gpt", messages=user(text))
        await client.post("/_sim/reset")
        assert (await client.get("/_sim/stats")).json()["requests"] == 0
        with pytest.raises(openai.InternalServerError):  # the fail counter restarted too
            await oai.chat.completions.create(model="sim-gpt", messages=user(text))


async def test_redirect_points_elsewhere(sim: SimulatorServer) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(
            sim.url + "/_sim/redirect", params={"to": sim.url + "/ollama/api/tags"}
        )
        assert response.status_code == 307
        assert response.headers["location"] == sim.url + "/ollama/api/tags"
        followed = await client.get(
            sim.url + "/_sim/redirect",
            params={"to": sim.url + "/ollama/api/tags"},
            follow_redirects=True,
        )
    assert followed.json()["models"]


async def test_app_serves_under_a_mount_prefix() -> None:
    transport = httpx.ASGITransport(app=build_app(), root_path="/_simulator")
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        response = await client.post(
            "/_simulator/ollama/api/chat",
            json={"model": "sim-llama", "messages": user("hi sim:echo"), "stream": False},
        )
    assert response.json()["message"]["content"] == "hi"


def test_stop_is_prompt_with_a_stalled_stream() -> None:
    server = SimulatorServer().start()
    body = json.dumps({"model": "sim-llama", "messages": user("hi sim:fault=stall sim:after=1")})
    request = (
        f"POST /ollama/api/chat HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    with socket.create_connection((server.host, server.port), timeout=5) as conn:
        conn.sendall(request)
        assert b"200 OK" in conn.recv(65536)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 0.9  # drained, not cut by the 1 s graceful timeout


def test_command_prints_base_urls() -> None:
    assert base_urls("127.0.0.1", 8900) == {
        "openai": "http://127.0.0.1:8900/openai/v1",
        "anthropic": "http://127.0.0.1:8900/anthropic",
        "ollama": "http://127.0.0.1:8900/ollama",
    }
    options = (
        Command()
        .create_parser("manage.py", "simulate_upstreams")
        .parse_args(["--port", "8901", "--delay", "0.1", "--first-token-delay", "0.5"])
    )
    assert (options.port, options.delay, options.first_token_delay) == (8901, 0.1, 0.5)
