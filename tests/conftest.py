"""Shared fixtures: alice owns Acme, bob is a member of Acme, charlie owns Other (the outsider)."""

from __future__ import annotations

import faulthandler
import os
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from accounts.models import Membership, Organization, User
from accounts.services import organization_create
from accounts.tokens import token_issue

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    """With REQUIRE_SERVICES=1 (CI) a missing PostgreSQL or Redis fails the run at once."""
    if not REQUIRE_SERVICES:
        return
    problems = []
    database = os.environ.get("DATABASE_URL", "")
    if not database.startswith(("postgres://", "postgresql://")):
        problems.append("DATABASE_URL must point at PostgreSQL")
    elif not _reachable(database, 5432):
        problems.append(f"PostgreSQL is unreachable at {urlparse(database).netloc}")
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url:
        problems.append("REDIS_URL is not set")
    elif not _reachable(redis_url, 6379):
        problems.append("Redis is unreachable")
    if problems:
        pytest.exit("REQUIRE_SERVICES=1 but: " + "; ".join(problems), returncode=3)


# How long the interpreter may take to exit once the session has ended. Exit waits for every
# non-daemon thread; a thread that never ends (an event loop of asgiref's `async_to_sync` whose
# teardown waits on a task that does not finish on cancel: seen in several sessions, most likely
# a channel-layer receive whose cancel redis-py's send swallowed, config/redis_connection.py)
# would hang CI with every result already reported. A hung run is a red run that says nothing.
EXIT_GRACE_S = float(os.environ.get("GATEHOUSE_TEST_EXIT_GRACE_S", "60"))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Arm a watchdog for the interpreter's exit: if it has not happened `EXIT_GRACE_S` after
    the session, print every thread's stack (what to fix) and exit with the session's status:
    the results are all in by then, and the stacks say which task to mend."""
    status = int(getattr(config, "_gatehouse_exitstatus", 1))  # 1: no session ran

    def watchdog() -> None:
        threading.Event().wait(EXIT_GRACE_S)
        sys.stderr.write(
            f"\npytest: the interpreter has not exited {EXIT_GRACE_S:.0f} s after the session "
            "ended; threads still running:\n"
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(status)

    threading.Thread(target=watchdog, name="exit-watchdog", daemon=True).start()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._gatehouse_exitstatus = exitstatus  # type: ignore[attr-defined]


# The hot paths run two ways on PostgreSQL: in thread hops, or on the event loop's own
# connections (config.apg). Transactional tests of those paths take both with `db_path`.
ON_POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
DB_PATHS = ["threads", "event loop"] if ON_POSTGRES else ["threads"]


@pytest.fixture(params=DB_PATHS)
def db_path(request: pytest.FixtureRequest, settings: Any) -> str:
    """Run the test with the database work in threads, then (PostgreSQL) on the event loop."""
    settings.GATEHOUSE_DB_ASYNC = request.param == "event loop"
    return request.param


@pytest.fixture
def redis_url() -> str:
    """For tests that need Redis itself: fail under REQUIRE_SERVICES, skip on embedded defaults."""
    url = settings.REDIS_URL
    if not url or not _reachable(url, 6379):
        if REQUIRE_SERVICES:
            pytest.fail("Redis is required (REQUIRE_SERVICES=1) but unavailable")
        pytest.skip("Redis not configured (set REDIS_URL)")
    return url


@pytest.fixture
def alice(db) -> User:
    return User.objects.create_user("alice@example.com", "alice-password-1")


@pytest.fixture
def bob(db) -> User:
    return User.objects.create_user("bob@example.com", "bob-password-1")


@pytest.fixture
def charlie(db) -> User:
    return User.objects.create_user("charlie@example.com", "charlie-password-1")


@pytest.fixture
def acme(alice: User, bob: User) -> Organization:
    org = organization_create(name="Acme", slug="acme", owner=alice)
    Membership.objects.create(user=bob, organization=org, role=Membership.Role.MEMBER)
    return org


@pytest.fixture
def other(charlie: User) -> Organization:
    return organization_create(name="Other", slug="other", owner=charlie)


@pytest.fixture
def alice_membership(acme: Organization, alice: User) -> Membership:
    return Membership.objects.get(organization=acme, user=alice)


@pytest.fixture
def bob_membership(acme: Organization, bob: User) -> Membership:
    return Membership.objects.get(organization=acme, user=bob)


def _client_for(membership: Membership) -> APIClient:
    client = APIClient()
    issued = token_issue(membership=membership, name="test")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    client.token_secret = issued.secret
    return client


@pytest.fixture
def alice_api(alice_membership: Membership) -> APIClient:
    return _client_for(alice_membership)


@pytest.fixture
def bob_api(bob_membership: Membership) -> APIClient:
    return _client_for(bob_membership)


@pytest.fixture
def charlie_api(other: Organization, charlie: User) -> APIClient:
    return _client_for(Membership.objects.get(organization=other, user=charlie))


@pytest.fixture(scope="session", autouse=True)
def _database_work_in_the_calling_thread() -> None:
    """In-process tests run inside one connection's transaction: the database hops of async
    code must use that connection (config.dbhop), not threads of their own. Live servers,
    separate processes, keep the setting's own value. For the same reason the event loop's own
    connections (config.apg) are off: tests of them turn them on with committed data."""
    settings.GATEHOUSE_DB_THREADS = 0
    settings.GATEHOUSE_DB_ASYNC = False


@pytest.fixture(autouse=True)
def _channel_layer_per_test() -> Iterator[None]:
    """Each test runs on an event loop of its own, and a channel layer keeps state bound to the
    loop that used it: the Redis layer's connections, and its receive lock, held while any
    receive is pending. A receive still pending when a test's loop closed never gives that lock
    back, and every later socket then fails with "bound to a different event loop" (a red CI
    run, 2026-12-08). So each test gets a layer of its own, as a server process has one loop."""
    yield
    from channels.layers import channel_layers

    channel_layers.backends.clear()


@pytest.fixture(scope="session", autouse=True)
def _close_worker_thread_connections(django_db_setup, django_db_blocker):
    """Async ORM calls run in asgiref's worker thread, whose database connection outlives the
    tests; close it before the test database is dropped."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    with django_db_blocker.unblock():
        SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)
    from config import apg

    apg.discard_all()


@pytest.fixture(scope="session")
def sim_server():
    """The upstream simulator on a loopback port, shared by the whole run."""
    from providers.simulator.server import SimulatorServer

    with SimulatorServer() as server:
        yield server


@pytest.fixture(scope="session")
def simulator(sim_server) -> str:
    """The shared simulator's base URL."""
    return sim_server.url


@pytest.fixture
def sim_url(sim_server) -> str:
    return sim_server.url


def make_credential(organization, sim_url: str, kind: str, **fields):
    from providers.models import ProviderCredential

    paths = {
        "openai": "/openai/v1",
        "openai_compatible": "/openai/v1",
        "anthropic": "/anthropic",
        "ollama": "/ollama",
    }
    models = {
        "openai": "sim-gpt",
        "openai_compatible": "sim-gpt-mini",
        "anthropic": "sim-claude",
        "ollama": "sim-llama",
    }
    api_key = fields.pop("api_key", "sim-test-key")
    provider = fields.pop("provider", "compatible" if kind == "openai_compatible" else kind)
    credential = ProviderCredential(
        organization=organization,
        name=fields.pop("name", f"{provider} key"),
        provider=provider,
        kind=kind,
        base_url=sim_url + paths[kind],
        default_model=fields.pop("default_model", models[kind]),
        **fields,
    )
    credential.set_secret(api_key)
    credential.save()
    return credential


@pytest.fixture
def acme_credentials(acme, sim_url):
    """One credential per kind for Acme, on the simulator; openai is the default provider."""
    creds = {
        kind: make_credential(acme, sim_url, kind)
        for kind in ("openai", "anthropic", "ollama", "openai_compatible")
    }
    acme.default_provider, acme.default_model = "openai", "sim-gpt"
    acme.save()
    return creds
