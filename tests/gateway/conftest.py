"""Fixtures of the gateway tests: a live daphne server on loopback, running the real ASGI app in
its own process against the test database, and official `openai` SDK clients pointed at it.

The server is the e2e suite's (`tests/e2e/conftest.py`: its fixtures are imported here, which
also points a SQLite test database at a file another process can open). The server process
must see what the tests write, so these tests use `@pytest.mark.django_db(transaction=True)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai
import pytest

from accounts.models import Membership
from accounts.tokens import token_issue
from providers.models import UsageRecord
from tests.e2e import conftest as e2e

#: the model each provider of `acme_credentials` serves first
MODELS = {
    "openai": "sim-gpt",
    "anthropic": "sim-claude",
    "ollama": "sim-llama:latest",  # as Ollama lists it (routing matches listed ids)
    "compatible": "sim-gpt-mini",
}
PROVIDERS = list(MODELS)


# The e2e suite's live server, reused (fixtures become this directory's by being named here).
server_env = e2e.server_env
live_daphne = e2e.live_daphne
_servers_idle_at_teardown = e2e._servers_idle_at_teardown


@pytest.fixture(scope="session")
def live_server_url(live_daphne: e2e.Daphne, sim_server: Any) -> str:
    """`http://127.0.0.1:<port>` of the e2e suite's daphne process (`config.asgi:application`
    on the test database, its own scratch Redis database when Redis is configured)."""
    return live_daphne.url


# --- Credentials and clients ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # alice, bob and charlie are created for every test; the server never checks a password.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def creds(acme_credentials: dict) -> dict:
    """Acme's credentials, one per kind, on the simulator. (The server's cache holds nothing of
    earlier runs: it is a scratch Redis database flushed at start, or its own memory.)"""
    return acme_credentials


@pytest.fixture
def client_for(live_server_url: str) -> Callable[..., openai.OpenAI]:
    """An `openai.OpenAI` client on the gateway for a membership (or a raw token)."""

    def make(membership: Membership | None = None, *, token: str | None = None) -> openai.OpenAI:
        if token is None:
            assert membership is not None
            token = token_issue(membership=membership, name="gateway test").secret
        return openai.OpenAI(
            base_url=live_server_url + "/v1", api_key=token, max_retries=0, timeout=30
        )

    return make


@pytest.fixture
def alice_client(client_for: Callable[..., openai.OpenAI], alice_membership: Membership):
    return client_for(alice_membership)


@pytest.fixture
def bob_client(client_for: Callable[..., openai.OpenAI], bob_membership: Membership):
    return client_for(bob_membership)


@pytest.fixture
def charlie_client(client_for: Callable[..., openai.OpenAI], other: Any, charlie: Any):
    return client_for(Membership.objects.get(organization=other, user=charlie))


# --- The ledger -------------------------------------------------------------------------------


def request_id_of(completion_id: str) -> str:
    """The ledger's request id of a completion (its id is `chatcmpl-<request id>`)."""
    assert completion_id.startswith("chatcmpl-"), completion_id
    return completion_id.removeprefix("chatcmpl-")


def wait_for_records(count: int, timeout: float = 15.0, **filters: Any) -> list[UsageRecord]:
    """The ledger rows matching `filters` once there are `count` of them (settlements after a
    client hung up happen in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = list(UsageRecord.objects.filter(**filters).order_by("id"))
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)
