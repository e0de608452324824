"""The chat socket end to end: a real daphne process, the `websockets` client library, real
provider SDKs against the simulator, for each provider kind."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from django.test import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from accounts.models import Membership
from accounts.tokens import token_issue
from chats.frames import MAX_FRAME_BYTES
from chats.models import Chat, Message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

MODELS = {"openai": "sim-gpt", "anthropic": "sim-claude", "ollama": "sim-llama:latest"}
SLOW = "sim:chunks=60 sim:delay=0.03"


@pytest.fixture
def chat(acme_credentials: dict, alice_membership: Membership) -> Chat:
    return Chat.objects.create(
        organization=alice_membership.organization, owner=alice_membership.user
    )


@pytest.fixture
def token(alice_membership: Membership) -> str:
    return token_issue(membership=alice_membership, name="e2e").secret


def _url(server: Any, chat: Chat) -> str:
    return f"{server.ws_url}/ws/chats/{chat.pk}/"


def socket(server: Any, chat: Chat, token: str, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    return connect(_url(server, chat), additional_headers=headers, open_timeout=10, **kwargs)


async def send(ws: ClientConnection, content: str, **fields: Any) -> None:
    await ws.send(json.dumps({"type": "message", "content": content, **fields}))


async def frames_until(ws: ClientConnection, *types: str, timeout: float = 15) -> list[dict]:
    frames = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        frames.append(frame)
        if frame["type"] in types:
            return frames


def text_of(frames: list[dict]) -> str:
    return "".join(f["delta"] for f in frames if f["type"] == "token")


async def settled(message_id: int, timeout: float = 20) -> Message:
    deadline = time.monotonic() + timeout
    while True:
        message = await Message.objects.select_related("usage").aget(pk=message_id)
        if message.status != "streaming":
            return message
        assert time.monotonic() < deadline, f"message {message_id} never settled"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
async def test_it_streams_an_answer_from_each_provider_kind(
    live_daphne, chat: Chat, token: str, provider: str
) -> None:
    async with socket(live_daphne, chat, token) as ws:
        await send(ws, "hello sim:chunks=8", provider=provider, model=MODELS[provider])
        frames = await frames_until(ws, "done", "error")
    start, done = frames[0], frames[-1]
    assert (start["type"], start["provider"], start["model"]) == (
        "start",
        provider,
        MODELS[provider],
    )
    assert [f["type"] for f in frames[1:-1]] == ["token"] * 8
    assert done["type"] == "done", done
    assert done["usage"] == {"input_tokens": 2, "output_tokens": 8, "estimated": False}
    saved = await settled(start["message_id"])
    assert (saved.status, saved.content) == ("complete", text_of(frames))
    assert saved.usage.output_tokens == 8


async def test_an_idle_socket_stays_open_and_usable(live_daphne, chat: Chat, token: str) -> None:
    # Longer than the channel layer's blocking pop (5 s) and redis-py 8's default read timeout.
    async with socket(live_daphne, chat, token) as ws:
        await asyncio.sleep(7)
        await send(ws, "still there? sim:chunks=2")
        frames = await frames_until(ws, "done", "error")
    assert frames[-1]["type"] == "done", frames[-1]


async def test_cancel_stops_the_stream_and_saves_the_text_so_far(
    live_daphne, chat: Chat, token: str
) -> None:
    async with socket(live_daphne, chat, token) as ws:
        await send(ws, f"hi {SLOW}")
        frames = await frames_until(ws, "token")
        frames += await frames_until(ws, "token")
        await ws.send(json.dumps({"type": "cancel"}))
        frames += await frames_until(ws, "done", timeout=2)
    assert frames[-1]["status"] == "cancelled"
    saved = await settled(frames[0]["message_id"])
    assert saved.status == "cancelled"
    assert saved.content == text_of(frames)
    assert 2 <= len(saved.content.split()) < 60


async def test_disconnect_mid_stream_saves_partial_message_and_usage(
    live_daphne, chat: Chat, token: str
) -> None:
    async with socket(live_daphne, chat, token) as ws:
        await send(ws, "hi sim:chunks=40 sim:delay=0.02")
        start = (await frames_until(ws, "start"))[0]
        await frames_until(ws, "token")
    saved = await settled(start["message_id"])
    assert saved.status == "partial"
    assert (saved.usage.output_tokens, saved.usage.tokens_estimated) == (40, False)


async def test_two_sockets_on_a_chat_both_receive_the_tokens(
    live_daphne, chat: Chat, token: str
) -> None:
    async with socket(live_daphne, chat, token) as speaker, socket(live_daphne, chat, token) as tab:
        await send(speaker, "hi sim:chunks=15 sim:delay=0.01")
        said = await frames_until(speaker, "done")
        seen = await frames_until(tab, "done")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(speaker.recv(), 0.3)  # no copies of its own tokens
    assert len([f for f in said if f["type"] == "token"]) == 15
    assert text_of(seen) == text_of(said)
    assert seen[0]["message_id"] == said[0]["message_id"]


async def test_a_provider_fault_is_an_error_frame_and_an_error_message(
    live_daphne, chat: Chat, token: str
) -> None:
    async with socket(live_daphne, chat, token) as ws:
        await send(ws, "hi sim:fault=reset sim:after=3")
        frames = await frames_until(ws, "done", "error")
    error = frames[-1]
    assert (error["type"], error["code"]) == ("error", "stream_interrupted")
    assert error["request_id"] == frames[0]["request_id"]
    saved = await settled(error["message_id"])
    assert (saved.status, saved.error_code) == ("error", "stream_interrupted")
    assert saved.content == text_of(frames)


async def test_oversized_and_malformed_frames_leave_the_socket_usable(
    live_daphne, chat: Chat, token: str
) -> None:
    oversized = json.dumps({"type": "message", "content": "x" * MAX_FRAME_BYTES})
    async with socket(live_daphne, chat, token, max_size=None) as ws:
        for frame, code in [
            (oversized, "frame_too_large"),
            ("{nope", "invalid_json"),
            ('{"type": "sing"}', "unknown_type"),
            ('{"type": "message"}', "content_required"),
        ]:
            await ws.send(frame)
            error = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert (error["type"], error["code"]) == ("error", code)
        await send(ws, "still fine sim:chunks=2")
        assert (await frames_until(ws, "done", "error"))[-1]["type"] == "done"


async def test_an_unauthenticated_handshake_is_refused(live_daphne, chat: Chat) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(_url(live_daphne, chat), open_timeout=10):
            pass
    assert refused.value.response.status_code == 403


async def test_a_foreign_origin_handshake_is_refused(live_daphne, chat: Chat, token: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with socket(live_daphne, chat, token, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403


@pytest.fixture
def browser_headers(alice, live_daphne) -> dict[str, str]:
    client = Client()
    client.force_login(alice)
    return {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}


async def test_a_browser_session_from_the_sites_origin_streams(
    live_daphne, chat: Chat, browser_headers: dict[str, str]
) -> None:
    async with connect(
        _url(live_daphne, chat),
        additional_headers=browser_headers,
        origin=live_daphne.url,
        open_timeout=10,
    ) as ws:
        await send(ws, "hi sim:chunks=3")
        assert (await frames_until(ws, "done", "error"))[-1]["type"] == "done"


async def test_a_socket_on_another_organisations_chat_is_refused(
    live_daphne, chat: Chat, other, charlie
) -> None:
    membership = await Membership.objects.aget(organization=other, user=charlie)
    from asgiref.sync import sync_to_async

    secret = (await sync_to_async(token_issue)(membership=membership, name="e2e")).secret
    with pytest.raises(InvalidStatus):
        async with socket(live_daphne, chat, secret):
            pass


# --- two server processes, one Redis ---------------------------------------------------------


async def test_a_socket_on_another_process_sees_the_stream_and_the_chat_is_busy(
    live_daphne, second_daphne, chat: Chat, token: str
) -> None:
    async with (
        socket(live_daphne, chat, token) as speaker,
        socket(second_daphne, chat, token) as tab,
    ):
        await send(speaker, "hi sim:chunks=20 sim:delay=0.03")
        said = await frames_until(speaker, "token")
        await send(tab, "me too")
        seen = await frames_until(tab, "error")
        said += await frames_until(speaker, "done")
        seen += await frames_until(tab, "done")
    # The busy error and the frames relayed from the other process may arrive in any order.
    assert [f["code"] for f in seen if f["type"] == "error"] == ["busy"]
    assert [f["message_id"] for f in seen if f["type"] == "start"] == [said[0]["message_id"]]
    assert text_of(seen) == text_of(said)
