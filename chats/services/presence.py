"""Per-chat state shared by every process through Django's cache (Redis in production): the
one-generation-at-a-time lock and the count of sockets watching the chat.

The functions here are synchronous on purpose: the message path calls them inside the thread hop
it already makes for its database work, so they cost no extra hop on the way to the first token.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache

from chats.models import Chat

logger = logging.getLogger(__name__)

# After the client leaves, a generation is read on for at most this long to learn its usage.
DRAIN_SECONDS = 10.0
# The lock outlives the longest possible generation (total timeout plus the drain, plus a margin
# for settlement), so a lock left by a crashed process frees itself; a live generation releases
# it when it settles.
LOCK_MARGIN_SECONDS = 30
# A watcher count left high by a crashed process only costs needless channel-layer sends; it
# expires a day after the last socket opened on the chat.
WATCHERS_TTL = 24 * 3600


def chat_key(chat: Chat) -> str:
    """The cache key stem of a chat. The creation time makes it unique even where ids are
    reused (a test database recreated, a restored backup), so a stale lock never hits a new
    chat."""
    return f"chat:{chat.pk}:{_created_us(chat)}"


def group_name(chat: Chat) -> str:
    """The chat's channel-layer group; unique per chat for the same reason as `chat_key`."""
    return f"chat.{chat.pk}.{_created_us(chat)}"


def _created_us(chat: Chat) -> int:
    return int(chat.created_at.timestamp() * 1_000_000)


def lock_ttl() -> int:
    return int(settings.GATEHOUSE_TIMEOUT_TOTAL + DRAIN_SECONDS + LOCK_MARGIN_SECONDS)


def lock_acquire(*, key: str, owner: str) -> bool:
    """`cache.add` is atomic in every backend that matters (Redis SET NX): one winner."""
    return cache.add(f"{key}:lock", owner, lock_ttl())


def lock_release(*, key: str, owner: str) -> None:
    # Only the holder deletes: should a generation outlive its lock (routing that waits long on
    # a provider's model list), another generation's lock must stay.
    if cache.get(f"{key}:lock") == owner:
        cache.delete(f"{key}:lock")


def watchers_count(*, key: str) -> int:
    return int(cache.get(f"{key}:watchers") or 0)


def watch(*, key: str) -> None:
    name = f"{key}:watchers"
    cache.add(name, 0, WATCHERS_TTL)
    try:
        cache.incr(name)
    except ValueError:  # expired between add and incr
        cache.set(name, 1, WATCHERS_TTL)
    cache.touch(name, WATCHERS_TTL)


def unwatch(*, key: str) -> None:
    name = f"{key}:watchers"
    try:
        if cache.decr(name) < 0:
            cache.set(name, 0, WATCHERS_TTL)
    except ValueError:  # expired: nothing to count down
        pass
