"""A server stopped with SIGTERM (a deploy, a restart) settles what it has in flight before it
exits (config/inflight.py): an answer streaming on a socket is saved `partial` with finish reason
`interrupted`, its socket gets that `done` frame, and its tokens so far reach the ledger; a
gateway stream the shutdown cut off is recorded as a call whose client has gone, with the tokens
it had streamed. Each test stops a daphne process of its own."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from accounts.models import Membership
from accounts.tokens import token_issue
from chats.models import Chat, Message
from providers.models import UsageRecord
from tests.e2e.conftest import Daphne, daphne_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

EXIT_TIMEOUT_S = 30
COMPLETIONS_PATH = "/openai/v1/chat/completions"


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[Daphne]:
    with daphne_server(server_env, tmp_path / "daphne.log") as running:
        yield running


@pytest.fixture
def token(acme_credentials: dict, alice_membership: Membership) -> str:
    return token_issue(membership=alice_membership, name="shutdown").secret


def terminate(server: Daphne) -> int:
    """SIGTERM, then the exit status once the process has ended."""
    server.process.send_signal(signal.SIGTERM)
    return server.process.wait(timeout=EXIT_TIMEOUT_S)


async def test_sigterm_settles_the_answer_streaming_on_a_socket(
    server: Daphne, token: str, alice_membership: Membership
) -> None:
    chat = await Chat.objects.acreate(
        organization_id=alice_membership.organization_id, owner_id=alice_membership.user_id
    )
    headers = {"Authorization": f"Bearer {token}"}
    frames: list[dict[str, Any]] = []
    async with connect(
        f"{server.ws_url}/ws/chats/{chat.pk}/", additional_headers=headers, open_timeout=10
    ) as ws:
        await ws.send(
            json.dumps({"type": "message", "content": "hi sim:chunks=400 sim:delay=0.05"})
        )
        while [f["type"] for f in frames].count("token") < 5:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 15)))

        status = await sync_to_async(terminate)(server)

        try:
            while True:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 15)))
        except ConnectionClosed:
            pass
    assert status == 0, server.log_tail()
    done = frames[-1]
    assert (done["type"], done["status"], done["finish_reason"]) == (
        "done",
        "partial",
        "interrupted",
    )
    text = "".join(f["delta"] for f in frames if f["type"] == "token")
    answer = await Message.objects.select_related("usage").aget(pk=frames[0]["message_id"])
    assert (answer.status, answer.finish_reason, answer.content) == ("partial", "interrupted", text)
    assert answer.usage is not None
    assert answer.usage.request_id == frames[0]["request_id"]
    assert answer.usage.status == "partial"
    assert 0 < answer.usage.output_tokens < 400
    assert not await Message.objects.filter(status="streaming").aexists()


def test_sigterm_records_a_gateway_stream_it_cut_off(
    server: Daphne, token: str, alice_membership: Membership
) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=token, max_retries=0, timeout=30)
    stream = client.chat.completions.create(
        model="sim-gpt",
        messages=[{"role": "user", "content": "hi sim:chunks=100 sim:delay=0.05"}],
        stream=True,
    )
    chunks = iter(stream)
    for _ in range(3):
        next(chunks)

    status = terminate(server)

    assert status == 0, server.log_tail()
    record = UsageRecord.objects.get(organization=alice_membership.organization)
    assert (record.status, record.error_code) == ("cancelled", "client_disconnected")
    assert record.tokens_estimated  # the upstream was cut off with the request: no usage event
    assert 0 < record.output_tokens < 100  # what had streamed, not the whole answer


def test_sigterm_waits_for_a_gateway_completion_under_way_and_records_it(
    server: Daphne, token: str, alice_membership: Membership, sim_server: Any
) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=token, max_retries=0, timeout=30)
    before = sim_server.app.stats[COMPLETIONS_PATH]
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(
                client.chat.completions.create(
                    model="sim-gpt",
                    messages=[{"role": "user", "content": "hi sim:chunks=40 sim:delay=0.05"}],
                )
            )
        except openai.APIError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    wait_for_upstream_call(sim_server, before)  # two seconds of answer still to come

    status = terminate(server)
    caller.join(EXIT_TIMEOUT_S)

    assert status == 0, server.log_tail()
    # The provider call ran to its end (the provider bills it), and its counts were recorded.
    record = UsageRecord.objects.get(organization=alice_membership.organization)
    assert (record.status, record.error_code) == ("cancelled", "client_disconnected")
    assert (record.output_tokens, record.tokens_estimated) == (40, False)


def wait_for_upstream_call(sim_server: Any, before: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while sim_server.app.stats[COMPLETIONS_PATH] == before:
        assert time.monotonic() < deadline, "the call never reached the provider"
        time.sleep(0.02)
