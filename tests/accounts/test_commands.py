"""bootstrap_demo and create_token."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import Membership, Organization, User


def _call(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_bootstrap_demo_is_idempotent_and_prints_the_login(db, settings) -> None:
    settings.DEBUG = True
    first = _call("bootstrap_demo")
    second = _call("bootstrap_demo")
    assert "demo@example.com" in first and "gatehouse-demo" in first
    assert first.splitlines()[-1] == second.splitlines()[-1]
    assert Organization.objects.filter(slug="demo").count() == 1
    user = User.objects.get(email="demo@example.com")
    assert user.check_password("gatehouse-demo")
    assert Membership.objects.get(user=user).role == Membership.Role.OWNER


def test_bootstrap_demo_refuses_production(db, settings) -> None:
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        _call("bootstrap_demo")
    assert not User.objects.filter(email="demo@example.com").exists()


def test_create_token_prints_a_working_token_on_its_last_line(alice_membership) -> None:
    token = _call("create_token", "alice@example.com", "--name", "cli").strip().splitlines()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/me").json()["current"]["organization"] == "acme"


def test_create_token_needs_org_when_ambiguous(alice, acme) -> None:
    from accounts.services import organization_create

    organization_create(name="Beta", slug="beta", owner=alice)
    with pytest.raises(CommandError, match="--org"):
        _call("create_token", "alice@example.com")
    assert _call("create_token", "alice@example.com", "--org", "beta").strip()


def test_create_token_refuses_strangers(db) -> None:
    with pytest.raises(CommandError):
        _call("create_token", "nobody@example.com")
