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
from config import apg, aredis

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


def lock_owner(request_id: str, channel: str | None) -> str:
    """The lock's value for an answer: its request id, and the channel-layer channel that
    generates it, where a cancel reaches it (`chats.services.cancelling`)."""
    return f"{request_id} {channel or ''}"


def owner_channel(owner: object) -> str | None:
    """The channel named in a lock value (None: none, or no lock)."""
    if not isinstance(owner, str):
        return None
    return owner.partition(" ")[2] or None


def lock_ttl() -> int:
    return int(settings.GATEHOUSE_TIMEOUT_TOTAL + DRAIN_SECONDS + LOCK_MARGIN_SECONDS)


def lock_acquire(*, key: str, owner: str) -> bool:
    """`cache.add` is atomic in every backend that matters (Redis SET NX): one winner."""
    return cache.add(f"{key}:lock", owner, lock_ttl())


async def aclaim(*, key: str, owner: str) -> tuple[bool, int]:
    """`lock_acquire` and `watchers_count` in one round trip from the event loop (Redis only:
    see `config.aredis`): whether the lock was taken, and how many sockets watch the chat."""
    pipe = aredis.client().pipeline(transaction=False)
    pipe.set(aredis.key(f"{key}:lock"), aredis.dumps(owner), nx=True, ex=lock_ttl())
    pipe.get(aredis.key(f"{key}:watchers"))
    taken, watchers = await pipe.execute()
    return bool(taken), int(aredis.loads(watchers) or 0)


# Compare-and-delete in one step: only the holder's value deletes the key.
_RELEASE_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def on_loop() -> bool:
    """Whether the chat lock and watcher count can be reached from the event loop (Redis), and
    the database too (PostgreSQL): the conditions of the message path's hop-free steps."""
    return aredis.enabled() and apg.enabled()


async def arelease(*, key: str, owner: str) -> None:
    """`lock_release` from the event loop, in one round trip."""
    await aredis.client().eval(_RELEASE_LUA, 1, aredis.key(f"{key}:lock"), aredis.dumps(owner))


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
