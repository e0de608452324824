"""An answer stopped during one of its sends stops there, even when the send swallows the
cancellation, as Python 3.11's `asyncio.wait_for` does when what it waits on finishes at that
moment (redis-py sent through it: config/redis_connection.py)."""

from __future__ import annotations

import asyncio
import json

import pytest

from accounts.models import Membership
from chats.models import Chat, Message
from chats.services.inputs import MessageInput
from chats.services.messages import message_start
from providers.models import UsageRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_path")]

SLOW = "sim:chunks=400 sim:delay=0.05"  # twenty seconds of answer


async def test_an_answer_stopped_in_a_send_that_swallows_the_cancel_stops_there(
    creds, alice_membership: Membership, chat: Chat
) -> None:
    loop = asyncio.get_running_loop()
    frames: list[dict] = []
    stop = None

    async def sink(text: str) -> None:
        frames.append(json.loads(text))
        if [frame["type"] for frame in frames].count("token") == 3:
            sent = loop.create_future()
            loop.call_soon(sent.set_result, None)
            loop.call_soon(stop)  # the cancel lands in the same loop step as the send's end
            await asyncio.wait_for(sent, timeout=5)

    generation = await message_start(
        membership=alice_membership,
        chat_id=chat.pk,
        message=MessageInput(content=f"hi {SLOW}"),
        sink=sink,
    )
    stop = generation.cancel
    running = asyncio.ensure_future(generation.run())
    try:
        await asyncio.wait({running}, timeout=5)
        assert running.done(), "the answer streamed on after its cancel"
    finally:
        running.cancel()  # a no-op once it is over
    reply = running.result()
    assert reply.status == "cancelled"
    assert [frame["type"] for frame in frames] == ["start", "token", "token", "token", "done"]
    answer = await Message.objects.aget(pk=reply.message_id)
    assert (answer.status, answer.content) == ("cancelled", reply.content)
    record = await UsageRecord.objects.aget(request_id=reply.request_id)
    assert record.status == "cancelled"
