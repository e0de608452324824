"""config.dbhop: the database work of async code runs in a pool of its own threads, side by side."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import OperationalError, connection

from config import dbhop


@pytest.fixture
def pooled(settings, monkeypatch):
    settings.GATEHOUSE_DB_THREADS = 2
    monkeypatch.setattr(dbhop, "_executor", None)
    yield
    if dbhop._executor is not None:
        dbhop._executor.shutdown(wait=True)


async def test_hops_run_side_by_side_in_their_own_threads(pooled) -> None:
    both_inside = threading.Barrier(2, timeout=10)

    def work() -> str:
        both_inside.wait()  # breaks (BrokenBarrierError) if the hops ran one after the other
        return threading.current_thread().name

    names = await asyncio.gather(dbhop.db_hop(work), dbhop.db_hop(work))
    assert all(name.startswith("db-hop") for name in names)


@pytest.mark.django_db(transaction=True)
async def test_a_failed_connection_is_closed_for_the_next_call(pooled, settings) -> None:
    if connection.vendor == "sqlite":
        pytest.skip("Django never closes the in-memory SQLite test database's connection")
    settings.GATEHOUSE_DB_THREADS = 1  # one thread: the second call sees what the first left

    def fail() -> None:
        connection.ensure_connection()
        raise OperationalError("server closed the connection unexpectedly")

    with pytest.raises(OperationalError):
        await dbhop.db_hop(fail)
    assert await dbhop.db_hop(lambda: connection.connection is None)


async def test_zero_threads_is_the_calling_side_s_sync_to_async(settings) -> None:
    settings.GATEHOUSE_DB_THREADS = 0
    name = await dbhop.db_hop(lambda: threading.current_thread().name)
    assert not name.startswith("db-hop")


async def _connected_elsewhere() -> bool:
    return True


@pytest.mark.django_db(transaction=True)
def test_a_thread_waiting_unpooled_has_handed_its_connection_back() -> None:
    if connection.vendor == "sqlite":
        pytest.skip("Django never closes the in-memory SQLite test database's connection")
    connection.ensure_connection()
    assert dbhop.wait_unpooled(_connected_elsewhere) is True
    assert connection.connection is None  # back in the pool; a later query takes one again
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db
def test_inside_a_transaction_the_connection_stays(acme) -> None:
    from accounts.models import Organization

    assert connection.in_atomic_block  # the test's own transaction
    assert dbhop.wait_unpooled(_connected_elsewhere) is True
    assert connection.connection is not None
    assert Organization.objects.filter(pk=acme.pk).exists()  # the transaction goes on
