"""The provider list, model listing, and routing to ordered candidates."""

from __future__ import annotations

import pytest
from django.core.cache import cache, caches

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


def _listings_asked(sim_server) -> dict[str, int]:
    """How often the simulator was asked for a model listing, by path."""
    return {
        path: count
        for path, count in sim_server.app.stats.items()
        if path.endswith(("/models", "/api/tags"))
    }


def _asked_since(before: dict[str, int], sim_server) -> dict[str, int]:
    after = _listings_asked(sim_server)
    return {path: n - before.get(path, 0) for path, n in after.items() if n != before.get(path, 0)}


def test_routing_to_one_provider_reads_no_other_listing(
    acme, acme_credentials, sim_server, monkeypatch
) -> None:
    read: list[str] = []
    backend = type(caches["default"])  # Django's, counted whichever way it is read
    get, get_many = backend.get, backend.get_many

    def counting_get(self, key, default=None, version=None):
        read.append(key)
        return get(self, key, default, version=version)

    def counting_get_many(self, keys, version=None):
        read.extend(keys)
        with monkeypatch.context() as inner:  # the local-memory cache's get_many calls get
            inner.setattr(backend, "get", get)
            return get_many(self, keys, version=version)

    monkeypatch.setattr(backend, "get", counting_get)
    monkeypatch.setattr(backend, "get_many", counting_get_many)
    before = _listings_asked(sim_server)
    for _ in range(3):
        resolve(organization=acme, provider="anthropic", model="sim-claude")
    # Read and asked once, then remembered; nothing read of the openai, ollama and compatible
    # keys' listings (their credentials are not candidates).
    anthropic = acme_credentials["anthropic"]
    assert read == [f"models:cred:{anthropic.pk}:{anthropic.version}"]
    assert _asked_since(before, sim_server) == {"/anthropic/v1/models": 1}


def test_a_failing_listing_is_not_asked_again_on_every_call(
    acme, acme_credentials, sim_url, sim_server
) -> None:
    broken = make_credential(acme, sim_url, "openai", provider="broken", api_key="nope-123456")
    before = _listings_asked(sim_server)
    for _ in range(3):
        route = resolve(organization=acme, provider="broken", model="sim-gpt")
        # A credential whose listing failed may still serve the model: the call will tell.
        assert [c.credential_id for c in route.candidates] == [broken.pk]
    assert _asked_since(before, sim_server) == {"/openai/v1/models": 1}


def test_a_remembered_failure_is_forgotten_when_the_credential_changes(
    acme, acme_credentials, sim_url, sim_server
) -> None:
    broken = make_credential(acme, sim_url, "openai", provider="broken", api_key="nope-123456")
    resolve(organization=acme, provider="broken", model="sim-gpt")
    broken.set_secret("sim-test-key")
    broken.save()
    acme.refresh_from_db()  # the change bumped the organisation's settings version

    before = _listings_asked(sim_server)
    route = resolve(organization=acme, provider="broken", model="sim-gpt-mini")
    assert route.limits.max_output_tokens  # listed now: the model is known
    assert _asked_since(before, sim_server) == {"/openai/v1/models": 1}
