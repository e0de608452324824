"""The streamed body's settlement, driven the way Django's ASGI handler drives it when a client
hangs up: closed at a `yield` (the upstream survives, and is read on for the real usage), or
cancelled inside an upstream read (the upstream is gone, usage is estimated), or closed before
it ever started. Each settles exactly once."""

from __future__ import annotations

import asyncio
import time

import pytest

from accounts.models import Organization
from providers.calls import CallParams, open_stream
from providers.gateway import billing, wire
from providers.gateway.streaming import GatewayStream
from providers.models import UsageRecord
from providers.routing import aresolve

pytestmark = pytest.mark.django_db(transaction=True)


async def _open(membership, request_id: str, content: str) -> GatewayStream:
    messages = [{"role": "user", "content": content}]
    organization = await Organization.objects.aget(pk=membership.organization_id)
    route = await aresolve(organization=organization, provider="openai", model="sim-gpt")
    ledger = await billing.admit(
        request_id=request_id,
        membership=membership,
        route=route,
        messages=messages,
        max_tokens=1000,
        started=time.monotonic(),
    )
    stream = await open_stream(route.candidates, messages, params=CallParams(max_tokens=1000))
    ledger.first_token()
    chunks = wire.ChunkFormat(
        completion_id=f"chatcmpl-{request_id}",
        created=0,
        model="openai/sim-gpt",
        include_usage=True,
    )
    return GatewayStream(
        stream=stream, ledger=ledger, chunks=chunks, messages=messages, include_usage=True
    )


async def _record(request_id: str, timeout: float = 15.0) -> UsageRecord:
    deadline = time.monotonic() + timeout
    while True:
        record = await UsageRecord.objects.filter(request_id=request_id).afirst()
        if record is not None or time.monotonic() > deadline:
            assert record is not None, "no settlement"
            return record
        await asyncio.sleep(0.05)


async def test_closed_at_a_yield_it_reads_on_for_the_provider_s_usage(creds, alice_membership):
    body = await _open(alice_membership, "gw-yield", "go sim:chunks=30")
    frames = aiter(body)
    for _ in range(4):  # role and 3 words
        await anext(frames)

    await frames.aclose()
    body.close()  # Django closes the response afterwards, from a worker thread

    record = await _record("gw-yield")
    assert (record.status, record.error_code) == ("cancelled", "client_disconnected")
    assert (record.output_tokens, record.tokens_estimated) == (30, False)
    await asyncio.sleep(0.3)
    assert await UsageRecord.objects.filter(request_id="gw-yield").acount() == 1


async def test_cancelled_inside_a_read_it_estimates_from_the_text_received(creds, alice_membership):
    body = await _open(alice_membership, "gw-cancel", "go sim:chunks=50 sim:delay=0.1")
    received: list[bytes] = []

    async def consume() -> None:
        async for frame in body:
            received.append(frame)

    task = asyncio.ensure_future(consume())
    while len(received) < 4:
        await asyncio.sleep(0.01)
    task.cancel()  # lands in the upstream read: the simulator waits 0.1 s between words
    with pytest.raises(asyncio.CancelledError):
        await task

    record = await _record("gw-cancel")
    assert (record.status, record.tokens_estimated) == ("cancelled", True)
    assert 3 <= record.output_tokens < 50


async def test_closed_before_it_started_it_settles_all_the_same(creds, alice_membership):
    body = await _open(alice_membership, "gw-unstarted", "go sim:chunks=7")

    body.close()

    record = await _record("gw-unstarted")
    assert (record.status, record.output_tokens, record.tokens_estimated) == (
        "cancelled",
        7,
        False,
    )


async def test_a_finished_stream_settles_once_as_done_goes_out(creds, alice_membership):
    body = await _open(alice_membership, "gw-done", "go sim:chunks=2")
    frames = [frame async for frame in body]

    assert frames[-1] == wire.DONE
    record = await _record("gw-done")
    assert (record.status, record.output_tokens) == ("ok", 2)
    body.close()
    await asyncio.sleep(0.2)
    assert await UsageRecord.objects.filter(request_id="gw-done").acount() == 1
