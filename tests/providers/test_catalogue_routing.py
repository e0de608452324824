"""The provider list, model listing, and routing to ordered candidates."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from providers.models import ModelSetting
from providers.routing import RouteError, resolve
from tests.conftest import make_credential


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


def test_providers_list_every_kind_with_models(bob_api, acme_credentials) -> None:
    listing = {p["name"]: p for p in bob_api.get("/api/providers").json()}
    assert set(listing) == {"openai", "anthropic", "ollama", "compatible"}
    assert listing["anthropic"]["kind"] == "anthropic"
    assert {"id": "sim-claude", "enabled": True} in listing["anthropic"]["models"]
    assert listing["openai"]["default_model"] == "sim-gpt"
    assert all(p["error"] is None for p in listing.values())


def test_a_failing_provider_is_an_entry_with_an_error_not_a_failure(
    bob_api, acme, acme_credentials, sim_url
) -> None:
    make_credential(acme, sim_url, "openai", provider="broken", name="b", api_key="nope-123456")
    listing = {p["name"]: p for p in bob_api.get("/api/providers").json()}
    assert listing["broken"]["error"]
    assert listing["broken"]["models"] == []
    assert listing["openai"]["error"] is None


def test_legacy_routes_answer_too(bob_api, acme_credentials) -> None:
    assert {p["name"] for p in bob_api.get("/providers").json()} >= {"openai"}
    body = bob_api.get("/providers/anthropic/models").json()
    assert body["provider"] == "anthropic"
    assert [m["id"] for m in body["models"]] == ["sim-claude", "sim-claude-haiku"]
    assert bob_api.get("/providers/nope/models").status_code == 404


def test_outsider_sees_none_of_acmes_providers(charlie_api, acme_credentials) -> None:
    assert charlie_api.get("/api/providers").json() == []


def test_resolve_orders_fallbacks_by_priority(acme, acme_credentials, sim_url) -> None:
    backup = make_credential(acme, sim_url, "openai", name="backup", priority=200)
    primary = acme_credentials["openai"]
    route = resolve(organization=acme, provider="openai", model="sim-gpt")
    assert [c.credential_id for c in route.candidates] == [primary.pk, backup.pk]
    assert route.limits.temperature_range == (0.0, 2.0)


def test_resolve_uses_the_organisations_default(acme, acme_credentials) -> None:
    route = resolve(organization=acme, provider=None, model=None)
    assert (route.provider, route.model) == ("openai", "sim-gpt")


def test_resolve_finds_the_provider_of_a_bare_model(acme, acme_credentials) -> None:
    route = resolve(organization=acme, provider=None, model="sim-claude")
    assert route.provider == "anthropic"
    assert route.limits.temperature_range == (0.0, 1.0)


@pytest.mark.parametrize(
    ("provider", "model", "code"),
    [("nope", None, "unknown_provider"), ("openai", "gpt-nope", "unknown_model")],
)
def test_resolve_refuses_unknowns(acme, acme_credentials, provider, model, code) -> None:
    with pytest.raises(RouteError) as err:
        resolve(organization=acme, provider=provider, model=model)
    assert err.value.code == code


def test_disabled_model_is_refused(acme, acme_credentials) -> None:
    ModelSetting.objects.create(
        organization=acme, provider="openai", model="sim-gpt", enabled=False
    )
    with pytest.raises(RouteError) as err:
        resolve(organization=acme, provider="openai", model="sim-gpt")
    assert err.value.code == "model_disabled"


def test_disabled_credentials_are_not_candidates(acme, acme_credentials) -> None:
    acme_credentials["openai"].enabled = False
    acme_credentials["openai"].save()
    with pytest.raises(RouteError):
        resolve(organization=acme, provider="openai", model="sim-gpt")


def test_admin_switches_models_members_cannot(alice_api, bob_api, acme_credentials) -> None:
    body = {"provider": "openai", "model": "sim-gpt-mini", "enabled": False}
    assert bob_api.post("/api/model-settings", body, format="json").status_code == 403
    assert alice_api.post("/api/model-settings", body, format="json").status_code == 201
    listing = {p["name"]: p for p in bob_api.get("/api/providers").json()}
    assert {"id": "sim-gpt-mini", "enabled": False} in listing["openai"]["models"]


def test_platform_credentials_from_the_environment(acme, settings, sim_url) -> None:
    settings.OPENAI_API_KEY = "sim-platform-key"
    settings.OPENAI_BASE_URL = sim_url + "/openai/v1"
    route = resolve(organization=acme, provider="openai", model="sim-gpt")
    assert route.candidates[0].credential_id is None
    settings.GATEHOUSE_PLATFORM_CREDENTIALS = False
    with pytest.raises(RouteError):
        resolve(organization=acme, provider="openai", model="sim-gpt")


def test_a_bare_ollama_name_means_latest(acme, acme_credentials) -> None:
    route = resolve(organization=acme, provider="ollama", model="sim-llama")
    assert route.candidates[0].credential_id == acme_credentials["ollama"].pk
    assert resolve(organization=acme, provider="ollama", model="sim-llama:latest").model == (
        "sim-llama:latest"
    )
