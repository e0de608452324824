"""REST: system prompts — personal ones, and ones shared with the organisation (admins write)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from chats.models import SystemPrompt

pytestmark = pytest.mark.django_db

URL = "/api/system-prompts"


def test_a_member_keeps_personal_prompts(bob_api: APIClient, bob) -> None:
    created = bob_api.post(URL, {"name": "Terse", "content": "Be terse."}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["shared"] is False
    assert created.json()["owner"] == "bob@example.com"
    assert SystemPrompt.objects.get().owner == bob


def test_members_see_their_own_and_the_shared_prompts(bob_api: APIClient, acme, alice, bob) -> None:
    SystemPrompt.objects.create(organization=acme, name="House style", content="...")
    SystemPrompt.objects.create(organization=acme, owner=bob, name="Bob's", content="...")
    SystemPrompt.objects.create(organization=acme, owner=alice, name="Alice's", content="...")
    names = [p["name"] for p in bob_api.get(URL).json()["results"]]
    assert names == ["Bob's", "House style"]


def test_only_admins_create_shared_prompts(alice_api: APIClient, bob_api: APIClient) -> None:
    body = {"name": "House", "content": "Shared.", "shared": True}
    refused = bob_api.post(URL, body, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admin_required"
    assert not SystemPrompt.objects.exists()
    created = alice_api.post(URL, body, format="json")
    assert created.status_code == 201
    assert created.json()["shared"] is True and created.json()["owner"] is None


def test_members_cannot_edit_or_delete_shared_prompts(bob_api: APIClient, acme) -> None:
    prompt = SystemPrompt.objects.create(organization=acme, name="House", content="Shared.")
    assert bob_api.patch(f"{URL}/{prompt.pk}", {"content": "x"}, format="json").status_code == 403
    assert bob_api.delete(f"{URL}/{prompt.pk}").status_code == 403
    prompt.refresh_from_db()
    assert prompt.content == "Shared."


def test_admins_edit_shared_prompts(alice_api: APIClient, acme) -> None:
    prompt = SystemPrompt.objects.create(organization=acme, name="House", content="Shared.")
    response = alice_api.patch(f"{URL}/{prompt.pk}", {"content": "New."}, format="json")
    assert response.status_code == 200
    prompt.refresh_from_db()
    assert prompt.content == "New."


def test_a_new_default_replaces_the_old_one(bob_api: APIClient, acme, bob) -> None:
    old = SystemPrompt.objects.create(
        organization=acme, owner=bob, name="Old", content=".", is_default=True
    )
    body = {"name": "New", "content": ".", "is_default": True}
    assert bob_api.post(URL, body, format="json").status_code == 201
    old.refresh_from_db()
    assert old.is_default is False
    assert SystemPrompt.objects.get(is_default=True).name == "New"


def test_a_personal_default_leaves_the_shared_default_alone(bob_api: APIClient, acme) -> None:
    shared = SystemPrompt.objects.create(organization=acme, name="S", content=".", is_default=True)
    bob_api.post(URL, {"name": "Mine", "content": ".", "is_default": True}, format="json")
    shared.refresh_from_db()
    assert shared.is_default is True


def test_names_are_unique_per_owner(bob_api: APIClient, alice_api: APIClient) -> None:
    assert bob_api.post(URL, {"name": "P", "content": "."}, format="json").status_code == 201
    taken = bob_api.post(URL, {"name": "P", "content": "."}, format="json")
    assert taken.status_code == 400
    assert taken.json()["error"]["code"] == "name_taken"
    assert alice_api.post(URL, {"name": "P", "content": "."}, format="json").status_code == 201


def test_empty_content_is_refused(bob_api: APIClient) -> None:
    response = bob_api.post(URL, {"name": "P", "content": ""}, format="json")
    assert response.status_code == 400
    assert "content" in response.json()["error"]["fields"]


@pytest.mark.parametrize("outsider", ["alice_api", "charlie_api"])
@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_another_members_personal_prompt_is_a_404(
    request: pytest.FixtureRequest, acme, bob, outsider: str, method: str
) -> None:
    prompt = SystemPrompt.objects.create(organization=acme, owner=bob, name="Bob's", content="x")
    client: APIClient = request.getfixturevalue(outsider)
    response = getattr(client, method)(f"{URL}/{prompt.pk}", {"content": "y"}, format="json")
    assert response.status_code == 404
    prompt.refresh_from_db()
    assert prompt.content == "x"


def test_another_organisations_shared_prompt_is_a_404(charlie_api: APIClient, acme) -> None:
    prompt = SystemPrompt.objects.create(organization=acme, name="House", content="x")
    assert charlie_api.get(f"{URL}/{prompt.pk}").status_code == 404
    assert charlie_api.get(URL).json()["count"] == 0
