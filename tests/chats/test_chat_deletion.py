"""Deleting a chat closes the sockets open on it (code 4404, after a `chat_deleted` error frame)
and stops an answer being generated in it; sockets on other chats carry on."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from chats.models import Chat, Message
from providers.models import UsageRecord
from tests.chats.conftest import (
    api_client,
    bearer,
    connect,
    receive_until,
    rest_send,
    streaming,
)

# Both ways on PostgreSQL and Redis: in thread hops, and on the event loop (chats.services.begin).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_path")]

SLOW = "sim:chunks=400 sim:delay=0.05"  # twenty seconds of answer: never over before a cancel


@pytest.fixture
def other_chat(alice_membership) -> Chat:
    return Chat.objects.create(
        organization=alice_membership.organization, owner=alice_membership.user
    )


async def until_closed(socket: WebsocketCommunicator) -> tuple[list[dict], int]:
    """The frames a socket receives up to its close, and the close code."""
    frames = []
    while (output := await socket.receive_output(timeout=5))["type"] != "websocket.close":
        frames.append(json.loads(output["text"]))
    return frames, output["code"]


async def usage_record(request_id: str, timeout: float = 5.0) -> UsageRecord:
    deadline = time.monotonic() + timeout
    while (record := await UsageRecord.objects.filter(request_id=request_id).afirst()) is None:
        assert time.monotonic() < deadline, f"no usage record for {request_id}"
        await asyncio.sleep(0.05)
    return record


async def test_deleting_a_chat_closes_its_sockets_and_spares_other_chats(
    creds, chat: Chat, other_chat: Chat, alice_token: str, alice_api
) -> None:
    on_chat, _ = await connect(chat.pk, bearer(alice_token))
    second_tab, _ = await connect(chat.pk, bearer(alice_token))
    elsewhere, _ = await connect(other_chat.pk, bearer(alice_token))

    response = await sync_to_async(alice_api.delete)(f"/api/chats/{chat.pk}")

    assert response.status_code == 204
    for socket in (on_chat, second_tab):
        frames, code = await until_closed(socket)
        assert code == 4404
        assert [(f["type"], f["code"]) for f in frames] == [("error", "chat_deleted")]
        assert frames[0]["message"] and frames[0]["request_id"]
    assert await elsewhere.receive_nothing(timeout=0.3)
    await elsewhere.send_json_to({"type": "message", "content": "still here sim:chunks=2"})
    assert (await receive_until(elsewhere, "done", "error"))[-1]["type"] == "done"
    await elsewhere.disconnect()


async def test_deleting_a_chat_mid_answer_stops_the_answer_on_every_socket(
    creds, chat: Chat, alice_token: str, alice_api
) -> None:
    speaker, _ = await connect(chat.pk, bearer(alice_token))
    # With a watcher the speaker's answer is broadcast, and the speaker is out of the group.
    watcher, _ = await connect(chat.pk, bearer(alice_token))
    await speaker.send_json_to({"type": "message", "content": f"hi {SLOW}"})
    start = (await receive_until(speaker, "start"))[0]
    await receive_until(watcher, "token")

    assert (await sync_to_async(alice_api.delete)(f"/api/chats/{chat.pk}")).status_code == 204

    for socket in (speaker, watcher):
        frames, code = await until_closed(socket)
        assert code == 4404
        assert frames[-1]["code"] == "chat_deleted"
        assert "done" not in [f["type"] for f in frames]
    # The error frame ended the answer: its settlement sends the closed socket nothing.
    assert await speaker.receive_nothing(timeout=0.5)
    record = await usage_record(start["request_id"])
    assert (record.status, record.chat_id) == ("cancelled", chat.pk)
    assert 0 < record.output_tokens < 400  # not the whole answer
    assert not await Message.objects.filter(chat_id=chat.pk).aexists()


async def test_deleting_a_chat_mid_rest_answer_stops_it(
    creds, chat: Chat, alice_api, alice_membership
) -> None:
    sending = rest_send(alice_api, chat, f"hi {SLOW}")
    answer = await streaming(chat)
    other = await sync_to_async(api_client)(alice_membership)
    assert (await sync_to_async(other.delete)(f"/api/chats/{chat.pk}")).status_code == 204

    response = await asyncio.wait_for(sending, timeout=5)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    record = await usage_record(answer.request_id)
    assert (record.status, record.chat_id) == ("cancelled", chat.pk)


async def test_the_portals_delete_closes_the_chats_sockets(
    creds, chat: Chat, alice, alice_token: str
) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    browser = Client()
    await sync_to_async(browser.force_login)(alice)

    response = await sync_to_async(browser.post)(f"/chats/{chat.pk}/delete")

    assert response.status_code in (200, 302)
    assert not await Chat.objects.filter(pk=chat.pk).aexists()
    frames, code = await until_closed(socket)
    assert (code, frames[-1]["code"]) == (4404, "chat_deleted")


@pytest.mark.parametrize("outsider", ["charlie_api", "bob_api"])
async def test_an_outsiders_delete_closes_nothing(
    request: pytest.FixtureRequest, chat: Chat, alice_token: str, outsider: str
) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    client = await sync_to_async(request.getfixturevalue)(outsider)

    response = await sync_to_async(client.delete)(f"/api/chats/{chat.pk}")

    assert response.status_code == 404
    assert await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()
