"""Admission refusals on the chat socket: the `error` frame says which limit refused and when to
come back, as the REST refusal's headers do."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError

from chats.models import Chat, Message
from providers.budget import spending_limit_create
from providers.models import CostPolicy, PriceOverride, UsageRecord
from tests.chats.conftest import bearer, connect, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def priced(acme) -> PriceOverride:
    """sim-gpt at 1 USD per million tokens, in and out: a budget can be reserved against."""
    return PriceOverride.objects.create(
        organization=acme,
        provider="openai",
        model="sim-gpt",
        input_per_mtok=Decimal(1),
        output_per_mtok=Decimal(1),
    )


@pytest.fixture
def fresh_rate_counters(settings) -> None:
    # Per-minute counters outlive a test in Redis; start every test from zero.
    settings.GATEHOUSE_RATELIMIT_PREFIX = f"t:{uuid.uuid4().hex}"


async def test_a_budget_refusal_frame_names_the_limit_and_when_it_resets(
    creds, priced, chat: Chat, alice_token: str, acme
) -> None:
    # Room for 100 tokens' worth; the message may cost 1,000 output tokens: refused.
    tight = await sync_to_async(spending_limit_create)(
        organization=acme,
        scope="organization",
        period="day",
        amount=Decimal("0.0001"),
        hard=True,
        name="Daily cap",
    )
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await socket.send_json_to({"type": "message", "content": "hi", "max_tokens": 1000})
    (error,) = await receive_until(socket, "error", "start")
    assert (error["type"], error["code"]) == ("error", "budget_exceeded")
    assert "Daily cap" in error["message"] and error["request_id"]
    limit = error["limit"]
    assert (limit["id"], limit["name"]) == (tight.pk, "Daily cap")
    assert (limit["scope"], limit["period"]) == ("organization", "day")
    assert Decimal(limit["amount"]) == Decimal("0.0001")
    resets_at = datetime.fromisoformat(error["resets_at"])
    assert resets_at.tzinfo is not None
    assert (resets_at.hour, resets_at.minute) == (0, 0)  # the organisation's midnight (UTC)
    assert "retry_after" not in error
    assert not await Message.objects.filter(chat=chat).aexists()
    assert not await UsageRecord.objects.aexists()
    # The socket stays usable: a message within the budget goes through.
    await socket.send_json_to({"type": "message", "content": "hi sim:chunks=2", "max_tokens": 5})
    assert (await receive_until(socket, "done", "error"))[-1]["type"] == "done"
    await socket.disconnect()


async def test_a_rate_limit_refusal_frame_says_when_to_retry(
    creds, chat: Chat, alice_token: str, acme, fresh_rate_counters
) -> None:
    await CostPolicy.objects.acreate(organization=acme, member_requests_per_minute=1)
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await socket.send_json_to({"type": "message", "content": "hi sim:chunks=1"})
    assert (await receive_until(socket, "done", "error"))[-1]["type"] == "done"
    await socket.send_json_to({"type": "message", "content": "again"})
    (error,) = await receive_until(socket, "error", "start")
    assert error["code"] == "rate_limited"
    assert 0 < error["retry_after"] <= 60
    assert "1 requests per minute" in error["message"]
    assert "limit" not in error and "resets_at" not in error
    await socket.disconnect()


async def test_an_unexpected_failure_before_the_answer_is_an_error_frame(
    creds, chat: Chat, alice_token: str, monkeypatch
) -> None:
    from chats.services import messages

    def broken(**kwargs):
        raise OperationalError("the database went away")

    monkeypatch.setattr(messages, "aresolve", broken)
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await socket.send_json_to({"type": "message", "content": "hi"})
    (error,) = await receive_until(socket, "error", "start")
    assert (error["type"], error["code"]) == ("error", "internal_error")
    assert "database" not in error["message"] and error["request_id"]

    # Nothing was left behind: the chat is not locked, and the socket still works.
    monkeypatch.undo()
    await socket.send_json_to({"type": "message", "content": "again sim:chunks=2"})
    frames = await receive_until(socket, "done", "error")
    await socket.disconnect()
    assert frames[-1]["type"] == "done"
    assert await Message.objects.filter(chat=chat).acount() == 2  # the second exchange only
