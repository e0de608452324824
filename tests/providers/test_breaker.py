"""Circuit breaker: opens after the threshold, refuses during the cooldown, lets one probe through,
recovers; shared across "processes" (separate cache clients) on local memory and on Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from providers import breaker
from providers.breaker import CircuitBreaker

COOLDOWN = 0.5


class CountingCache(LocMemCache):
    """Local memory that counts the calls a backend would answer in one round trip each (a
    `get_many` is one MGET on Redis, even though local memory implements it with `get`s)."""

    def __init__(self, location: str) -> None:
        super().__init__(location, {})
        self.reads = 0
        self.writes = 0
        self._nested = False

    def _count(self, kind: str, method, *args, **kwargs):
        if self._nested:
            return method(*args, **kwargs)
        setattr(self, kind, getattr(self, kind) + 1)
        self._nested = True
        try:
            return method(*args, **kwargs)
        finally:
            self._nested = False

    def get(self, *args, **kwargs):
        return self._count("reads", super().get, *args, **kwargs)

    def get_many(self, *args, **kwargs):
        return self._count("reads", super().get_many, *args, **kwargs)

    def add(self, *args, **kwargs):
        return self._count("writes", super().add, *args, **kwargs)

    def set(self, *args, **kwargs):
        return self._count("writes", super().set, *args, **kwargs)

    def incr(self, *args, **kwargs):
        return self._count("writes", super().incr, *args, **kwargs)

    def delete(self, *args, **kwargs):
        return self._count("writes", super().delete, *args, **kwargs)

    def delete_many(self, *args, **kwargs):
        return self._count("writes", super().delete_many, *args, **kwargs)


class BrokenCache(LocMemCache):
    def __init__(self) -> None:
        super().__init__("broken", {})

    def get(self, *args, **kwargs):
        raise ConnectionError("cache down")

    get_many = add = set = incr = delete = delete_many = get


@pytest.fixture
def route() -> str:
    return f"cred:{uuid.uuid4().hex[:8]}:sim-gpt"


@pytest.fixture(params=["locmem", "redis"])
def two_processes(request):
    """Two breakers, each with its own cache client on the same store: two processes' view."""
    if request.param == "locmem":
        location = f"breaker-{uuid.uuid4().hex}"
        caches = [LocMemCache(location, {}), LocMemCache(location, {})]
    else:
        url = request.getfixturevalue("redis_url")
        caches = [RedisCache(url, {"KEY_PREFIX": "test"}), RedisCache(url, {"KEY_PREFIX": "test"})]
        assert caches[0]._cache.get_client() is not caches[1]._cache.get_client()
    prefix = f"breaker-test-{uuid.uuid4().hex[:8]}"
    # No trusted-clean window: these tests are about what each process sees at once.
    return [
        CircuitBreaker(cache=c, threshold=3, cooldown=COOLDOWN, prefix=prefix, clean_trust=0)
        for c in caches
    ]


async def fail(b: CircuitBreaker, key: str, times: int) -> list[bool]:
    return [await b.record_failure(key) for _ in range(times)]


async def wait_cooldown() -> None:
    await asyncio.sleep(COOLDOWN + 0.05)


async def test_opens_after_threshold_consecutive_failures(two_processes, route):
    a, b = two_processes
    assert await fail(a, route, 2) == [False, False]
    assert await a.allow(route)
    assert await b.record_failure(route) is True  # the third failure, seen from another process
    assert not await a.allow(route)
    assert not await b.allow(route)
    assert await a.is_open(route)


async def test_success_resets_the_consecutive_count(two_processes, route):
    a, b = two_processes
    await fail(a, route, 2)
    await b.record_success(route)
    assert await fail(a, route, 2) == [False, False]
    assert await a.allow(route)


async def test_refuses_during_cooldown_then_lets_exactly_one_probe(two_processes, route):
    a, b = two_processes
    await fail(a, route, 3)
    assert not await b.allow(route)
    await asyncio.sleep(COOLDOWN / 2)
    assert not await b.allow(route)
    await wait_cooldown()
    verdicts = await asyncio.gather(*(x.allow(route) for _ in range(10) for x in (a, b)))
    assert verdicts.count(True) == 1


async def test_probe_success_closes_the_route(two_processes, route):
    a, b = two_processes
    await fail(a, route, 3)
    await wait_cooldown()
    assert await a.allow(route)  # the probe
    assert not await b.allow(route)  # probe in flight
    await a.record_success(route)
    assert all([await b.allow(route) for _ in range(5)])
    assert not await b.is_open(route)
    # Fully closed: it takes a whole threshold of failures to open again.
    assert await fail(b, route, 3) == [False, False, True]


async def test_probe_failure_reopens_for_another_cooldown(two_processes, route):
    a, b = two_processes
    await fail(a, route, 3)
    await wait_cooldown()
    assert await a.allow(route)
    assert await a.record_failure(route) is True
    assert not await b.allow(route)
    await asyncio.sleep(COOLDOWN / 2)
    assert not await b.allow(route)  # a fresh cooldown, not the remains of the old one
    await wait_cooldown()
    assert await b.allow(route)  # the next probe


async def test_failures_while_open_do_not_extend_the_cooldown(two_processes, route):
    a, b = two_processes
    await fail(a, route, 3)
    await asyncio.sleep(COOLDOWN * 0.7)
    assert await b.record_failure(route) is True  # a straggler from before it opened
    await asyncio.sleep(COOLDOWN * 0.5)
    assert await b.allow(route)  # cooldown counted from the opening, not from the straggler


async def test_lost_probe_is_replaced_after_its_lock_expires(two_processes, route):
    a, b = two_processes
    await fail(a, route, 3)
    await wait_cooldown()
    assert await a.allow(route)  # this probe never reports back
    assert not await b.allow(route)
    await asyncio.sleep(1.1)  # lock: one cooldown, at least one second
    assert await b.allow(route)


async def test_routes_are_independent(two_processes, route):
    a, _ = two_processes
    await fail(a, route, 3)
    assert not await a.allow(route)
    assert await a.allow(route + "-other-model")


async def test_hot_path_costs_one_read_then_nothing_while_a_clean_read_is_trusted(route):
    cache = CountingCache(f"counting-{uuid.uuid4().hex}")
    b = CircuitBreaker(cache=cache, threshold=3, cooldown=COOLDOWN, clean_trust=60)
    assert await b.allow(route)
    await b.record_success(route)
    assert (cache.reads, cache.writes) == (1, 0)
    cache.reads = 0
    for _ in range(3):
        assert await b.allow(route)
        await b.record_success(route)
    assert (cache.reads, cache.writes) == (0, 0)
    await b.record_failure(route)  # ends the window
    cache.reads = cache.writes = 0
    await b.record_success(route)  # there was a failure to forget: one read, one write
    assert (cache.reads, cache.writes) == (1, 1)
    cache.reads = cache.writes = 0
    await b.record_success(route)
    assert (cache.reads, cache.writes) == (1, 0)


async def test_a_route_opened_elsewhere_is_refused_once_the_clean_window_ends(route):
    location = f"breaker-{uuid.uuid4().hex}"
    here = CircuitBreaker(
        cache=LocMemCache(location, {}), threshold=1, cooldown=30, clean_trust=0.2
    )
    there = CircuitBreaker(cache=LocMemCache(location, {}), threshold=1, cooldown=30)
    assert await here.allow(route)
    assert await there.record_failure(route)  # opened by another process
    assert await here.allow(route)  # still inside this process's trusted window
    await asyncio.sleep(0.25)
    assert not await here.allow(route)


async def test_unsafe_route_keys_are_hashed(route):
    cache = CountingCache(f"keys-{uuid.uuid4().hex}")
    b = CircuitBreaker(cache=cache, threshold=1, cooldown=COOLDOWN)
    key = "my credential / gpt-4o \n" + "x" * 300
    await b.record_failure(key)
    assert not await b.allow(key)
    assert all(" " not in k and len(k) < 100 for k in cache._cache)


async def test_cache_outage_lets_calls_through(route):
    b = CircuitBreaker(cache=BrokenCache(), threshold=1, cooldown=COOLDOWN)
    assert await b.record_failure(route) is False
    assert await b.allow(route)
    await b.record_success(route)
    assert not await b.is_open(route)


async def test_module_functions_read_settings(settings, route):
    settings.GATEHOUSE_BREAKER_THRESHOLD = 2
    settings.GATEHOUSE_BREAKER_COOLDOWN = COOLDOWN
    assert await breaker.record_failure(route) is False
    assert await breaker.record_failure(route) is True
    assert not await breaker.allow(route)
    assert await breaker.is_open(route)
    started = time.monotonic()
    while not await breaker.allow(route):
        await asyncio.sleep(0.02)
    assert COOLDOWN * 0.5 < time.monotonic() - started < COOLDOWN + 0.5
    await breaker.record_success(route)
    assert await breaker.allow(route)
