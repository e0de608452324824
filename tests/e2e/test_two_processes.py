"""Budgets and rate limits hold across processes: two daphne servers on one PostgreSQL and one
Redis, a hundred concurrent chat requests (REST and WebSocket mixed) against one organisation."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.db import connection
from django.db.models import Sum
from websockets.asyncio.client import connect

from accounts.models import Membership
from accounts.tokens import token_issue
from chats.models import Chat
from providers.models import (
    CostPolicy,
    PriceOverride,
    Reservation,
    SpendingCounter,
    SpendingLimit,
    UsageRecord,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

REQUESTS = 100
MAX_TOKENS = 20
# Output at 1000 USD per million tokens: a call reserves 20 tokens' worth (0.02 USD) and
# costs its 12 words (0.012 USD); the limit covers about a quarter of the calls.
LIMIT = Decimal("0.30")
CONTENT = "How far is the horizon? sim:delay=0.01"


@pytest.fixture
def two_servers(live_daphne, second_daphne):
    if connection.vendor != "postgresql":
        pytest.skip("the cross-process guarantees are PostgreSQL's (set DATABASE_URL)")
    return [live_daphne, second_daphne]


@pytest.fixture
def setup(acme_credentials, alice_membership: Membership) -> dict[str, Any]:
    organization = alice_membership.organization
    PriceOverride.objects.create(
        organization=None,
        provider="openai",
        model="sim-gpt",
        input_per_mtok=Decimal(0),
        output_per_mtok=Decimal(1000),
    )
    chats = [
        Chat.objects.create(organization=organization, owner=alice_membership.user)
        for _ in range(REQUESTS)
    ]
    token = token_issue(membership=alice_membership, name="load").secret
    return {"organization": organization, "chats": chats, "token": token}


async def _rest(server: Any, chat: Chat, token: str) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        response = await client.post(
            f"/api/chats/{chat.pk}/messages",
            json={"content": CONTENT, "max_tokens": MAX_TOKENS},
            headers={"Authorization": f"Bearer {token}"},
        )
    if response.status_code in (200, 201):
        return "ok"
    return response.json()["error"]["code"]


async def _socket(server: Any, chat: Chat, token: str) -> str:
    url = f"{server.ws_url}/ws/chats/{chat.pk}/"
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(url, additional_headers=headers, open_timeout=30) as ws:
        frame = {"type": "message", "content": CONTENT, "max_tokens": MAX_TOKENS}
        await ws.send(json.dumps(frame))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if frame["type"] == "done":
                return "ok"
            if frame["type"] == "error":
                return frame["code"]


async def _fire(servers: list[Any], chats: list[Chat], token: str) -> list[str]:
    calls = []
    for index, chat in enumerate(chats):
        server = servers[index % 2]
        call = _rest if (index // 2) % 2 == 0 else _socket
        calls.append(call(server, chat, token))
    return await asyncio.gather(*calls)


def _wait_for_settlement(expected_rows: int, timeout: float = 30) -> None:
    # A socket's `done` frame is sent before its settlement transaction commits.
    deadline = time.monotonic() + timeout
    while UsageRecord.objects.count() < expected_rows and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_hard_limit_holds_across_two_processes(two_servers, setup) -> None:
    limit = SpendingLimit.objects.create(
        organization=setup["organization"],
        name="monthly",
        scope="organization",
        period="month",
        amount=LIMIT,
        hard=True,
    )
    outcomes = asyncio.run(_fire(two_servers, setup["chats"], setup["token"]))
    settled = outcomes.count("ok")
    assert set(outcomes) <= {"ok", "budget_exceeded"}, outcomes
    assert 0 < settled < REQUESTS
    _wait_for_settlement(settled)
    spend = UsageRecord.objects.aggregate(total=Sum("cost"))["total"]
    assert spend <= LIMIT
    assert UsageRecord.objects.count() == settled
    assert Reservation.objects.count() == 0
    counter = SpendingCounter.objects.get(limit=limit)
    assert counter.reserved == 0
    assert counter.spent == spend


def test_a_rate_limit_holds_across_two_processes(two_servers, setup) -> None:
    CostPolicy.objects.update_or_create(
        organization=setup["organization"], defaults={"org_requests_per_minute": 20}
    )
    # Fixed one-minute windows: start well inside one so the burst cannot straddle two.
    while time.time() % 60 > 30:
        time.sleep(0.5)
    chats = setup["chats"][:60]
    outcomes = asyncio.run(_fire(two_servers, chats, setup["token"]))
    assert outcomes.count("ok") == 20, outcomes
    assert outcomes.count("rate_limited") == 40
    _wait_for_settlement(20)
    assert UsageRecord.objects.count() == 20
