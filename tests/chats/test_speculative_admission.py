"""A socket's message is admitted while the gate runs (`chats.services.begin.speculate`): the
reservation is made on the socket's guess, kept when the gate agrees, and given back whenever it
does not — so a hard limit's counter ends every answer exactly as without the speculation.

On the event-loop path only (PostgreSQL and Redis): elsewhere admission waits for the gate."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from accounts.models import Membership
from chats.models import Chat, Message
from chats.services import begin, presence
from providers import admission as billing
from providers.budget import spending_limit_create
from providers.models import PriceOverride, SpendingCounter, UsageRecord
from tests.chats.conftest import bearer, connect, receive_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL"),
]


@pytest.fixture(autouse=True)
def _on_the_loop(settings: Any, redis_url: str) -> None:
    settings.GATEHOUSE_DB_ASYNC = True


@pytest.fixture
def capped(acme) -> None:
    """sim-gpt and sim-gpt-mini priced at 1 USD per million tokens, under a hard monthly limit
    with ample room: every call reserves on one counter."""
    for model in ("sim-gpt", "sim-gpt-mini"):
        PriceOverride.objects.create(
            organization=acme,
            provider="openai",
            model=model,
            input_per_mtok=Decimal(1),
            output_per_mtok=Decimal(1),
        )
    spending_limit_create(
        organization=acme,
        scope="organization",
        period="month",
        amount=Decimal(100),
        hard=True,
        name="Monthly cap",
    )


@pytest.fixture
def after_gate(monkeypatch) -> list[str]:
    """The request ids admitted after the gate (the path without speculation), observed by
    wrapping the real `admit`."""
    seen: list[str] = []
    real = billing.admit

    async def admit(**kwargs: Any) -> billing.Admission:
        seen.append(kwargs["request_id"])
        return await real(**kwargs)

    monkeypatch.setattr(begin.billing, "admit", admit)
    return seen


async def _counter() -> SpendingCounter:
    return await SpendingCounter.objects.aget()


async def _nothing_reserved(timeout: float = 5.0) -> SpendingCounter:
    """The counter once every reservation is given back (releases run in their own task)."""
    deadline = time.monotonic() + timeout
    while (counter := await _counter()).reserved != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"still reserved: {counter.reserved}")
        await asyncio.sleep(0.05)
    return counter


async def _exchange(socket, content: str) -> list[dict]:
    await socket.send_json_to({"type": "message", "content": content})
    return await receive_until(socket, "done", "error")


async def _spent_matches_the_ledger() -> None:
    counter = await _nothing_reserved()
    costs = [record.cost async for record in UsageRecord.objects.all()]
    assert counter.spent == sum(costs) and all(cost > 0 for cost in costs)


async def test_a_message_is_admitted_on_the_sockets_guess_and_charged_once(
    creds, capped, chat: Chat, alice_token: str, after_gate: list[str]
) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    first = await _exchange(socket, "Hello sim:chunks=3")  # opens the month's counter
    second = await _exchange(socket, "And again sim:chunks=4")
    await socket.disconnect()
    assert [f["type"] for f in second][-1] == "done"
    # The first message found no counter to reserve on and was admitted after the gate; the
    # second was admitted while the gate ran.
    assert after_gate == [first[0]["request_id"]]
    assert await UsageRecord.objects.acount() == 2
    await _spent_matches_the_ledger()


async def test_an_answer_its_usage_and_its_charge_are_saved_together(
    creds, capped, chat: Chat, alice_token: str
) -> None:
    # On this path one statement writes the ledger row, charges the counter, saves the answer
    # (linked to its ledger row) and titles the chat (`budget.settle_statement`'s `also`).
    socket, _ = await connect(chat.pk, bearer(alice_token))
    frames = await _exchange(socket, "Name this chat sim:chunks=5")
    await socket.disconnect()
    start, done = frames[0], frames[-1]
    answer = await Message.objects.select_related("usage").aget(pk=start["message_id"])
    text = "".join(f["delta"] for f in frames if f["type"] == "token")
    assert (answer.status, answer.content, answer.finish_reason) == ("complete", text, "stop")
    assert answer.usage.request_id == done["request_id"]
    assert answer.usage.output_tokens == done["usage"]["output_tokens"] == 5
    await chat.arefresh_from_db()
    assert chat.title == "Name this chat sim:chunks=5"
    counter = await _nothing_reserved()
    assert counter.spent == answer.usage.cost > 0


async def test_the_start_frame_names_the_rows_the_answer_is_saved_in(
    creds, chat: Chat, alice_token: str
) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    first = await _exchange(socket, "One sim:chunks=2")
    second = await _exchange(socket, "Two sim:chunks=2")
    await socket.disconnect()
    ids = []
    for frames, question in ((first, "One sim:chunks=2"), (second, "Two sim:chunks=2")):
        start, done = frames[0], frames[-1]
        assert start["type"] == "start" and done["message_id"] == start["message_id"]
        answer = await Message.objects.aget(pk=start["message_id"])
        asked = await Message.objects.aget(pk=start["user_message_id"])
        assert (asked.role, asked.content) == (Message.Role.USER, question)
        assert (answer.role, answer.status) == (Message.Role.ASSISTANT, Message.Status.COMPLETE)
        ids += [asked.pk, answer.pk]
    # The conversation reads in the order it was said.
    assert ids == sorted(ids)
    listed = [m.pk async for m in Message.objects.filter(chat=chat).order_by("id")]
    assert listed == ids


@pytest.mark.parametrize("release_delay", [0.0, 0.3])
async def test_a_history_grown_elsewhere_is_admitted_for_its_real_size(
    creds, capped, chat: Chat, alice_token: str, after_gate: list[str], monkeypatch, release_delay
) -> None:
    """`release_delay`: the guess's reservation still being given back when the gate answers.
    Admission runs again under the same request id, so it must wait for that: the two would
    meet on the same rows (a duplicate reservation refused the message, or they deadlocked)."""
    real = billing.release

    async def slow_release(**kwargs: Any) -> None:
        await asyncio.sleep(release_delay)
        await real(**kwargs)

    monkeypatch.setattr(begin.billing, "release", slow_release)
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await _exchange(socket, "Hello sim:chunks=2")
    # Another client adds a long exchange the socket has not seen.
    await Message.objects.abulk_create(
        [
            Message(chat=chat, role=Message.Role.USER, content="word " * 2000),
            Message(chat=chat, role=Message.Role.ASSISTANT, content="ok", status="complete"),
        ]
    )
    frames = await _exchange(socket, "Still there? sim:chunks=2")
    await socket.disconnect()
    assert frames[-1]["type"] == "done"
    # The guess reserved for a smaller context: given back, and admission ran after the gate.
    assert frames[0]["request_id"] in after_gate
    await _spent_matches_the_ledger()


async def test_a_changed_default_model_is_admitted_on_the_new_route(
    creds, capped, chat: Chat, alice_token: str, after_gate: list[str]
) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await _exchange(socket, "Hello sim:chunks=2")
    await Chat.objects.filter(pk=chat.pk).aupdate(default_model="sim-gpt-mini")
    frames = await _exchange(socket, "Which model? sim:chunks=2")
    await socket.disconnect()
    assert frames[0]["model"] == "sim-gpt-mini" and frames[-1]["type"] == "done"
    assert frames[0]["request_id"] in after_gate
    await _spent_matches_the_ledger()


async def test_a_removed_member_is_refused_and_the_reservation_given_back(
    creds, capped, chat: Chat, alice_token: str, alice_membership: Membership
) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await _exchange(socket, "Hello sim:chunks=2")
    await Membership.objects.filter(pk=alice_membership.pk).adelete()
    frames = await _exchange(socket, "Am I still here?")
    assert frames[-1]["code"] == "access_revoked"
    assert await UsageRecord.objects.acount() == 1
    await _spent_matches_the_ledger()


async def test_a_busy_chat_is_refused_and_the_reservation_given_back(
    creds, capped, chat: Chat, alice_token: str
) -> None:
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await _exchange(socket, "Hello sim:chunks=2")
    # Another process is generating this chat's answer.
    assert await sync_to_async(presence.claim)(chat_id=chat.pk, owner="elsewhere") is not None
    try:
        frames = await _exchange(socket, "Me too")
    finally:
        await sync_to_async(presence.lock_release)(chat_id=chat.pk, owner="elsewhere")
    await socket.disconnect()
    assert frames[-1]["code"] == "busy"
    assert await Message.objects.filter(chat=chat).acount() == 2
    await _spent_matches_the_ledger()


async def _lock_free(chat_id: int) -> bool:
    taken = await sync_to_async(presence.claim)(chat_id=chat_id, owner="probe") is not None
    if taken:
        await presence.arelease(chat_id=chat_id, owner="probe")
    return taken


@pytest.mark.parametrize("steps_first", [0, 1, 50])
async def test_a_gate_given_up_on_leaves_the_chat_unlocked(
    creds, chat: Chat, alice_membership: Membership, steps_first: int
) -> None:
    """The gate and the lock start before the guess is routed; when the message is given up
    meanwhile (an error, a cancellation), `begin.abandon` waits for the gate's statement and
    releases the lock it took — given up before it started, mid-flight, or done."""
    membership = await Membership.objects.select_related("organization").aget(
        pk=alice_membership.pk
    )
    beginning = asyncio.ensure_future(
        begin.abegin(membership=membership, token=None, chat_id=chat.pk, owner="gave-up")
    )
    for _ in range(steps_first):
        if beginning.done():
            break
        await asyncio.sleep(0.001)
    await begin.abandon(beginning, "gave-up")
    assert beginning.done()
    assert await _lock_free(chat.pk)


async def test_a_message_refused_after_the_gate_leaves_no_rows_and_the_chat_free(
    creds, chat: Chat, alice_token: str
) -> None:
    # The output cap is checked against the route's model after the gate took the chat's lock:
    # its refusal must give the lock back and store nothing.
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await socket.send_json_to({"type": "message", "content": "Too long", "max_tokens": 10**7})
    refused = await receive_until(socket, "done", "error")
    assert refused[-1]["type"] == "error" and refused[-1]["fields"]["max_tokens"]
    assert not await Message.objects.filter(chat=chat).aexists()
    frames = await _exchange(socket, "Fine sim:chunks=2")
    await socket.disconnect()
    assert frames[-1]["type"] == "done"
    assert await Message.objects.filter(chat=chat).acount() == 2


async def test_the_rows_a_start_frame_names_exist_when_it_arrives(
    creds, chat: Chat, alice_token: str
) -> None:
    # A client may read the message and its placeholder as soon as it has the start frame, even
    # while the first token is still on its way.
    socket, _ = await connect(chat.pk, bearer(alice_token))
    await socket.send_json_to({"type": "message", "content": "Slowly sim:chunks=3 sim:delay=0.2"})
    start = (await receive_until(socket, "start"))[-1]
    answer = await Message.objects.aget(pk=start["message_id"])
    asked = await Message.objects.aget(pk=start["user_message_id"])
    assert (answer.status, asked.content) == ("streaming", "Slowly sim:chunks=3 sim:delay=0.2")
    frames = await receive_until(socket, "done", "error")
    await socket.disconnect()
    assert frames[-1]["type"] == "done"
