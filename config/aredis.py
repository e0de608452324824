"""Django's Redis cache from the event loop, for the chat lock and watcher count on the way to a
first token (`chats.services.presence`).

Django's async cache methods are its sync ones run in a thread (a hop each). This client speaks
to the same Redis with redis-py's asyncio client, under the cache's own key names and value
encoding, so that keys written here read the same through `django.core.cache.cache` and back.
Only where the default cache is Redis.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache, RedisSerializer
from redis import asyncio as aioredis

_serializer = RedisSerializer()
_clients: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}


def enabled() -> bool:
    return isinstance(caches["default"], RedisCache)


def key(name: str) -> str:
    """The Redis key the cache stores `name` under (its prefix and version)."""
    return cache.make_and_validate_key(name)


def dumps(value: Any) -> Any:
    """A value as the cache encodes it (integers plain, anything else pickled)."""
    return _serializer.dumps(value)


def loads(value: Any) -> Any:
    return None if value is None else _serializer.loads(value)


def client() -> aioredis.Redis:
    """The running loop's client (its connections belong to that loop)."""
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None:
        for other in [known for known in _clients if known.is_closed()]:
            del _clients[other]
        found = _clients[loop] = aioredis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    return found


async def close() -> None:
    """Close the running loop's client (tests; a server's shutdown)."""
    found = _clients.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.aclose()
