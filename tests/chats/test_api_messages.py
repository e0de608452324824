"""REST: sending a message (non-streaming clients), the legacy route, and every bad input."""

from __future__ import annotations

import httpx
import pytest
from django.db import OperationalError
from rest_framework.test import APIClient

from chats.models import Chat, Message
from chats.services import presence
from chats.services.inputs import MAX_CONTENT_CHARS
from providers.budget import spending_limit_create
from providers.models import ModelSetting, UsageRecord
from tests.chats.conftest import MODELS

pytestmark = pytest.mark.django_db

COMPLETION_PATHS = ("/openai/v1/chat/completions", "/anthropic/v1/messages", "/ollama/api/chat")


def provider_calls(sim_url: str) -> int:
    by_path = httpx.get(f"{sim_url}/_sim/stats").json()["by_path"]
    return sum(by_path.get(path, 0) for path in COMPLETION_PATHS)


def send(client: APIClient, chat: Chat, **body) -> httpx.Response:
    return client.post(f"/api/chats/{chat.pk}/messages", body, format="json")


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
def test_it_returns_the_finished_answer_with_usage(
    alice_api: APIClient, chat: Chat, creds: dict, provider: str
) -> None:
    response = send(
        alice_api, chat, content="hello sim:chunks=7", provider=provider, model=MODELS[provider]
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["role"] == "assistant" and body["status"] == "complete"
    assert (body["provider"], body["model"]) == (provider, MODELS[provider])
    assert len(body["content"].split()) == 7
    assert body["usage"]["output_tokens"] == 7
    assert body["usage"]["input_tokens"] == 2  # the simulator counts words
    saved = Message.objects.get(pk=body["id"])
    assert saved.credential_id == creds[provider].pk
    assert saved.usage == UsageRecord.objects.get(request_id=body["request_id"])
    assert saved.usage.chat_id == chat.pk


def test_the_user_message_is_stored_before_the_answer(
    alice_api: APIClient, chat: Chat, creds: dict
) -> None:
    send(alice_api, chat, content="hello")
    listed = alice_api.get(f"/api/chats/{chat.pk}/messages").json()["results"]
    assert [(m["role"], m["status"]) for m in listed] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert listed[0]["content"] == "hello"


def test_the_first_message_titles_the_chat_without_a_provider_call(
    alice_api: APIClient, chat: Chat, creds: dict, sim_url: str
) -> None:
    before = provider_calls(sim_url)
    send(alice_api, chat, content="Plan a weekend in Lisbon")
    assert provider_calls(sim_url) == before + 1
    chat.refresh_from_db()
    assert chat.title == "Plan a weekend in Lisbon"
    send(alice_api, chat, content="something else")
    chat.refresh_from_db()
    assert chat.title == "Plan a weekend in Lisbon"


def test_history_and_system_prompt_are_sent_as_context(
    alice_api: APIClient, chat: Chat, creds: dict
) -> None:
    chat.system_prompt = "be brief"
    chat.save()
    first = send(alice_api, chat, content="one two three sim:chunks=4").json()
    second = send(alice_api, chat, content="four five").json()
    # The simulator counts every word sent: system (2) + first turn (4) + its answer (4) + 2.
    assert first["usage"]["input_tokens"] == 2 + 4
    assert second["usage"]["input_tokens"] == 2 + 4 + 4 + 2


def test_oldest_turns_are_dropped_when_the_window_is_small(
    alice_api: APIClient, chat: Chat, creds: dict, acme
) -> None:
    for n in range(4):
        send(alice_api, chat, content=f"turn {n} " + "filler " * 60 + "sim:chunks=2")
    ModelSetting.objects.create(
        organization=acme, provider="openai", model="sim-gpt", context_window=400
    )
    last = send(alice_api, chat, content="short question", max_tokens=50).json()
    assert last["status"] == "complete"
    assert 2 < last["usage"]["input_tokens"] < 4 * 64  # some, not all, of the history


def test_the_chats_default_provider_and_model_are_used(
    alice_api: APIClient, chat: Chat, creds: dict
) -> None:
    chat.default_provider, chat.default_model = "anthropic", "sim-claude-haiku"
    chat.save()
    body = send(alice_api, chat, content="hi").json()
    assert (body["provider"], body["model"]) == ("anthropic", "sim-claude-haiku")


def test_messages_are_listed_oldest_first_and_paginated(
    alice_api: APIClient, chat: Chat, creds: dict
) -> None:
    for n in range(3):
        send(alice_api, chat, content=f"message {n} sim:chunks=1")
    page = alice_api.get(f"/api/chats/{chat.pk}/messages?page_size=4").json()
    assert page["count"] == 6
    assert [m["content"] for m in page["results"] if m["role"] == "user"] == [
        "message 0 sim:chunks=1",
        "message 1 sim:chunks=1",
    ]
    assert page["next"] is not None


# --- bad input: 400 with a field error and a stable code, and no side effect -----------------


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"content": ""}, "content", "content_empty"),
        ({"content": "   "}, "content", "content_empty"),
        ({}, "content", "content_required"),
        ({"content": "x" * (MAX_CONTENT_CHARS + 1)}, "content", "content_too_long"),
        ({"content": "hi", "temperature": "warm"}, "temperature", "invalid_type"),
        ({"content": "hi", "temperature": 2.5}, "temperature", "temperature_out_of_range"),
        ({"content": "hi", "temperature": -0.1}, "temperature", "temperature_out_of_range"),
        (
            {"content": "hi", "provider": "anthropic", "temperature": 1.5},
            "temperature",
            "temperature_out_of_range",
        ),
        ({"content": "hi", "max_tokens": 0}, "max_tokens", "max_tokens_out_of_range"),
        ({"content": "hi", "max_tokens": 10**7}, "max_tokens", "max_tokens_out_of_range"),
        ({"content": "hi", "provider": "nope"}, "provider", "unknown_provider"),
        ({"content": "hi", "model": "gpt-9"}, "model", "unknown_model"),
        ({"content": "hi", "provider": "openai", "model": "sim-claude"}, "model", "unknown_model"),
        ({"content": "hi", "api_key": "sk-mine"}, "api_key", "field_not_allowed"),
        ({"content": "hi", "base_url": "http://evil"}, "base_url", "field_not_allowed"),
        ({"content": "hi", "api_base": "http://evil"}, "api_base", "field_not_allowed"),
        ({"content": "hi", "extra_headers": {"X": "1"}}, "extra_headers", "field_not_allowed"),
        ({"content": "hi", "colour": "blue"}, "colour", "unknown_field"),
    ],
)
def test_bad_input_is_a_400_field_error_with_no_side_effect(
    alice_api: APIClient, chat: Chat, creds: dict, sim_url: str, body: dict, field: str, code: str
) -> None:
    before = provider_calls(sim_url)
    response = alice_api.post(f"/api/chats/{chat.pk}/messages", body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["fields"][field][0]["code"] == code
    assert error["request_id"]
    assert not Message.objects.exists()
    assert not UsageRecord.objects.exists()
    assert provider_calls(sim_url) == before


def test_the_content_limit_is_stated(alice_api: APIClient, chat: Chat, creds: dict) -> None:
    response = send(alice_api, chat, content="x" * (MAX_CONTENT_CHARS + 1))
    assert f"limit is {MAX_CONTENT_CHARS}" in response.json()["error"]["message"]


def test_the_max_tokens_cap_is_the_models(
    alice_api: APIClient, chat: Chat, creds: dict, acme
) -> None:
    ModelSetting.objects.create(
        organization=acme, provider="openai", model="sim-gpt", max_output_tokens=64
    )
    assert send(alice_api, chat, content="hi", max_tokens=64).status_code == 201
    refused = send(alice_api, chat, content="hi", max_tokens=65).json()["error"]
    assert refused["code"] == "max_tokens_out_of_range" and "64" in refused["message"]


# --- refusals and failures -----------------------------------------------------------------


def test_a_busy_chat_refuses_a_second_message(
    alice_api: APIClient, chat: Chat, creds: dict, sim_url: str
) -> None:
    assert presence.claim(chat_id=chat.pk, owner="another generation") is not None
    try:
        before = provider_calls(sim_url)
        response = send(alice_api, chat, content="hi")
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "busy"
        assert provider_calls(sim_url) == before
        assert not Message.objects.exists()
    finally:
        presence.lock_release(chat_id=chat.pk, owner="another generation")
    assert send(alice_api, chat, content="hi").status_code == 201


def test_a_hard_budget_refuses_before_any_provider_call(
    alice_api: APIClient, chat: Chat, creds: dict, sim_url: str, acme
) -> None:
    # The simulator's models have no price; under a hard limit that blocks by default.
    spending_limit_create(
        organization=acme, scope="organization", period="month", amount="1.00", hard=True
    )
    before = provider_calls(sim_url)
    response = send(alice_api, chat, content="hi")
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "budget_exceeded"
    assert provider_calls(sim_url) == before
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("directive", "status", "code"),
    [
        ("sim:fault=500", 503, "upstream_unavailable"),
        ("sim:fault=reset sim:after=3", 502, "stream_interrupted"),
    ],
)
def test_a_provider_failure_is_an_error_and_the_message_is_saved(
    alice_api: APIClient, chat: Chat, creds: dict, directive: str, status: int, code: str
) -> None:
    response = send(alice_api, chat, content=f"hi {directive}")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    saved = Message.objects.get(role="assistant")
    assert (saved.status, saved.error_code) == ("error", code)
    assert UsageRecord.objects.get(request_id=saved.request_id).status == "error"
    # The chat is free again.
    assert send(alice_api, chat, content="again").status_code == 201


def test_an_unexpected_failure_is_a_500_in_the_one_error_shape(
    alice_api: APIClient, chat: Chat, creds: dict, monkeypatch, caplog
) -> None:
    from chats.services import messages

    def broken(**kwargs):
        raise OperationalError("the database went away")

    monkeypatch.setattr(messages, "aresolve", broken)
    response = send(alice_api, chat, content="hi")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal_error" and "database" not in error["message"]
    assert error["request_id"] == response["X-Request-ID"]
    # The traceback is in the log, under the request id the client was given.
    assert any(error["request_id"] in r.getMessage() and r.exc_info for r in caplog.records), (
        "no log record with the traceback"
    )
    assert not Message.objects.filter(chat=chat).exists()
    monkeypatch.undo()
    assert send(alice_api, chat, content="again").status_code == 201  # the chat is free


# --- outsiders -----------------------------------------------------------------------------


@pytest.mark.parametrize("outsider", ["charlie_api", "bob_api"])
def test_outsiders_cannot_send_to_a_chat(
    request: pytest.FixtureRequest, chat: Chat, creds: dict, sim_url: str, outsider: str
) -> None:
    client: APIClient = request.getfixturevalue(outsider)
    before = provider_calls(sim_url)
    for url, body in (
        (f"/api/chats/{chat.pk}/messages", {"content": "hi"}),
        (f"/chat/{chat.pk}", {"message": "hi"}),
    ):
        response = client.post(url, body, format="json")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert not Message.objects.exists()
    assert provider_calls(sim_url) == before


# --- the original design's route ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/chat/{id}", "/chat/{id}/"])
def test_the_legacy_route_answers_with_the_response(
    alice_api: APIClient, chat: Chat, creds: dict, path: str
) -> None:
    body = {"message": "hello sim:chunks=3", "provider": "ollama", "model": MODELS["ollama"]}
    response = alice_api.post(path.format(id=chat.pk), body, format="json")
    assert response.status_code == 200, response.json()
    assert len(response.json()["response"].split()) == 3
    assert Message.objects.filter(chat=chat, role="assistant", provider="ollama").count() == 1


def test_the_legacy_route_shares_validation_and_error_shape(
    alice_api: APIClient, chat: Chat, creds: dict
) -> None:
    response = alice_api.post(f"/chat/{chat.pk}", {"message": ""}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_empty"
    response = alice_api.post(f"/chat/{chat.pk}", {"content": "hi"}, format="json")
    assert response.json()["error"]["fields"]["message"][0]["code"] == "content_required"
