"""Requests and tokens per minute, per organisation, member and credential — across processes.

Fixed one-minute windows (aligned on the wall clock): a counter per (bucket, measure, minute).
A call names every bucket it counts against; it is admitted only if it fits in all of them, and
then counts in all of them — check and increment are one atomic step:

- With `settings.REDIS_URL`: one Lua script, one round trip. It reads every counter, refuses
  (incrementing none) when any would pass its limit, else increments them all. Redis runs a
  script atomically, so this holds for any number of processes. (The keys of one call must
  live on one Redis server: no Redis Cluster without hash tags.)
- Otherwise (the embedded default): Django's cache, `add` + `incr` per counter, giving back
  what was taken when a later counter refuses. `incr` is atomic in the local-memory cache, so
  this never admits too many, though two racing calls may both be refused at the edge.

Tokens are counted at admission as the estimated input plus `max_tokens` (the most the call
can use); settlement gives back what was not used (`refund`), so the allowance reflects real
use. Windows are fixed, so up to twice a limit can pass around a minute boundary.

Redis or the cache failing raises `RateLimiterUnavailable`; admission turns that into a
refusal (`service_unavailable`) unless `GATEHOUSE_RATELIMIT_FAIL_OPEN` is set.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

WINDOW = 60  # seconds
_KEY_TTL = 2 * WINDOW  # a window's counters outlive it briefly, then Redis drops them

# KEYS: the counters. ARGV[1]: TTL; then (limit, increment) for each key.
# Returns 0 when admitted, else the 1-based index of the first key that refused.
_HIT = """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local current = tonumber(redis.call('GET', key) or '0')
  if current + tonumber(ARGV[2 * i + 1]) > tonumber(ARGV[2 * i]) then
    return i
  end
end
for i, key in ipairs(KEYS) do
  redis.call('INCRBY', key, ARGV[2 * i + 1])
  redis.call('EXPIRE', key, ttl)
end
return 0
"""

# KEYS[1]: the once-only marker; KEYS[2..]: counters. ARGV[1]: marker TTL; ARGV[2]: amount.
# Gives back `amount` on each counter that still exists, at most once per marker.
_REFUND = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
for i = 2, #KEYS do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  if current > 0 then
    redis.call('DECRBY', KEYS[i], math.min(current, tonumber(ARGV[2])))
  end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Bucket:
    """One allowance: `key` names whose it is ("org:3", "member:12", "cred:5"), `label` says
    it to people. A None limit is not counted."""

    key: str
    label: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class Ticket:
    """What an admitted call counted, so settlement can give back unused tokens."""

    token_keys: tuple[str, ...]
    tokens: int


class RateLimited(Exception):
    def __init__(self, bucket: Bucket, measure: str, limit: int, retry_after: int) -> None:
        self.bucket = bucket
        self.measure = measure
        self.limit = limit
        self.retry_after = retry_after
        super().__init__(f"{bucket.label}: {limit} {measure} per minute")


class RateLimiterUnavailable(Exception):
    """The counter store (Redis or the cache) could not be reached."""


@dataclass(frozen=True, slots=True)
class _Counter:
    key: str
    bucket: Bucket
    measure: str
    limit: int
    increment: int


def _prefix() -> str:
    return getattr(settings, "GATEHOUSE_RATELIMIT_PREFIX", "gh:rl")


def _counters(buckets: Sequence[Bucket], tokens: int, window: int) -> list[_Counter]:
    counters = []
    for bucket in buckets:
        base = f"{_prefix()}:{bucket.key}:{window}"
        if bucket.requests_per_minute is not None:
            counters.append(
                _Counter(f"{base}:r", bucket, "requests", bucket.requests_per_minute, 1)
            )
        if bucket.tokens_per_minute is not None:
            limit = bucket.tokens_per_minute
            counters.append(_Counter(f"{base}:t", bucket, "tokens", limit, tokens))
    return counters


def _retry_after(now: float) -> int:
    return max(1, math.ceil(WINDOW - now % WINDOW))


def hit(*, buckets: Sequence[Bucket], tokens: int, now: float | None = None) -> Ticket | None:
    """Count one call of (up to) `tokens` tokens against every bucket, or refuse it with
    `RateLimited` counting nothing. None when no bucket has a limit (nothing was counted)."""
    now = time.time() if now is None else now
    counters = _counters(buckets, tokens, int(now // WINDOW))
    if not counters:
        return None
    refused = _redis_hit(counters) if _redis_url() else _cache_hit(counters)
    if refused is not None:
        retry = _retry_after(now)
        raise RateLimited(refused.bucket, refused.measure, refused.limit, retry)
    token_keys = tuple(c.key for c in counters if c.measure == "tokens")
    return Ticket(token_keys, tokens) if token_keys else None


def refund(*, ticket: Ticket | None, tokens: int, marker: str) -> None:
    """Give back `tokens` of a call's token count, once per `marker` (the request id). Best
    effort: a failure only makes the allowance stricter for the rest of the minute."""
    if ticket is None or tokens <= 0:
        return
    try:
        if _redis_url():
            _redis_refund(ticket, tokens, marker)
        else:
            _cache_refund(ticket, tokens, marker)
    except RateLimiterUnavailable:
        logger.warning("rate-limit refund for %s skipped: counter store unavailable", marker)


# --- Redis ----------------------------------------------------------------------------------


def _redis_url() -> str:
    return getattr(settings, "REDIS_URL", "") or ""


@lru_cache(maxsize=4)
def _client(url: str) -> Any:
    import redis

    # Short timeouts: a dead Redis must refuse calls quickly, not hang them.
    timeout = float(getattr(settings, "GATEHOUSE_RATELIMIT_TIMEOUT", 0.5))
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


@lru_cache(maxsize=4)
def _scripts(url: str) -> tuple[Any, Any]:
    client = _client(url)
    return client.register_script(_HIT), client.register_script(_REFUND)


def _redis_hit(counters: list[_Counter]) -> _Counter | None:
    import redis

    script, _ = _scripts(_redis_url())
    args: list[int] = [_KEY_TTL]
    for counter in counters:
        args += [counter.limit, counter.increment]
    try:
        refused = int(script(keys=[c.key for c in counters], args=args))
    except redis.RedisError as exc:
        raise RateLimiterUnavailable(str(exc)) from exc
    return counters[refused - 1] if refused else None


def _redis_refund(ticket: Ticket, tokens: int, marker: str) -> None:
    import redis

    _, script = _scripts(_redis_url())
    keys = [f"{_prefix()}:refund:{marker}", *ticket.token_keys]
    try:
        script(keys=keys, args=[_KEY_TTL, tokens])
    except redis.RedisError as exc:
        raise RateLimiterUnavailable(str(exc)) from exc


# --- Django cache (embedded default) --------------------------------------------------------


def _cache_incr(key: str, delta: int) -> int:
    cache.add(key, 0, timeout=_KEY_TTL)
    try:
        return cache.incr(key, delta)
    except ValueError:  # expired between add and incr
        cache.add(key, 0, timeout=_KEY_TTL)
        return cache.incr(key, delta)


def _cache_hit(counters: list[_Counter]) -> _Counter | None:
    taken: list[_Counter] = []
    try:
        for counter in counters:
            taken.append(counter)
            if _cache_incr(counter.key, counter.increment) > counter.limit:
                for done in taken:
                    cache.decr(done.key, done.increment)
                return counter
    except Exception as exc:  # any cache backend's connection error
        raise RateLimiterUnavailable(str(exc)) from exc
    return None


def _cache_refund(ticket: Ticket, tokens: int, marker: str) -> None:
    try:
        if not cache.add(f"{_prefix()}:refund:{marker}", 1, timeout=_KEY_TTL):
            return
        for key in ticket.token_keys:
            current = cache.get(key)
            if current:
                cache.decr(key, min(int(current), tokens))
    except Exception as exc:
        raise RateLimiterUnavailable(str(exc)) from exc
