"""Every model's admin renders for staff and refuses everyone else."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from accounts.models import User

MODELS = sorted((model._meta.app_label, model._meta.model_name) for model in admin.site._registry)


@pytest.fixture
def staff_client(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("staff@example.com", "staff-password-1"))
    return client


@pytest.mark.parametrize(("app", "model"), MODELS)
def test_every_changelist_renders_for_staff(staff_client, acme_credentials, app, model) -> None:
    response = staff_client.get(reverse(f"admin:{app}_{model}_changelist"))
    assert response.status_code == 200


@pytest.mark.parametrize(("app", "model"), MODELS)
def test_every_changelist_refuses_an_organisation_admin(alice, acme, app, model) -> None:
    client = Client()
    client.force_login(alice)  # owner of Acme, not staff
    response = client.get(reverse(f"admin:{app}_{model}_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_credential_change_page_never_shows_the_secret(staff_client, acme_credentials) -> None:
    credential = acme_credentials["openai"]
    html = staff_client.get(
        reverse("admin:providers_providercredential_change", args=[credential.pk])
    ).content.decode()
    assert "sim-test-key" not in html
    assert credential.key_hint in html
    rotate = staff_client.get(
        reverse("admin:providers_providercredential_rotate", args=[credential.pk])
    ).content.decode()
    assert "sim-test-key" not in rotate
