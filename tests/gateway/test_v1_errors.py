"""Every gateway error reaches the openai SDK as the right exception, status and stable code."""

from __future__ import annotations

import httpx
import openai
import pytest

from accounts.tokens import token_revoke
from providers.models import ModelSetting, UsageRecord
from tests.conftest import make_credential
from tests.gateway.conftest import request_id_of, wait_for_records

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hello"}]


def _ask(client: openai.OpenAI, content: str, model: str = "openai/sim-gpt", **kwargs):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], **kwargs
    )


# --- Authentication ---------------------------------------------------------------------------


def test_it_refuses_a_request_without_a_token(live_server_url):
    response = httpx.post(
        live_server_url + "/v1/chat/completions",
        json={"model": "openai/sim-gpt", "messages": HELLO},
    )

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json() == {
        "error": {
            "message": "An API token is required: send 'Authorization: Bearer <token>'.",
            "type": "authentication_error",
            "param": None,
            "code": "token_missing",
        }
    }


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("not-a-gatehouse-token", "token_malformed"),
        ("gh_abcdefghij_" + "x" * 40, "token_invalid"),
    ],
)
def test_it_refuses_a_bad_token_with_its_code(client_for, token, code):
    client = client_for(token=token)

    with pytest.raises(openai.AuthenticationError) as caught:
        _ask(client, "hello")

    assert caught.value.status_code == 401
    assert caught.value.code == code


def test_it_refuses_a_revoked_token(client_for, creds, alice_membership):
    from accounts.tokens import token_issue

    issued = token_issue(membership=alice_membership, name="soon revoked")
    token_revoke(token=issued.token)

    with pytest.raises(openai.AuthenticationError) as caught:
        client_for(token=issued.secret).models.list()

    assert caught.value.code == "token_revoked"


def test_an_outsider_cannot_use_another_organisation_s_models(creds, charlie_client):
    with pytest.raises(openai.NotFoundError) as caught:
        _ask(charlie_client, "hello")

    assert caught.value.code == "unknown_provider"
    assert UsageRecord.objects.count() == 0
    with pytest.raises(openai.NotFoundError):
        _ask(charlie_client, "hello", model="sim-gpt")


# --- The request ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "code"),
    [
        ("openai/sim-nope", "unknown_model"),
        ("sim-nope", "unknown_model"),
        ("nowhere/sim-gpt", "unknown_provider"),
    ],
)
def test_an_unknown_model_is_a_404(creds, alice_client, model, code):
    with pytest.raises(openai.NotFoundError) as caught:
        _ask(alice_client, "hello", model=model)

    assert caught.value.code == code
    assert caught.value.param == "model"


def test_a_disabled_model_is_a_404(creds, alice_client, acme):
    ModelSetting.objects.create(
        organization=acme, provider="anthropic", model="sim-claude", enabled=False
    )

    with pytest.raises(openai.NotFoundError) as caught:
        _ask(alice_client, "hello", model="anthropic/sim-claude")

    assert caught.value.code == "model_disabled"


@pytest.mark.parametrize(
    ("kwargs", "code", "param"),
    [
        ({"temperature": 3}, "invalid", "temperature"),
        ({"top_p": -0.5}, "invalid", "top_p"),
        ({"max_tokens": 0}, "invalid", "max_tokens"),
        ({"max_tokens": 10_000_000}, "invalid", "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "invalid", "stop"),
        ({"n": 2}, "unsupported_parameter", "n"),
        ({"logprobs": True}, "unsupported_parameter", "logprobs"),
        ({"response_format": {"type": "json_object"}}, "unsupported_parameter", None),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            "unsupported_parameter",
            "tools",
        ),
        ({"extra_body": {"frobnicate": 1}}, "unknown_parameter", "frobnicate"),
        ({"extra_body": {"api_base": "http://evil.example"}}, "forbidden_parameter", "api_base"),
        ({"extra_body": {"api_key": "sk-mine"}}, "forbidden_parameter", "api_key"),
        ({"extra_body": {"extra_headers": {"x": "y"}}}, "forbidden_parameter", "extra_headers"),
    ],
)
def test_an_invalid_request_is_a_400_naming_the_field(creds, alice_client, kwargs, code, param):
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(alice_client, "hello", **kwargs)

    assert caught.value.code == code
    if param is not None:
        assert caught.value.param == param
    assert UsageRecord.objects.count() == 0


def test_unsupported_messages_are_a_400(creds, alice_client):
    with pytest.raises(openai.BadRequestError) as caught:
        alice_client.chat.completions.create(
            model="openai/sim-gpt",
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}],
                }
            ],
        )
    assert caught.value.code == "unsupported_parameter"

    with pytest.raises(openai.BadRequestError) as caught:
        alice_client.chat.completions.create(
            model="openai/sim-gpt",
            messages=[{"role": "tool", "content": "42", "tool_call_id": "c1"}],
        )
    assert caught.value.param == "messages[0].role"


def test_a_body_that_is_not_json_is_a_400(creds, live_server_url, alice_client):
    response = httpx.post(
        live_server_url + "/v1/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {alice_client.api_key}"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_the_wrong_method_is_a_405(live_server_url, alice_client):
    response = httpx.get(
        live_server_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {alice_client.api_key}"},
    )

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


# --- The provider -----------------------------------------------------------------------------


def test_a_provider_rate_limit_is_a_429_with_retry_after(creds, alice_client):
    # The provider asks for 30 s, more than the retry layer waits: no retry, the client decides.
    with pytest.raises(openai.RateLimitError) as caught:
        _ask(alice_client, "hello sim:fault=429 sim:retry_after=30")

    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limited"
    assert caught.value.response.headers["retry-after"] == "30"
    (record,) = wait_for_records(1)
    assert (record.status, record.error_code) == ("error", "rate_limited")
    assert record.output_tokens == 0


def test_a_provider_outage_is_a_503(creds, alice_client):
    with pytest.raises(openai.InternalServerError) as caught:
        _ask(alice_client, "hello sim:fault=500")

    assert caught.value.status_code == 503
    assert caught.value.code == "upstream_unavailable"
    assert caught.value.type == "server_error"


def test_an_overloaded_provider_is_a_503(creds, alice_client):
    with pytest.raises(openai.InternalServerError) as caught:
        _ask(alice_client, "hello sim:fault=overloaded", model="anthropic/sim-claude")

    assert caught.value.status_code == 503
    assert caught.value.code == "overloaded"


def test_a_rejected_credential_is_a_502(creds, alice_client, acme, sim_url):
    make_credential(acme, sim_url, "openai", name="bad key", provider="badkey", api_key="wrong")

    with pytest.raises(openai.InternalServerError) as caught:
        _ask(alice_client, "hello", model="badkey/sim-gpt")

    assert caught.value.status_code == 502
    assert caught.value.code == "auth_failed"
    assert "wrong" not in caught.value.response.text


def test_a_provider_failing_before_the_stream_is_an_http_error(creds, alice_client):
    with pytest.raises(openai.InternalServerError) as caught:
        _ask(alice_client, "hello sim:fault=503", model="ollama/sim-llama:latest", stream=True)

    assert caught.value.status_code == 503
    assert caught.value.code == "upstream_unavailable"


@pytest.mark.parametrize(
    ("provider", "model", "fault", "code"),
    [
        ("openai", "sim-gpt", "reset", "stream_interrupted"),
        ("anthropic", "sim-claude", "overloaded", "overloaded"),
        ("ollama", "sim-llama:latest", "inband_error", "upstream_unavailable"),
    ],
)
def test_a_stream_breaking_midway_ends_with_an_in_band_error(
    creds, alice_client, provider, model, fault, code
):
    stream = _ask(
        alice_client,
        f"hello sim:fault={fault} sim:after=3",
        model=f"{provider}/{model}",
        stream=True,
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)

    assert caught.value.code == code
    texts = [c.choices[0].delta.content for c in received[1:]]
    assert len(texts) == 3
    record = UsageRecord.objects.get(request_id=request_id_of(received[0].id))
    assert (record.status, record.error_code) == ("partial", code)
    assert record.tokens_estimated
    assert record.output_tokens >= 3
