"""Which organisation a request acts in, and roles."""

from __future__ import annotations

from rest_framework.test import APIClient

from accounts.models import Membership
from accounts.services import organization_create


def _session_client(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_single_membership_is_implicit(bob, acme) -> None:
    response = _session_client(bob).get("/api/me")
    assert response.status_code == 200
    assert response.json()["current"]["organization"] == "acme"


def test_several_memberships_need_the_header(alice, acme) -> None:
    organization_create(name="Beta", slug="beta", owner=alice)
    client = _session_client(alice)
    response = client.get("/api/me")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "organization_required"
    chosen = client.get("/api/me", HTTP_X_ORGANIZATION="beta")
    assert chosen.json()["current"]["organization"] == "beta"
    assert len(chosen.json()["memberships"]) == 2


def test_foreign_organisation_is_404(alice, acme, other) -> None:
    response = _session_client(alice).get("/api/me", HTTP_X_ORGANIZATION="other")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_unknown_organisation_is_404_too(alice, acme) -> None:
    response = _session_client(alice).get("/api/me", HTTP_X_ORGANIZATION="nope")
    assert response.status_code == 404


def test_token_is_bound_to_its_organisation(alice, acme, alice_api) -> None:
    organization_create(name="Beta", slug="beta", owner=alice)
    assert alice_api.get("/api/me").json()["current"]["organization"] == "acme"
    assert alice_api.get("/api/me", HTTP_X_ORGANIZATION="beta").status_code == 404
    assert alice_api.get("/api/me", HTTP_X_ORGANIZATION="acme").status_code == 200


def test_user_without_membership_gets_404(db) -> None:
    from accounts.models import User

    loner = User.objects.create_user("loner@example.com", "pw-123456789")
    assert _session_client(loner).get("/api/me").status_code == 404


def test_roles(alice_membership, bob_membership) -> None:
    assert alice_membership.role == Membership.Role.OWNER
    assert alice_membership.is_admin
    assert not bob_membership.is_admin
    bob_membership.role = Membership.Role.ADMIN
    assert bob_membership.is_admin
