"""POST /v1/chat/completions through the official openai SDK, for every provider kind."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from providers.models import UsageRecord
from tests.gateway.conftest import MODELS, PROVIDERS, request_id_of, wait_for_records

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say something nice"},
]
#: words in PROMPT: the simulator counts one input token per word
PROMPT_TOKENS = 6


@pytest.mark.parametrize("provider", PROVIDERS)
def test_it_answers_with_usage_for_every_provider_kind(creds, alice_client, provider):
    completion = alice_client.chat.completions.create(
        model=f"{provider}/{MODELS[provider]}", messages=PROMPT
    )

    assert completion.object == "chat.completion"
    assert completion.model == f"{provider}/{MODELS[provider]}"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert len(choice.message.content.split()) == 12  # the simulator's default answer
    assert choice.finish_reason == "stop"
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.completion_tokens == 12
    assert completion.usage.total_tokens == PROMPT_TOKENS + 12


@pytest.mark.parametrize("provider", PROVIDERS)
def test_it_streams_chunks_and_usage_for_every_provider_kind(creds, alice_client, provider):
    stream = alice_client.chat.completions.create(
        model=f"{provider}/{MODELS[provider]}",
        messages=PROMPT,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 12
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}
    usage = chunks[-1]
    assert usage.choices == []
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (PROMPT_TOKENS, 12)
    assert all(c.usage is None for c in chunks[:-1])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_call_is_in_the_ledger_without_a_chat(creds, alice_client, alice, provider):
    completion = alice_client.chat.completions.create(
        model=f"{provider}/{MODELS[provider]}", messages=PROMPT
    )
    stream = alice_client.chat.completions.create(
        model=f"{provider}/{MODELS[provider]}", messages=PROMPT, stream=True
    )
    chunks = list(stream)  # read to the end: the call settles as [DONE] goes out
    streamed_id = chunks[0].id

    for completion_id in (completion.id, streamed_id):
        (record,) = wait_for_records(1, request_id=request_id_of(completion_id))
        assert record.chat_id is None
        assert record.status == "ok"
        assert record.organization == creds["openai"].organization
        assert record.user == alice
        assert (record.provider, record.model) == (provider, MODELS[provider])
        assert (
            record.credential_id
            == creds["openai_compatible" if provider == "compatible" else provider].pk
        )
        assert (record.input_tokens, record.output_tokens) == (PROMPT_TOKENS, 12)
        assert not record.tokens_estimated
        assert record.latency_ms is not None
    assert UsageRecord.objects.count() == 2


def test_the_stream_is_openai_s_exact_wire_format(creds, live_server_url, alice_client):
    token = alice_client.api_key
    body = {
        "model": "openai/sim-gpt",
        "messages": [{"role": "user", "content": "hi sim:chunks=2"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST",
        live_server_url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()

    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    frames = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert len(frames) == 5  # role, 2 contents, finish, usage
    role, first, second, finish, usage = frames
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    for frame in (role, first, second, finish):
        assert frame["object"] == "chat.completion.chunk"
        assert frame["model"] == "openai/sim-gpt"
        assert frame["usage"] is None
        assert frame["choices"][0]["index"] == 0
        assert frame["choices"][0]["logprobs"] is None
    assert set(first["choices"][0]["delta"]) == {"content"}
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert len({f["id"] for f in frames}) == 1
    assert len({f["created"] for f in frames}) == 1


def test_without_include_usage_there_is_no_usage_chunk(creds, alice_client):
    chunks = list(
        alice_client.chat.completions.create(
            model="anthropic/sim-claude", messages=PROMPT, stream=True
        )
    )

    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_text_is_escaped_in_chunks(creds, alice_client):
    text = 'quote " backslash \\ tab\tünï ✓ "end"'
    stream = alice_client.chat.completions.create(
        model="openai/sim-gpt",
        messages=[{"role": "user", "content": f"{text} sim:echo"}],
        stream=True,
    )
    echoed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert echoed == text


def test_max_tokens_and_max_completion_tokens_cap_the_answer(creds, alice_client):
    capped = alice_client.chat.completions.create(
        model="ollama/sim-llama:latest", messages=PROMPT, max_tokens=3
    )
    newer = alice_client.chat.completions.create(
        model="anthropic/sim-claude", messages=PROMPT, max_completion_tokens=4
    )

    assert capped.usage.completion_tokens == 3
    assert capped.choices[0].finish_reason == "length"
    assert newer.usage.completion_tokens == 4
    assert newer.choices[0].finish_reason == "length"


def test_sampling_parameters_and_stop_are_accepted(creds, alice_client):
    completion = alice_client.chat.completions.create(
        model="openai/sim-gpt",
        messages=PROMPT,
        temperature=0.2,
        top_p=0.9,
        stop=["zzz-never"],
        seed=7,
        user="someone",
        n=1,
    )

    assert completion.usage.completion_tokens == 12


def test_content_parts_and_developer_messages_are_text(creds, alice_client):
    completion = alice_client.chat.completions.create(
        model="anthropic/sim-claude",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hello sim:echo"}]},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": [{"type": "text", "text": "again sim:echo"}]},
        ],
    )

    assert completion.choices[0].message.content == "again"


def test_a_bare_model_routes_to_the_one_provider_offering_it(creds, alice_client):
    completion = alice_client.chat.completions.create(model="sim-claude", messages=PROMPT)

    assert completion.model == "anthropic/sim-claude"
    wait_for_records(1, provider="anthropic")


def test_a_bare_model_offered_twice_goes_to_the_default_provider(creds, alice_client):
    # openai and compatible both serve sim-gpt; Acme's default provider is openai.
    completion = alice_client.chat.completions.create(model="sim-gpt", messages=PROMPT)

    assert completion.model == "openai/sim-gpt"


def test_a_bare_model_offered_twice_elsewhere_is_ambiguous(creds, alice_client, acme):
    acme.default_provider = "anthropic"
    acme.save()

    with pytest.raises(openai.BadRequestError) as caught:
        alice_client.chat.completions.create(model="sim-gpt", messages=PROMPT)

    assert caught.value.code == "ambiguous_model"
    assert "openai" in caught.value.message and "compatible" in caught.value.message
    assert UsageRecord.objects.count() == 0


def test_a_member_uses_the_gateway_like_an_owner(creds, bob_client, bob):
    completion = bob_client.chat.completions.create(model="openai/sim-gpt", messages=PROMPT)

    (record,) = wait_for_records(1, request_id=request_id_of(completion.id))
    assert record.user == bob
