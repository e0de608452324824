"""A circuit breaker per route (credential, model), with its state in Django's cache so every
process sees the same state (local memory in development, Redis in production).

States, from three cache keys per route:

- CLOSED: no `open` key. Calls pass; `fails` counts consecutive failures. At `threshold`
  (GATEHOUSE_BREAKER_THRESHOLD, default 5) the route opens.
- OPEN: `open` holds the wall-clock time the cooldown ends (GATEHOUSE_BREAKER_COOLDOWN seconds,
  default 30). Calls are refused.
- HALF-OPEN: the cooldown has passed but no success has been seen. Exactly one caller gets
  through as a probe: `cache.add` on the `probe` key is the cross-process lock. A success closes
  the route (all keys deleted); a failure re-opens it for another cooldown. A probe that never
  reports (crashed process, cancelled request) is presumed lost when its lock expires, after
  one cooldown (at least a second), and another probe is let through.

Cost on the hot path: `allow` is one cache read (`get_many` of the open deadline and the
failure count) while closed; when that read finds the route clean, this process trusts it for
`clean_trust` seconds (GATEHOUSE_BREAKER_CLEAN_TRUST, default 1): calls within that window
cost no cache round trip at all, and neither does `record_success`, which otherwise reads once
and writes only when there was something to reset. The price: a route another process opens
is refused here up to one window later, and a success here does not reset failures another
process counted meanwhile. Failures may cost a few round trips: they are the rare path, and a
failure here ends this process's window at once.

Deadlines are stored as timestamps rather than left to key expiry because Redis timeouts are
whole seconds; key timeouts only garbage-collect state of routes no longer used.

Failures reported while the route is already open (requests that were in flight when it opened)
neither extend the cooldown nor count; any success, even from such a straggler, closes the route:
the provider demonstrably answered.

If the cache itself fails (Redis down), the breaker lets every call through and logs the error:
it protects providers from hammering, and must not take the gateway down with the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache

T = TypeVar("T")
logger = logging.getLogger(__name__)

_STATE_TTL = 3600  # seconds an idle route's state is kept (beyond its cooldown)
_SAFE_KEY = re.compile(r"[A-Za-z0-9_.:\-]{1,120}")


class CircuitBreaker:
    """Breaker state for any number of routes, in one cache. `threshold` and `cooldown` default
    to the settings, read at call time (so overriding settings in tests works)."""

    def __init__(
        self,
        *,
        cache: BaseCache | None = None,
        cache_alias: str = "default",
        threshold: int | None = None,
        cooldown: float | None = None,
        prefix: str = "breaker",
        clean_trust: float | None = None,
    ) -> None:
        self._cache = cache
        self._cache_alias = cache_alias
        self._threshold = threshold
        self._cooldown = cooldown
        self._prefix = prefix
        self._clean_trust = clean_trust
        # route key -> monotonic time until which a clean read is trusted
        self._clean_until: dict[str, float] = {}

    # --- configuration ----------------------------------------------------------------------

    @property
    def threshold(self) -> int:
        if self._threshold is not None:
            return self._threshold
        return max(1, int(getattr(settings, "GATEHOUSE_BREAKER_THRESHOLD", 5)))

    @property
    def cooldown(self) -> float:
        if self._cooldown is not None:
            return self._cooldown
        return float(getattr(settings, "GATEHOUSE_BREAKER_COOLDOWN", 30.0))

    @property
    def clean_trust(self) -> float:
        if self._clean_trust is not None:
            return self._clean_trust
        return float(getattr(settings, "GATEHOUSE_BREAKER_CLEAN_TRUST", 1.0))

    def _trusted_clean(self, key: str) -> bool:
        return self._clean_until.get(key, 0.0) > time.monotonic()

    @property
    def cache(self) -> BaseCache:
        if self._cache is None:
            self._cache = caches[self._cache_alias]
        return self._cache

    # --- hot path ---------------------------------------------------------------------------

    async def allow(self, key: str) -> bool:
        """May a call go to this route now? In half-open state, True for exactly one caller."""
        if self._trusted_clean(key):
            return True
        open_key, fails_key, probe_key = self._keys(key)
        found = await self._run(lambda: self.cache.get_many([open_key, fails_key]), None)
        if not found:
            if found is not None and self.clean_trust > 0:  # None: the cache failed
                self._clean_until[key] = time.monotonic() + self.clean_trust
            return True
        until = found.get(open_key)
        if until is None:
            return True
        now = time.time()
        if now < until:
            return False
        lock_ttl = max(1, math.ceil(self.cooldown))
        return await self._run(lambda: self.cache.add(probe_key, now, timeout=lock_ttl), True)

    async def record_success(self, key: str) -> None:
        """The route answered: close it. Writes nothing when it was already clean."""
        if self._trusted_clean(key):
            return
        open_key, fails_key, probe_key = self._keys(key)
        found = await self._run(lambda: self.cache.get_many([open_key, fails_key]), {})
        if found:
            await self._run(lambda: self.cache.delete_many([open_key, fails_key, probe_key]), None)

    async def record_failure(self, key: str) -> bool:
        """The route failed in a way that says it is unhealthy. Returns whether it is open now."""
        self._clean_until.pop(key, None)
        return await self._run(lambda: self._record_failure_sync(key), False)

    async def is_open(self, key: str) -> bool:
        """Read-only: is the route refusing calls (open and still cooling down)?"""
        open_key, _, _ = self._keys(key)
        until = await self._run(lambda: self.cache.get(open_key), None)
        return until is not None and time.time() < until

    async def reset(self, key: str) -> None:
        """Forget everything about the route (admin action, tests)."""
        keys = list(self._keys(key))
        await self._run(lambda: self.cache.delete_many(keys), None)

    # --- internals --------------------------------------------------------------------------

    def _record_failure_sync(self, key: str) -> bool:
        open_key, fails_key, probe_key = self._keys(key)
        cache = self.cache
        now = time.time()
        until = cache.get(open_key)
        if until is not None and now < until:
            return True  # a straggler from before it opened: the cooldown stands
        ttl = _STATE_TTL + math.ceil(self.cooldown)
        failures = self._increment(fails_key, ttl)
        if until is None and failures < self.threshold:
            return False
        # Threshold reached, or any failure while half-open (the probe failed): (re)open.
        cache.set(open_key, now + self.cooldown, timeout=ttl)
        cache.delete(probe_key)
        return True

    def _increment(self, fails_key: str, ttl: int) -> int:
        cache = self.cache
        if cache.add(fails_key, 1, timeout=ttl):
            return 1
        try:
            return cache.incr(fails_key)
        except ValueError:  # expired between add and incr
            cache.set(fails_key, 1, timeout=ttl)
            return 1

    def _keys(self, key: str) -> tuple[str, str, str]:
        # Route keys carry user-chosen names; hash anything a memcached-style key check (or a
        # human reading Redis) would stumble on.
        if not _SAFE_KEY.fullmatch(key):
            key = hashlib.sha256(key.encode()).hexdigest()[:32]
        base = f"{self._prefix}:{key}"
        return f"{base}:open", f"{base}:fails", f"{base}:probe"

    async def _run(self, fn: Callable[[], T], fallback: T) -> T:
        # An in-process cache answers in microseconds: calling it inline beats a thread hop.
        # Anything else (Redis) does network I/O, which must not block the event loop.
        try:
            if isinstance(self.cache, LocMemCache | DummyCache):
                return fn()
            return await asyncio.to_thread(fn)
        except Exception:
            # The breaker is an optimisation: a cache outage must not stop every provider call.
            logger.warning("circuit breaker cache unavailable; failing open", exc_info=True)
            return fallback


default_breaker = CircuitBreaker()


async def allow(key: str) -> bool:
    """`default_breaker.allow`: may a call go to this route now?"""
    return await default_breaker.allow(key)


async def record_success(key: str) -> None:
    """`default_breaker.record_success`."""
    await default_breaker.record_success(key)


async def record_failure(key: str) -> bool:
    """`default_breaker.record_failure`; True when the route is open afterwards."""
    return await default_breaker.record_failure(key)


async def is_open(key: str) -> bool:
    """`default_breaker.is_open`."""
    return await default_breaker.is_open(key)
