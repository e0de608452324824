"""REST: chats — list, create, retrieve, update, archive, delete — and their tenant gates."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from chats.models import Chat, Message, SystemPrompt

pytestmark = pytest.mark.django_db


def test_it_creates_a_chat_and_lists_it(alice_api: APIClient) -> None:
    created = alice_api.post("/api/chats", {"title": "Trip"}, format="json")
    assert created.status_code == 201, created.json()
    listed = alice_api.get("/api/chats").json()
    assert [c["title"] for c in listed["results"]] == ["Trip"]
    assert listed["results"][0]["id"] == created.json()["id"]


def test_list_is_newest_first_and_paginated(alice_api: APIClient) -> None:
    for n in range(5):
        alice_api.post("/api/chats", {"title": f"chat {n}"}, format="json")
    first = alice_api.get("/api/chats?page_size=2").json()
    assert first["count"] == 5
    assert [c["title"] for c in first["results"]] == ["chat 4", "chat 3"]
    assert first["next"] is not None
    last = alice_api.get("/api/chats?page_size=2&page=3").json()
    assert [c["title"] for c in last["results"]] == ["chat 0"]
    assert last["next"] is None


def test_archived_chats_are_listed_apart_and_can_come_back(
    alice_api: APIClient, chat: Chat
) -> None:
    archived = alice_api.post(f"/api/chats/{chat.pk}/archive")
    assert archived.status_code == 200 and archived.json()["archived"] is True
    assert alice_api.get("/api/chats").json()["count"] == 0
    assert alice_api.get("/api/chats?archived=true").json()["count"] == 1
    alice_api.post(f"/api/chats/{chat.pk}/unarchive")
    assert alice_api.get("/api/chats").json()["count"] == 1


def test_update_changes_title_system_prompt_and_defaults(
    alice_api: APIClient, chat: Chat, creds: dict
) -> None:
    body = {
        "title": "Renamed",
        "system_prompt": "Answer in French.",
        "default_provider": "anthropic",
        "default_model": "sim-claude",
    }
    response = alice_api.patch(f"/api/chats/{chat.pk}", body, format="json")
    assert response.status_code == 200, response.json()
    chat.refresh_from_db()
    assert (chat.title, chat.system_prompt) == ("Renamed", "Answer in French.")
    assert (chat.default_provider, chat.default_model) == ("anthropic", "sim-claude")


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"default_provider": "nope"}, "default_provider", "unknown_provider"),
        (
            {"default_provider": "openai", "default_model": "gpt-9"},
            "default_model",
            "unknown_model",
        ),
    ],
)
def test_unroutable_defaults_are_refused(
    alice_api: APIClient, chat: Chat, creds: dict, body: dict, field: str, code: str
) -> None:
    response = alice_api.patch(f"/api/chats/{chat.pk}", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["fields"][field][0]["code"] == code
    chat.refresh_from_db()
    assert chat.default_provider == ""


def test_unknown_fields_are_refused(alice_api: APIClient) -> None:
    response = alice_api.post("/api/chats", {"title": "x", "owner": 3}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["owner"][0]["code"] == "unknown_field"
    assert not Chat.objects.exists()


def test_a_new_chat_starts_from_the_default_prompt(alice_api: APIClient, acme) -> None:
    SystemPrompt.objects.create(organization=acme, name="House", content="Shared.", is_default=True)
    chat = alice_api.post("/api/chats", {}, format="json").json()
    assert chat["system_prompt"] == "Shared."


def test_a_personal_default_wins_over_the_organisations(alice_api: APIClient, acme, alice) -> None:
    SystemPrompt.objects.create(organization=acme, name="House", content="Shared.", is_default=True)
    SystemPrompt.objects.create(
        organization=acme, owner=alice, name="Mine", content="Mine.", is_default=True
    )
    assert alice_api.post("/api/chats", {}, format="json").json()["system_prompt"] == "Mine."


def test_a_chat_can_copy_a_saved_prompt(alice_api: APIClient, acme, alice) -> None:
    prompt = SystemPrompt.objects.create(organization=acme, owner=alice, name="P", content="Text.")
    chat = alice_api.post("/api/chats", {"system_prompt_id": prompt.pk}, format="json").json()
    assert chat["system_prompt"] == "Text."


def test_another_members_prompt_cannot_be_copied(alice_api: APIClient, acme, bob) -> None:
    prompt = SystemPrompt.objects.create(organization=acme, owner=bob, name="P", content="Bob's")
    response = alice_api.post("/api/chats", {"system_prompt_id": prompt.pk}, format="json")
    assert response.status_code == 404
    assert not Chat.objects.exists()


def test_delete_removes_the_chat_and_its_messages(alice_api: APIClient, chat: Chat) -> None:
    Message.objects.create(chat=chat, role="user", content="hi")
    assert alice_api.delete(f"/api/chats/{chat.pk}").status_code == 204
    assert not Chat.objects.exists() and not Message.objects.exists()


def test_put_is_not_offered(alice_api: APIClient, chat: Chat) -> None:
    assert alice_api.put(f"/api/chats/{chat.pk}", {}, format="json").status_code == 405


def test_anonymous_requests_are_refused(chat: Chat) -> None:
    response = APIClient().get("/api/chats")
    assert response.status_code == 401
    assert "error" in response.json()


# --- outsiders -----------------------------------------------------------------------------


@pytest.mark.parametrize("outsider", ["charlie_api", "bob_api"])
@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("get", "", None),
        ("patch", "", {"title": "mine now"}),
        ("delete", "", None),
        ("post", "/archive", None),
        ("get", "/messages", None),
    ],
)
def test_outsiders_get_404_and_change_nothing(
    request: pytest.FixtureRequest, chat: Chat, outsider: str, method: str, suffix: str, body
) -> None:
    client: APIClient = request.getfixturevalue(outsider)
    response = getattr(client, method)(f"/api/chats/{chat.pk}{suffix}", body, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    chat.refresh_from_db()
    assert chat.title == "" and not chat.archived


def test_a_list_shows_only_the_callers_chats(
    alice_api: APIClient, chat: Chat, bob_chat: Chat, other, charlie
) -> None:
    Chat.objects.create(organization=other, owner=charlie, title="charlie's")
    assert [c["id"] for c in alice_api.get("/api/chats").json()["results"]] == [chat.pk]
