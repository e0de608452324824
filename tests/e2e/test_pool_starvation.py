"""More clients waiting for whole answers (REST) than the server's database pool has
connections: every one is answered. The request thread used to hold its connection while it
waited, and the answer's own database work, which runs in other threads, then found the pool
empty: all of them hung until the pool's timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from django.db import connection

from accounts.models import Membership
from accounts.tokens import token_issue
from chats.models import Chat, Message
from tests.e2e.conftest import daphne_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

POOL = 6  # GATEHOUSE_DB_THREADS (4) keep one each; two are left for request threads
CLIENTS = 12


@pytest.fixture
def small_pool_server(server_env: dict[str, str], tmp_path: Any) -> Any:
    if connection.vendor != "postgresql":
        pytest.skip("the connection pool is PostgreSQL's (set DATABASE_URL)")
    env = dict(server_env, DATABASE_POOL_MAX=str(POOL), DATABASE_POOL_TIMEOUT="10")
    with daphne_server(env, tmp_path / "daphne.log") as server:
        yield server


async def _send(url: str, chat: Chat, token: str) -> tuple[int, float]:
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as client:
        response = await client.post(
            f"/api/chats/{chat.pk}/messages",
            json={"content": "Tell me slowly. sim:delay=0.02 sim:chunks=10"},
            headers={"Authorization": f"Bearer {token}"},
        )
    return response.status_code, time.monotonic() - started


def test_more_waiting_rest_clients_than_pool_connections_are_all_answered(
    small_pool_server: Any, acme_credentials: Any, alice_membership: Membership
) -> None:
    organization, user = alice_membership.organization, alice_membership.user
    chats = [Chat.objects.create(organization=organization, owner=user) for _ in range(CLIENTS)]
    token = token_issue(membership=alice_membership, name="many").secret

    async def fire() -> list[tuple[int, float]]:
        return await asyncio.gather(*(_send(small_pool_server.url, c, token) for c in chats))

    outcomes = asyncio.run(fire())
    assert [status for status, _ in outcomes] == [201] * CLIENTS, small_pool_server.log_tail()
    # Well under the pool's 10 s timeout, which is what ended the starvation before.
    assert max(seconds for _, seconds in outcomes) < 8
    answers = Message.objects.filter(chat__in=chats, role="assistant", status="complete")
    assert answers.count() == CLIENTS
