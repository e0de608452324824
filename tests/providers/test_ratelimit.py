"""Rate limits: atomic per-minute counters on Redis (Lua) and on the local-memory cache."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.core.cache import cache

from providers import ratelimit
from providers.ratelimit import Bucket, RateLimited, RateLimiterUnavailable

NOW = 60.0 * 28_333_333 + 10  # 10 s into a minute


@pytest.fixture(params=["redis", "locmem"])
def store(request, settings) -> str:
    """Every test runs against Redis (when available) and against the local-memory cache."""
    settings.GATEHOUSE_RATELIMIT_PREFIX = f"t:{uuid.uuid4().hex}"
    if request.param == "redis":
        settings.REDIS_URL = request.getfixturevalue("redis_url")
    else:
        settings.REDIS_URL = ""
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    return request.param


def org(rpm=None, tpm=None, key="org:1") -> Bucket:
    return Bucket(key, "the organisation", rpm, tpm)


def test_requests_are_admitted_up_to_the_limit(store) -> None:
    for _ in range(3):
        ratelimit.hit(buckets=[org(rpm=3)], tokens=0, now=NOW)
    with pytest.raises(RateLimited) as refused:
        ratelimit.hit(buckets=[org(rpm=3)], tokens=0, now=NOW)
    assert (refused.value.measure, refused.value.limit) == ("requests", 3)
    assert refused.value.retry_after == 50  # until the minute ends


def test_a_new_minute_has_a_fresh_allowance(store) -> None:
    ratelimit.hit(buckets=[org(rpm=1)], tokens=0, now=NOW)
    with pytest.raises(RateLimited):
        ratelimit.hit(buckets=[org(rpm=1)], tokens=0, now=NOW + 49)
    ratelimit.hit(buckets=[org(rpm=1)], tokens=0, now=NOW + 50)


def test_a_refusal_counts_nothing_in_any_bucket(store) -> None:
    member = Bucket("member:1", "you", requests_per_minute=10)
    ratelimit.hit(buckets=[org(tpm=100)], tokens=90, now=NOW)
    for _ in range(5):
        with pytest.raises(RateLimited) as refused:
            ratelimit.hit(buckets=[member, org(tpm=100)], tokens=20, now=NOW)
        assert refused.value.bucket.key == "org:1"
    # The member bucket was never charged by the refused calls: all 10 requests remain.
    for _ in range(10):
        ratelimit.hit(buckets=[member], tokens=0, now=NOW)
    with pytest.raises(RateLimited):
        ratelimit.hit(buckets=[member], tokens=0, now=NOW)


def test_buckets_are_separate(store) -> None:
    ratelimit.hit(buckets=[org(rpm=1, key="org:1")], tokens=0, now=NOW)
    ratelimit.hit(buckets=[org(rpm=1, key="org:2")], tokens=0, now=NOW)


def test_no_limits_means_no_counting(store) -> None:
    assert ratelimit.hit(buckets=[org()], tokens=10, now=NOW) is None


def test_refund_gives_tokens_back_once_per_request(store) -> None:
    ticket = ratelimit.hit(buckets=[org(tpm=100)], tokens=80, now=NOW)
    ratelimit.refund(ticket=ticket, tokens=70, marker="req-1")
    ratelimit.refund(ticket=ticket, tokens=70, marker="req-1")  # no double refund
    ratelimit.hit(buckets=[org(tpm=100)], tokens=90, now=NOW)  # 10 + 90
    with pytest.raises(RateLimited):
        ratelimit.hit(buckets=[org(tpm=100)], tokens=1, now=NOW)


def test_many_threads_never_pass_the_limit(store) -> None:
    admitted, barrier = [], threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        for _ in range(10):
            try:
                ratelimit.hit(buckets=[org(rpm=37)], tokens=0, now=NOW)
            except RateLimited:
                continue
            admitted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 37


def test_unreachable_redis_raises_unavailable(settings) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with pytest.raises(RateLimiterUnavailable):
        ratelimit.hit(buckets=[org(rpm=1)], tokens=0, now=NOW)


def test_the_redis_script_is_one_round_trip(redis_url, settings, monkeypatch) -> None:
    from redis.connection import Connection

    settings.REDIS_URL = redis_url
    settings.GATEHOUSE_RATELIMIT_PREFIX = f"t:{uuid.uuid4().hex}"
    buckets = [org(rpm=5, tpm=500), Bucket("member:9", "you", 5, 500)]
    ratelimit.hit(buckets=buckets, tokens=1, now=NOW)  # loads the script
    sent = []
    original = Connection.send_packed_command

    def counting(self, command, check_health=True):  # observe the wire, change nothing
        sent.append(command)
        return original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    ratelimit.hit(buckets=buckets, tokens=1, now=NOW)
    assert len(sent) == 1  # one EVALSHA for four counters


def test_locmem_cache_is_the_embedded_default(settings) -> None:
    settings.REDIS_URL = ""
    settings.GATEHOUSE_RATELIMIT_PREFIX = f"t:{uuid.uuid4().hex}"
    ratelimit.hit(buckets=[org(rpm=2)], tokens=0, now=NOW)
    window = int(NOW // 60)
    assert cache.get(f"{settings.GATEHOUSE_RATELIMIT_PREFIX}:org:1:{window}:r") == 1
