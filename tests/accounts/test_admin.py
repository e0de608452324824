"""The Django admin: staff only, every accounts page renders, secrets never shown."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from accounts.tokens import token_issue


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_superuser("staff@example.com", "staff-password-1")


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/accounts/user/",
        "/admin/accounts/organization/",
        "/admin/accounts/membership/",
        "/admin/accounts/apitoken/",
    ],
)
def test_admin_pages_render_for_staff(staff, acme, url) -> None:
    client = Client()
    client.force_login(staff)
    assert client.get(url).status_code == 200


def test_organisation_list_shows_member_counts(staff, acme) -> None:
    client = Client()
    client.force_login(staff)
    html = client.get("/admin/accounts/organization/").content.decode()
    assert "Acme" in html
    assert '<td class="field-member_count">2</td>' in html


def test_token_pages_never_show_hash_or_secret(staff, alice_membership) -> None:
    issued = token_issue(membership=alice_membership, name="ci")
    client = Client()
    client.force_login(staff)
    for url in ["/admin/accounts/apitoken/", f"/admin/accounts/apitoken/{issued.token.pk}/change/"]:
        html = client.get(url).content.decode()
        assert issued.token.secret_hash not in html
        assert issued.secret.split("_", 2)[2] not in html


def test_admin_refuses_non_staff(alice, acme) -> None:
    client = Client()
    client.force_login(alice)
    response = client.get("/admin/accounts/organization/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
