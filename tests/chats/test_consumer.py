"""The chat socket through channels' WebsocketCommunicator and the real ASGI stack (auth, Origin,
routing), with the simulator behind the real provider SDKs."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from accounts.models import Membership
from accounts.tokens import token_issue, token_revoke
from chats.frames import MAX_FRAME_BYTES
from chats.models import Chat, Message
from providers.models import UsageRecord
from tests.chats.conftest import (
    MODELS,
    bearer,
    connect,
    receive_until,
    settled,
    text_of,
)

# Both ways on PostgreSQL and Redis: in thread hops, and on the event loop (chats.services.begin).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_path")]

SLOW = "sim:chunks=60 sim:delay=0.03"


@pytest.fixture
def alice_cookie(alice, acme) -> list[tuple[bytes, bytes]]:
    """A browser: the session cookie and the site's own Origin."""
    client = Client()
    client.force_login(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    return [(b"cookie", cookie.encode()), (b"origin", b"http://localhost:8000")]


async def message(communicator, content: str, **fields) -> None:
    await communicator.send_json_to({"type": "message", "content": content, **fields})


# --- streaming -----------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
async def test_it_streams_start_tokens_and_done_with_usage(
    creds, chat: Chat, alice_token: str, provider: str
) -> None:
    socket, connected = await connect(chat.pk, bearer(alice_token))
    assert connected
    await message(socket, "hello sim:chunks=6", provider=provider, model=MODELS[provider])
    frames = await receive_until(socket, "done", "error")
    start, tokens, done = frames[0], frames[1:-1], frames[-1]
    assert start["type"] == "start"
    assert (start["provider"], start["model"]) == (provider, MODELS[provider])
    assert [f["type"] for f in tokens] == ["token"] * 6
    assert done["type"] == "done", done
    assert done["status"] == "complete" and done["finish_reason"] in ("stop", "end_turn")
    assert done["usage"] == {"input_tokens": 2, "output_tokens": 6, "estimated": False}
    saved = await settled(start["message_id"])
    assert saved.content == text_of(frames)
    assert saved.status == "complete"
    assert saved.credential_id == creds[provider].pk
    assert saved.usage.output_tokens == 6
    await socket.disconnect()


async def test_no_database_write_happens_per_token(creds, chat: Chat, alice_token: str) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await message(socket, f"hi {SLOW}")
    frames = await receive_until(socket, "start")
    for _ in range(5):
        await receive_until(socket, "token")
    midway = await Message.objects.aget(pk=frames[0]["message_id"])
    assert (midway.status, midway.content) == ("streaming", "")
    await socket.send_json_to({"type": "cancel"})
    await receive_until(socket, "done")
    await socket.disconnect()


async def test_a_session_cookie_from_the_sites_origin_is_accepted(
    creds, chat: Chat, alice_cookie
) -> None:
    socket, connected = await connect(chat.pk, alice_cookie)
    assert connected
    await message(socket, "hi sim:chunks=2")
    assert (await receive_until(socket, "done", "error"))[-1]["type"] == "done"
    await socket.disconnect()


# --- cancel and disconnect -----------------------------------------------------------------


async def test_cancel_stops_the_answer_and_saves_it_cancelled(
    creds, chat: Chat, alice_token: str
) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await message(socket, f"hi {SLOW}")
    frames = await receive_until(socket, "start")
    for _ in range(3):
        frames += await receive_until(socket, "token")
    await socket.send_json_to({"type": "cancel"})
    frames += await receive_until(socket, "done", timeout=2)  # long before the 1.8 s stream ends
    done = frames[-1]
    assert (done["status"], done["finish_reason"]) == ("cancelled", "cancelled")
    assert done["usage"]["estimated"] is True
    saved = await settled(done["message_id"])
    assert saved.status == "cancelled"
    assert saved.content == text_of(frames)
    assert 3 <= len(saved.content.split()) < 60
    assert saved.usage.status == "cancelled"
    await socket.disconnect()


async def test_disconnect_mid_stream_saves_partial_message_with_usage(
    creds, chat: Chat, alice_token: str
) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await message(socket, "hi sim:chunks=30 sim:delay=0.02")
    start = (await receive_until(socket, "start"))[0]
    await receive_until(socket, "token")
    await socket.disconnect()
    saved = await settled(start["message_id"])
    assert saved.status == "partial"
    # Read on to the end: the provider's own count of the tokens used is known.
    assert (saved.usage.output_tokens, saved.usage.tokens_estimated) == (30, False)
    assert len(saved.content.split()) == 30
    assert saved.usage.status == "partial"
    # The chat is free again.
    again, _ = await connect(chat.pk, bearer(alice_token))
    await message(again, "again sim:chunks=1")
    assert (await receive_until(again, "done", "error"))[-1]["type"] == "done"
    await again.disconnect()


async def test_a_client_gone_too_long_is_cut_off_after_the_drain(
    creds, chat: Chat, alice_token: str, monkeypatch
) -> None:
    from chats.services import presence

    monkeypatch.setattr(presence, "DRAIN_SECONDS", 0.2)
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await message(socket, "hi sim:chunks=100 sim:delay=0.05")
    start = (await receive_until(socket, "start"))[0]
    await receive_until(socket, "token")
    await socket.disconnect()
    saved = await settled(start["message_id"], timeout=3)
    assert saved.status == "partial"
    assert saved.finish_reason == "drain_timeout"
    assert saved.usage.tokens_estimated is True
    assert 0 < saved.usage.output_tokens < 100


# --- one generation at a time, several sockets ---------------------------------------------


async def test_a_second_message_while_streaming_is_busy(
    creds, chat: Chat, alice_token: str
) -> None:
    first, _ = await connect(chat.pk, bearer(alice_token))
    second, _ = await connect(chat.pk, bearer(alice_token))
    await message(first, f"hi {SLOW}")
    await receive_until(first, "token")
    await message(first, "me again")
    assert (await receive_until(first, "error"))[-1]["code"] == "busy"
    await message(second, "me too")
    assert (await receive_until(second, "error"))[-1]["code"] == "busy"
    await first.send_json_to({"type": "cancel"})
    await receive_until(first, "done")
    await message(first, "now sim:chunks=1")  # free again
    assert (await receive_until(first, "done", "error"))[-1]["type"] == "done"
    await first.disconnect()
    await second.disconnect()


async def test_every_socket_on_the_chat_receives_the_stream_once(
    creds, chat: Chat, alice_token: str
) -> None:
    speaker, _ = await connect(chat.pk, bearer(alice_token))
    watcher, _ = await connect(chat.pk, bearer(alice_token))
    await message(speaker, "hello sim:chunks=12 sim:delay=0.01")
    said = await receive_until(speaker, "done")
    seen = await receive_until(watcher, "done")
    assert [f["type"] for f in seen] == [f["type"] for f in said]
    assert text_of(seen) == text_of(said)
    assert len([f for f in said if f["type"] == "token"]) == 12  # no copies of its own
    assert await speaker.receive_nothing(timeout=0.2)
    await speaker.disconnect()
    await watcher.disconnect()


async def test_a_socket_opened_mid_stream_catches_up(creds, chat: Chat, alice_token: str) -> None:
    speaker, _ = await connect(chat.pk, bearer(alice_token))
    await message(speaker, "hello sim:chunks=30 sim:delay=0.02")
    said = await receive_until(speaker, "start")
    for _ in range(5):
        said += await receive_until(speaker, "token")
    late, _ = await connect(chat.pk, bearer(alice_token))
    said += await receive_until(speaker, "done")
    seen = await receive_until(late, "done")
    assert seen[0]["type"] == "start"
    assert seen[0]["message_id"] == said[0]["message_id"]
    assert text_of(seen) == text_of(said)
    await speaker.disconnect()
    await late.disconnect()


async def test_a_second_tab_can_cancel_the_answer(creds, chat: Chat, alice_token: str) -> None:
    speaker, _ = await connect(chat.pk, bearer(alice_token))
    other_tab, _ = await connect(chat.pk, bearer(alice_token))
    await message(speaker, f"hi {SLOW}")
    await receive_until(other_tab, "token")
    await other_tab.send_json_to({"type": "cancel"})
    assert (await receive_until(speaker, "done", timeout=2))[-1]["status"] == "cancelled"
    assert (await receive_until(other_tab, "done"))[-1]["status"] == "cancelled"
    await speaker.disconnect()
    await other_tab.disconnect()


async def test_a_rest_message_streams_to_open_sockets(
    creds, chat: Chat, alice_token: str, alice_api
) -> None:
    watcher, _ = await connect(chat.pk, bearer(alice_token))
    response = await sync_to_async(alice_api.post)(
        f"/api/chats/{chat.pk}/messages", {"content": "hi sim:chunks=4"}, format="json"
    )
    assert response.status_code == 201
    seen = await receive_until(watcher, "done")
    assert text_of(seen) == response.json()["content"]
    await watcher.disconnect()


# --- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "directive", "code"),
    [
        ("openai", "sim:fault=reset sim:after=3", "stream_interrupted"),
        ("anthropic", "sim:fault=overloaded sim:after=3", "overloaded"),
        ("ollama", "sim:fault=inband_error sim:after=3", "upstream_unavailable"),
    ],
)
async def test_a_provider_fault_mid_stream_is_an_error_frame_and_an_error_message(
    creds, chat: Chat, alice_token: str, provider: str, directive: str, code: str
) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await message(socket, f"hi {directive}", provider=provider, model=MODELS[provider])
    frames = await receive_until(socket, "done", "error")
    error = frames[-1]
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["request_id"] == frames[0]["request_id"]
    assert error["message"] and "sim-test-key" not in error["message"]
    saved = await settled(error["message_id"])
    assert (saved.status, saved.error_code) == ("error", code)
    assert saved.content == text_of(frames)
    assert len(saved.content.split()) == 3
    await socket.disconnect()


async def test_a_provider_refusal_before_any_token_is_an_error_frame(
    creds, chat: Chat, alice_token: str
) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await message(socket, "hi sim:fault=500")
    frames = await receive_until(socket, "done", "error")
    assert [f["type"] for f in frames] == ["start", "error"]
    assert frames[-1]["code"] == "upstream_unavailable"
    saved = await settled(frames[-1]["message_id"])
    assert (saved.status, saved.content) == ("error", "")
    await socket.disconnect()


# --- bad frames: an error frame, and the socket stays usable --------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ('["a list"]', "invalid_frame"),
        ('{"type": "shout"}', "unknown_type"),
        ('{"content": "no type"}', "unknown_type"),
        ('{"type": "message"}', "content_required"),
        ('{"type": "message", "content": "  "}', "content_empty"),
        (json.dumps({"type": "message", "content": "x" * MAX_FRAME_BYTES}), "frame_too_large"),
        ('{"type": "message", "content": "hi", "temperature": 9}', "temperature_out_of_range"),
        ('{"type": "message", "content": "hi", "max_tokens": 0}', "max_tokens_out_of_range"),
        ('{"type": "message", "content": "hi", "provider": "nope"}', "unknown_provider"),
        ('{"type": "message", "content": "hi", "base_url": "http://x"}', "field_not_allowed"),
    ],
)
async def test_a_bad_frame_gets_an_error_and_the_socket_stays_usable(
    creds, chat: Chat, alice_token: str, frame: str, code: str
) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await socket.send_to(text_data=frame)
    error = await socket.receive_json_from(timeout=5)
    assert (error["type"], error["code"]) == ("error", code)
    assert error["message"] and error["request_id"]
    await message(socket, "still here sim:chunks=2")
    assert (await receive_until(socket, "done", "error"))[-1]["type"] == "done"
    assert await Message.objects.filter(chat=chat).acount() == 2
    await socket.disconnect()


async def test_a_binary_frame_is_refused(creds, chat: Chat, alice_token: str) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await socket.send_to(bytes_data=b"\x00\x01")
    assert (await socket.receive_json_from())["code"] == "invalid_frame"
    await socket.disconnect()


async def test_a_cancel_with_nothing_streaming_is_ignored(creds, chat: Chat, alice_token) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await socket.send_json_to({"type": "cancel"})
    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()


# --- who may open a socket -----------------------------------------------------------------


async def test_an_unauthenticated_socket_is_refused(chat: Chat) -> None:
    _, connected = await connect(chat.pk, [])
    assert not connected


async def test_a_bad_token_is_refused_even_with_a_session(chat: Chat, alice_cookie) -> None:
    _, connected = await connect(chat.pk, [*alice_cookie, *bearer("gh_0123456789_" + "x" * 30)])
    assert not connected


async def test_a_foreign_origin_is_refused(chat: Chat, alice_token: str) -> None:
    headers = [*bearer(alice_token), (b"origin", b"https://evil.example")]
    _, connected = await connect(chat.pk, headers)
    assert not connected


@pytest.fixture
def charlie_token(other, charlie) -> str:
    membership = Membership.objects.get(organization=other, user=charlie)
    return token_issue(membership=membership, name="ws").secret


@pytest.fixture
def bob_token(bob_membership) -> str:
    return token_issue(membership=bob_membership, name="ws").secret


@pytest.mark.parametrize("outsider", ["charlie_token", "bob_token"])
async def test_a_socket_on_someone_elses_chat_is_refused(
    request: pytest.FixtureRequest, chat: Chat, outsider: str
) -> None:
    secret = await sync_to_async(request.getfixturevalue)(outsider)
    _, connected = await connect(chat.pk, bearer(secret))
    assert not connected
    _, connected = await connect(999_999, bearer(secret))
    assert not connected


async def test_a_revoked_token_loses_an_open_socket(creds, chat: Chat, alice_membership) -> None:
    issued = await sync_to_async(token_issue)(membership=alice_membership, name="ws")
    socket, _ = await connect(chat.pk, bearer(issued.secret))
    await message(socket, f"hi {SLOW}")
    start = (await receive_until(socket, "start"))[0]
    await sync_to_async(token_revoke)(token=issued.token)
    await socket.send_json_to({"type": "cancel"})
    frames = []
    while (frame := await socket.receive_output(timeout=5))["type"] != "websocket.close":
        frames.append(json.loads(frame["text"]))
    assert frame["code"] == 4403
    assert frames[-1]["code"] == "access_revoked"
    assert (await settled(start["message_id"])).status == "cancelled"


async def test_a_token_expiring_while_open_loses_the_socket(
    creds, chat: Chat, alice_membership
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import ApiToken

    issued = await sync_to_async(token_issue)(membership=alice_membership, name="ws")
    socket, _ = await connect(chat.pk, bearer(issued.secret))
    await ApiToken.objects.filter(pk=issued.token.pk).aupdate(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    await message(socket, "hi")
    assert (await socket.receive_json_from())["code"] == "access_revoked"
    assert (await socket.receive_output())["code"] == 4403
    assert not await Message.objects.filter(chat=chat).aexists()


async def test_a_member_removed_from_the_organisation_loses_an_open_socket(
    creds, chat: Chat, alice_cookie, alice_membership
) -> None:
    socket, connected = await connect(chat.pk, alice_cookie)
    assert connected
    await alice_membership.adelete()
    await message(socket, "hi")
    assert (await socket.receive_json_from())["code"] == "access_revoked"
    assert (await socket.receive_output())["type"] == "websocket.close"
    assert not await Message.objects.filter(chat=chat).aexists()
    assert not await UsageRecord.objects.aexists()


async def test_settlement_happens_once_per_answer(creds, chat: Chat, alice_token: str) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    for _ in range(3):
        await message(socket, "hi sim:chunks=2")
        await receive_until(socket, "done")
    await socket.disconnect()
    assert await UsageRecord.objects.filter(chat_id=chat.pk).acount() == 3
    assert (
        await Message.objects.filter(chat=chat, usage__isnull=True, role="assistant").acount() == 0
    )
    await asyncio.sleep(0)
