"""GET /v1/models: the models the token's organisation allows, in OpenAI's list format."""

from __future__ import annotations

import httpx
import openai
import pytest

from providers.models import ModelSetting

pytestmark = pytest.mark.django_db(transaction=True)

ACME_MODELS = {
    "openai/sim-gpt",
    "openai/sim-gpt-mini",
    "anthropic/sim-claude",
    "anthropic/sim-claude-haiku",
    "ollama/sim-llama:latest",
    "compatible/sim-gpt",
    "compatible/sim-gpt-mini",
}


def test_it_lists_the_organisation_s_models_as_provider_slash_model(creds, alice_client):
    models = list(alice_client.models.list())

    assert {m.id for m in models} == ACME_MODELS
    for model in models:
        assert model.object == "model"
        assert model.owned_by == model.id.split("/")[0]
        assert isinstance(model.created, int)


def test_it_answers_in_openai_s_list_format(creds, live_server_url, alice_client):
    response = httpx.get(
        live_server_url + "/v1/models",
        headers={"Authorization": f"Bearer {alice_client.api_key}"},
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "list"
    assert set(body["data"][0]) == {"id", "object", "created", "owned_by"}


def test_a_disabled_model_is_not_listed(creds, alice_client, acme):
    ModelSetting.objects.create(
        organization=acme, provider="openai", model="sim-gpt", enabled=False
    )

    ids = {m.id for m in alice_client.models.list()}

    assert ids == ACME_MODELS - {"openai/sim-gpt"}


def test_a_listed_model_can_be_retrieved(creds, alice_client):
    model = alice_client.models.retrieve("anthropic/sim-claude")

    assert (model.id, model.owned_by) == ("anthropic/sim-claude", "anthropic")
    with pytest.raises(openai.NotFoundError) as caught:
        alice_client.models.retrieve("anthropic/sim-nope")
    assert caught.value.code == "unknown_model"


def test_every_listed_model_answers(creds, alice_client):
    for model in alice_client.models.list():
        completion = alice_client.chat.completions.create(
            model=model.id, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert completion.model == model.id


def test_an_outsider_sees_none_of_them(creds, charlie_client):
    assert list(charlie_client.models.list()) == []
    with pytest.raises(openai.NotFoundError):
        charlie_client.models.retrieve("openai/sim-gpt")


def test_listing_needs_a_token(live_server_url):
    response = httpx.get(live_server_url + "/v1/models")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_missing"
