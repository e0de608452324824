"""Fixtures of the chats tests: credentials on the simulator, chats, and socket helpers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from rest_framework.test import APIClient

from accounts.models import Membership
from accounts.tokens import token_issue
from chats.models import Chat, Message
from providers import breaker
from providers.catalogue import forget_models
from providers.platform import from_stored

#: model of each provider the simulator serves (the provider names are the kinds). Ollama lists
#: its models with their tag, and routing matches the listed name.
MODELS = {"openai": "sim-gpt", "anthropic": "sim-claude", "ollama": "sim-llama:latest"}


@pytest.fixture(autouse=True)
def _fast_failures(settings: Any) -> None:
    # Fault tests retry: keep the backoff short, and never let the breaker open a route that a
    # later test (reusing credential ids on SQLite) would find closed to it.
    settings.GATEHOUSE_RETRY_BASE_DELAY = 0.01
    settings.GATEHOUSE_RETRY_MAX_DELAY = 0.05
    settings.GATEHOUSE_BREAKER_THRESHOLD = 10_000
    # The shared fixtures create three users: a fast hasher saves ~0.4 s per test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def creds(acme_credentials: dict) -> dict:
    """Acme's credentials, with no model listing or breaker state left in the cache by an
    earlier test whose credentials had the same ids."""
    for credential in acme_credentials.values():
        route = from_stored(credential)
        async_to_sync(forget_models)(route)
        for model in [*MODELS.values(), "sim-llama", "sim-gpt-mini", "sim-claude-haiku"]:
            async_to_sync(breaker.record_success)(f"{route.cache_key}:{model}")
    return acme_credentials


@pytest.fixture
def chat(alice_membership: Membership) -> Chat:
    return Chat.objects.create(
        organization=alice_membership.organization, owner=alice_membership.user
    )


@pytest.fixture
def bob_chat(bob_membership: Membership) -> Chat:
    return Chat.objects.create(organization=bob_membership.organization, owner=bob_membership.user)


@pytest.fixture
def alice_token(alice_membership: Membership) -> str:
    return token_issue(membership=alice_membership, name="ws").secret


def bearer(secret: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {secret}".encode())]


async def connect(
    chat_id: int, headers: list[tuple[bytes, bytes]]
) -> tuple[WebsocketCommunicator, bool]:
    from config.asgi import application

    communicator = WebsocketCommunicator(application, f"/ws/chats/{chat_id}/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


async def receive_until(
    communicator: WebsocketCommunicator, *types: str, timeout: float = 10.0
) -> list[dict]:
    """Frames up to and including the first whose type is one of `types`."""
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        frames.append(frame)
        if frame["type"] in types:
            return frames


async def settled(message_id: int, timeout: float = 15.0) -> Message:
    """The assistant message once its generation has settled (no longer streaming)."""
    deadline = time.monotonic() + timeout
    while True:
        message = await Message.objects.select_related("usage").aget(pk=message_id)
        if message.status != Message.Status.STREAMING:
            return message
        if time.monotonic() > deadline:
            raise AssertionError(f"message {message_id} still streaming after {timeout}s")
        await asyncio.sleep(0.05)


def text_of(frames: list[dict]) -> str:
    return "".join(f["delta"] for f in frames if f["type"] == "token")


def api_client(membership: Membership) -> APIClient:
    """A client with a token of its own: a second client of the same member, for a request made
    while another is in flight."""
    client = APIClient()
    secret = token_issue(membership=membership, name="second").secret
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def rest_send(client: APIClient, chat: Chat, content: str) -> asyncio.Future:
    """`POST /api/chats/{id}/messages` in a thread of its own, as a concurrent HTTP request would
    be; it answers when the answer is finished."""
    post = sync_to_async(_post_and_close, thread_sensitive=False)
    return asyncio.ensure_future(
        post(client, f"/api/chats/{chat.pk}/messages", {"content": content})
    )


def _post_and_close(client: APIClient, url: str, body: dict) -> Any:
    try:
        return client.post(url, body, format="json")
    finally:
        # The thread is one of asgiref's pool, which outlives the test: leave no connection.
        connections.close_all()


async def streaming(chat: Chat, timeout: float = 5.0) -> Message:
    """The chat's assistant message once its answer is being generated (its row is written by
    the time the first token is out)."""
    deadline = time.monotonic() + timeout
    answers = Message.objects.filter(chat=chat, role=Message.Role.ASSISTANT)
    while (message := await answers.filter(status=Message.Status.STREAMING).afirst()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer streaming in chat {chat.pk} after {timeout}s")
        await asyncio.sleep(0.02)
    return message
