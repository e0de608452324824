"""The `/v1` handler cancelled itself (daphne's shutdown, or its close timeout for a client gone)
cancels the view it runs, which settles its call as one whose client has gone (config/lean.py).
Django's own handler would leave the view running on, answering nobody."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator

from accounts.models import Membership
from accounts.tokens import token_issue
from config.lean import LeanASGIHandler
from providers.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

COMPLETIONS = "/openai/v1/chat/completions"


async def test_a_cancelled_handler_cancels_its_view_which_settles_the_call(
    creds, alice_membership: Membership, sim_server
) -> None:
    token = (await sync_to_async(token_issue)(membership=alice_membership, name="t")).secret
    body = json.dumps(
        {
            "model": "sim-gpt",
            "messages": [{"role": "user", "content": "hi sim:chunks=100 sim:delay=0.05"}],
        }
    ).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    before = sim_server.app.stats[COMPLETIONS]
    handler = ApplicationCommunicator(LeanASGIHandler(), scope)
    await handler.send_input({"type": "http.request", "body": body, "more_body": False})
    deadline = time.monotonic() + 15
    while sim_server.app.stats[COMPLETIONS] == before:  # the call reached the provider
        assert time.monotonic() < deadline, "the call never reached the provider"
        await asyncio.sleep(0.02)

    handler.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler.future

    # Five seconds of answer still to come upstream: a view left running would settle `ok`
    # then; the cancelled one hands its call over at once, read to its end for the counts.
    record = await _record(alice_membership, timeout=15)
    assert (record.status, record.error_code) == ("cancelled", "client_disconnected")
    assert (record.output_tokens, record.tokens_estimated) == (100, False)


async def _record(membership: Membership, timeout: float) -> UsageRecord:
    deadline = time.monotonic() + timeout
    while True:
        record = await UsageRecord.objects.filter(
            organization_id=membership.organization_id
        ).afirst()
        if record is not None:
            return record
        assert time.monotonic() < deadline, "the call was never settled"
        await asyncio.sleep(0.05)
