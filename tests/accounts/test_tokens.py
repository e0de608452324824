"""Token authentication on the REST API: every way a token can be wrong gets a clear 401."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, Membership
from accounts.tokens import token_issue, token_revoke


def _get_me(secret: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client.get("/api/me")


def test_valid_token_authenticates_and_is_bound_to_its_organisation(alice_membership) -> None:
    issued = token_issue(membership=alice_membership, name="ci")
    response = _get_me(issued.secret)
    assert response.status_code == 200
    assert response.json()["current"]["organization"] == "acme"
    assert response.json()["email"] == "alice@example.com"


def test_only_a_hash_is_stored(alice_membership) -> None:
    issued = token_issue(membership=alice_membership, name="ci")
    row = ApiToken.objects.get(pk=issued.token.pk)
    assert issued.secret.split("_", 2)[2] not in row.secret_hash
    assert issued.secret not in str(row.__dict__)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda s: s[:-3] + "zzz", "token_invalid"),
        (lambda s: "gh_aaaaaaaaaa_" + "b" * 43, "token_invalid"),
        (lambda s: "not-a-token", "token_malformed"),
        (lambda s: s.replace("gh_", "xx_"), "token_malformed"),
    ],
)
def test_wrong_tokens_get_401_with_a_code(alice_membership, mutate, code) -> None:
    issued = token_issue(membership=alice_membership, name="ci")
    response = _get_me(mutate(issued.secret))
    assert response.status_code == 401
    body = response.json()["error"]
    assert body["code"] == code
    assert body["message"]
    assert body["request_id"]
    assert response["WWW-Authenticate"] == "Bearer"


def test_expired_token_is_refused(alice_membership) -> None:
    past = timezone.now() - timedelta(minutes=1)
    issued = token_issue(membership=alice_membership, name="old", expires_at=past)
    response = _get_me(issued.secret)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"


def test_revoked_token_is_refused(alice_membership) -> None:
    issued = token_issue(membership=alice_membership, name="gone")
    token_revoke(token=issued.token)
    response = _get_me(issued.secret)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_revoked"


def test_inactive_user_token_is_refused(alice_membership, alice) -> None:
    issued = token_issue(membership=alice_membership, name="ci")
    alice.is_active = False
    alice.save()
    assert _get_me(issued.secret).status_code == 401


def test_empty_bearer_is_refused(db) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer ")
    response = client.get("/api/me")
    assert response.status_code == 401


def test_no_credentials_get_401(db) -> None:
    response = APIClient().get("/api/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_last_used_is_recorded_without_a_write_per_request(alice_membership) -> None:
    issued = token_issue(membership=alice_membership, name="ci")
    _get_me(issued.secret)
    first = ApiToken.objects.get(pk=issued.token.pk).last_used_at
    assert first is not None
    _get_me(issued.secret)
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at == first


def test_token_api_shows_secret_once_then_never(alice_api) -> None:
    created = alice_api.post("/api/tokens", {"name": "laptop"}, format="json")
    assert created.status_code == 201
    secret = created.json()["token"]
    assert secret.startswith("gh_")
    listing = alice_api.get("/api/tokens")
    assert secret not in listing.content.decode()
    assert "laptop" in listing.content.decode()
    assert _get_me(secret).status_code == 200


def test_member_revokes_own_token_but_not_anothers(alice_membership, bob_api) -> None:
    alices = token_issue(membership=alice_membership, name="alice's")
    refused = bob_api.post(f"/api/tokens/{alices.token.pk}/revoke")
    assert refused.status_code == 404
    assert ApiToken.objects.get(pk=alices.token.pk).revoked_at is None
    mine = bob_api.post("/api/tokens", {"name": "mine"}, format="json").json()
    assert bob_api.post(f"/api/tokens/{mine['id']}/revoke").status_code == 200
    assert _get_me(mine["token"]).status_code == 401


def test_admin_revokes_a_members_token(bob_membership, alice_api) -> None:
    bobs = token_issue(membership=bob_membership, name="bob's")
    assert alice_api.post(f"/api/tokens/{bobs.token.pk}/revoke").status_code == 200
    assert _get_me(bobs.secret).status_code == 401


def test_outsider_admin_cannot_see_or_revoke(bob_membership, charlie_api) -> None:
    bobs = token_issue(membership=bob_membership, name="bob's")
    assert charlie_api.post(f"/api/tokens/{bobs.token.pk}/revoke").status_code == 404
    assert "bob's" not in charlie_api.get("/api/tokens").content.decode()
    assert Membership.objects.count() == 3
