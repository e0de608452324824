"""The gateway under the same admission and settlement as chats: budgets and rate limits refuse
before any provider call, and every call settles into the ledger exactly once — also when the
client hangs up mid-stream."""

from __future__ import annotations

import time
from decimal import Decimal

import openai
import pytest

from providers.models import CostPolicy, PriceOverride, SpendingLimit, UsageRecord
from tests.gateway.conftest import MODELS, PROVIDERS, request_id_of, wait_for_records

pytestmark = pytest.mark.django_db(transaction=True)

COMPLETIONS = "/openai/v1/chat/completions"


def _hello(client: openai.OpenAI, **kwargs):
    return client.chat.completions.create(
        model="openai/sim-gpt", messages=[{"role": "user", "content": "hello"}], **kwargs
    )


# --- Client gone ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_client_hanging_up_mid_stream_is_billed_for_what_was_produced(
    creds, alice_client, provider
):
    stream = alice_client.chat.completions.create(
        model=f"{provider}/{MODELS[provider]}",
        messages=[{"role": "user", "content": "go on sim:chunks=100 sim:delay=0.05"}],
        stream=True,
    )
    received = []
    for chunk in stream:
        received.append(chunk)
        if len(received) == 6:  # the role chunk and 5 words
            break
    stream.close()

    request_id = request_id_of(received[0].id)
    (record,) = wait_for_records(1, request_id=request_id)
    assert (record.status, record.error_code) == ("cancelled", "client_disconnected")
    assert record.chat_id is None
    assert record.input_tokens > 0
    # At least what the client saw: the provider's own count when the rest could still be
    # read, else an estimate from the text received.
    assert record.output_tokens >= 5
    assert record.tokens_estimated or record.output_tokens == 100
    time.sleep(0.5)
    assert UsageRecord.objects.filter(request_id=request_id).count() == 1


def test_a_client_hanging_up_before_the_first_token_pays_no_output(
    creds, client_for, alice_membership
):
    client = client_for(alice_membership).with_options(timeout=1)

    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model="openai/sim-gpt",
            messages=[{"role": "user", "content": "wait sim:first_token_delay=3"}],
            stream=True,
        )

    (record,) = wait_for_records(1)
    assert (record.status, record.error_code) == ("cancelled", "client_disconnected")
    assert record.output_tokens == 0


def test_a_client_hanging_up_on_a_whole_completion_still_pays_for_it(
    creds, client_for, alice_membership
):
    client = client_for(alice_membership).with_options(timeout=1)

    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model="anthropic/sim-claude",
            messages=[{"role": "user", "content": "wait sim:first_token_delay=2"}],
        )

    # The provider call went on and was answered: the ledger has its real usage.
    (record,) = wait_for_records(1, timeout=20)
    assert (record.status, record.error_code) == ("cancelled", "client_disconnected")
    assert (record.output_tokens, record.tokens_estimated) == (12, False)


# --- Budgets ----------------------------------------------------------------------------------


@pytest.fixture
def priced(acme):
    """sim-gpt at 1 USD per million tokens, in and out."""
    return PriceOverride.objects.create(
        organization=acme,
        provider="openai",
        model="sim-gpt",
        input_per_mtok=Decimal(1),
        output_per_mtok=Decimal(1),
    )


def test_a_spent_budget_refuses_with_402_before_calling_the_provider(
    creds, priced, acme, alice_client, sim_server
):
    # Room for one call of up to 10 output tokens (worst case 12e-6 USD), not two.
    SpendingLimit.objects.create(
        organization=acme, scope="organization", period="day", amount=Decimal("0.00002")
    )
    first = _hello(alice_client, max_tokens=10)
    calls = sim_server.app.stats[COMPLETIONS]

    with pytest.raises(openai.APIStatusError) as caught:
        _hello(alice_client, max_tokens=10)

    assert caught.value.status_code == 402
    assert caught.value.code == "budget_exceeded"
    assert caught.value.type == "insufficient_quota"
    assert "Budget exceeded" in caught.value.message
    assert caught.value.response.headers["x-gatehouse-limit"]
    assert sim_server.app.stats[COMPLETIONS] == calls
    (record,) = wait_for_records(1)  # settled as the answer went out
    assert record.request_id == request_id_of(first.id)
    assert record.cost == Decimal("0.000011")  # 1 input + 10 output tokens


def test_a_member_budget_refuses_streams_too(creds, priced, bob_membership, bob_client):
    SpendingLimit.objects.create(
        organization=bob_membership.organization,
        scope="member",
        membership=bob_membership,
        period="month",
        amount=Decimal(0),
    )

    with pytest.raises(openai.APIStatusError) as caught:
        _hello(bob_client, stream=True)

    assert (caught.value.status_code, caught.value.code) == (402, "budget_exceeded")
    assert UsageRecord.objects.count() == 0


# --- Rate limits ------------------------------------------------------------------------------


def _not_at_a_minute_boundary() -> None:
    # Fixed one-minute windows: two calls straddling a boundary would both be admitted.
    if time.time() % 60 > 57:
        time.sleep(60 - time.time() % 60 + 0.1)


def test_a_rate_limit_refuses_with_429_and_retry_after(creds, acme, alice_client, sim_server):
    CostPolicy.objects.create(organization=acme, member_requests_per_minute=1)
    _not_at_a_minute_boundary()
    _hello(alice_client)
    calls = sim_server.app.stats[COMPLETIONS]

    with pytest.raises(openai.RateLimitError) as caught:
        _hello(alice_client, stream=True)

    assert caught.value.code == "rate_limited"
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
    assert sim_server.app.stats[COMPLETIONS] == calls
    assert len(wait_for_records(1)) == 1
    assert UsageRecord.objects.count() == 1
