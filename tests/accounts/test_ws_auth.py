"""The WebSocket stack: bearer tokens and the Origin check, with a probe consumer."""

from __future__ import annotations

import pytest
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path

from accounts.tokens import token_issue, token_revoke
from accounts.ws import websocket_stack


class WhoAmI(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        await self.send_json(
            {
                "email": getattr(user, "email", None),
                "token_error": self.scope.get("token_error"),
            }
        )


APP = websocket_stack(URLRouter([path("ws/probe/", WhoAmI.as_asgi())]))


async def _probe(headers: list[tuple[bytes, bytes]]) -> dict | None:
    communicator = WebsocketCommunicator(APP, "/ws/probe/", headers=headers)
    connected, _ = await communicator.connect()
    if not connected:
        return None
    body = await communicator.receive_json_from()
    await communicator.disconnect()
    return body


@pytest.mark.django_db(transaction=True)
async def test_bearer_token_authenticates_a_socket(alice_membership) -> None:
    from asgiref.sync import sync_to_async

    issued = await sync_to_async(token_issue)(membership=alice_membership, name="ws")
    body = await _probe([(b"authorization", f"Bearer {issued.secret}".encode())])
    assert body == {"email": "alice@example.com", "token_error": None}


@pytest.mark.django_db(transaction=True)
async def test_revoked_token_is_reported_on_the_scope(alice_membership) -> None:
    from asgiref.sync import sync_to_async

    issued = await sync_to_async(token_issue)(membership=alice_membership, name="ws")
    await sync_to_async(token_revoke)(token=issued.token)
    body = await _probe([(b"authorization", f"Bearer {issued.secret}".encode())])
    assert body["email"] is None
    assert body["token_error"] == "token_revoked"


@pytest.mark.django_db(transaction=True)
async def test_foreign_origin_is_refused() -> None:
    assert await _probe([(b"origin", b"https://evil.example")]) is None


@pytest.mark.django_db(transaction=True)
async def test_own_origin_is_accepted() -> None:
    body = await _probe([(b"origin", b"http://localhost:8000")])
    assert body is not None
    assert body["email"] is None
