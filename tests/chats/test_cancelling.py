"""Stopping an answer wherever it is generated: `POST /api/chats/{id}/cancel`, and a socket's
`cancel` frame, for answers sent over REST as well as over a socket."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest
from asgiref.sync import sync_to_async
from rest_framework.response import Response
from rest_framework.test import APIClient

from chats.models import Chat, Message
from providers.models import UsageRecord
from tests.chats.conftest import (
    api_client,
    bearer,
    connect,
    receive_until,
    rest_send,
    streaming,
    text_of,
)

# Both ways on PostgreSQL and Redis: in thread hops, and on the event loop (chats.services.begin).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_path")]

SLOW = "sim:chunks=200 sim:delay=0.05"  # ten seconds of answer: never over before a cancel


def cancel(client: APIClient, chat: Chat) -> Awaitable[Response]:
    return sync_to_async(client.post)(f"/api/chats/{chat.pk}/cancel")


async def test_the_cancel_endpoint_stops_a_rest_answer_and_it_returns_cancelled(
    creds, chat: Chat, alice_api: APIClient, alice_membership
) -> None:
    sending = rest_send(alice_api, chat, f"hi {SLOW}")
    await streaming(chat)
    await asyncio.sleep(0.4)  # a few tokens
    other = await sync_to_async(api_client)(alice_membership)

    response = await cancel(other, chat)

    assert response.status_code == 202
    sent = await asyncio.wait_for(sending, timeout=5)
    assert sent.status_code == 201, sent.json()
    body = sent.json()
    assert (body["role"], body["status"]) == ("assistant", "cancelled")
    assert 0 < len(body["content"].split()) < 50
    assert body["usage"]["estimated"] is True
    saved = await Message.objects.select_related("usage").aget(pk=body["id"])
    assert (saved.status, saved.content, saved.finish_reason) == (
        "cancelled",
        body["content"],
        "cancelled",
    )
    record = await UsageRecord.objects.aget(request_id=body["request_id"])
    assert (record.status, record.chat_id) == ("cancelled", chat.pk)
    assert 0 < record.output_tokens < 200  # not the whole answer
    # Nothing is generating any more, and the chat takes the next message.
    assert (await cancel(other, chat)).status_code == 409
    again = await rest_send(alice_api, chat, "again sim:chunks=2")
    assert (again.status_code, again.json()["status"]) == (201, "complete")


async def test_a_sockets_cancel_frame_stops_a_rest_answer(
    creds, chat: Chat, alice_api: APIClient, alice_token: str
) -> None:
    watcher, _ = await connect(chat.pk, bearer(alice_token))
    sending = rest_send(alice_api, chat, f"hi {SLOW}")
    seen = await receive_until(watcher, "start")
    for _ in range(3):
        seen += await receive_until(watcher, "token")

    await watcher.send_json_to({"type": "cancel"})

    seen += await receive_until(watcher, "done", timeout=2)
    assert (seen[-1]["status"], seen[-1]["finish_reason"]) == ("cancelled", "cancelled")
    sent = await asyncio.wait_for(sending, timeout=5)
    assert sent.status_code == 201
    body = sent.json()
    assert body["status"] == "cancelled"
    assert body["content"] == text_of(seen)
    assert 3 <= len(body["content"].split()) < 50
    record = await UsageRecord.objects.aget(request_id=body["request_id"])
    assert record.status == "cancelled"
    await watcher.disconnect()


async def test_the_cancel_endpoint_stops_an_answer_streaming_to_a_socket(
    creds, chat: Chat, alice_api: APIClient, alice_token: str
) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await socket.send_json_to({"type": "message", "content": f"hi {SLOW}"})
    frames = await receive_until(socket, "token")

    response = await cancel(alice_api, chat)

    assert response.status_code == 202
    frames += await receive_until(socket, "done", timeout=2)
    done = frames[-1]
    assert done["status"] == "cancelled"
    saved = await Message.objects.select_related("usage").aget(pk=done["message_id"])
    assert (saved.status, saved.content) == ("cancelled", text_of(frames))
    assert saved.usage.status == "cancelled"
    assert (await cancel(alice_api, chat)).status_code == 409
    await socket.disconnect()


def test_a_cancel_with_nothing_generating_is_a_409(alice_api: APIClient, chat: Chat) -> None:
    response = alice_api.post(f"/api/chats/{chat.pk}/cancel")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "not_generating"
    assert error["message"] and error["request_id"]


@pytest.mark.parametrize("outsider", ["charlie_api", "bob_api"])
async def test_outsiders_cannot_cancel_an_answer(
    request: pytest.FixtureRequest, creds, chat: Chat, alice_token: str, outsider: str
) -> None:
    client = await sync_to_async(request.getfixturevalue)(outsider)
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await socket.send_json_to({"type": "message", "content": "hi sim:chunks=20 sim:delay=0.02"})
    await receive_until(socket, "token")

    for chat_id in (chat.pk, 999_999):
        response = await sync_to_async(client.post)(f"/api/chats/{chat_id}/cancel")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    done = (await receive_until(socket, "done"))[-1]
    assert done["status"] == "complete"
    await socket.disconnect()
