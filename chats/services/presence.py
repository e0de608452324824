"""Per-chat state shared by every process, in the database (`ChatPresence`): the
one-answer-at-a-time lock, and the count of sockets watching the chat.

In the database rather than a cache so that it costs the message path no round trip of its own:
on PostgreSQL the lock is taken by the statement that gates the chat and reads its history
(`chats.selectors.achat_for_message`, with `claim_from`), and given back by the statement that
settles the answer (`RELEASE_SQL`, one of its `also`). Elsewhere (SQLite, the in-process
tests) the same statements run on Django's connection, in the thread hop the message path makes
anyway. Each is one atomic statement: an upsert whose conflict clause re-reads the row it locks,
so of two processes claiming a free chat exactly one wins.

Times are the application's clock (every process of a deployment shares one, as they share the
database), passed as parameters so that the same SQL runs on PostgreSQL and SQLite.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from chats.models import Chat, ChatPresence
from config import apg

# After the client leaves, a generation is read on for at most this long to learn its usage.
DRAIN_SECONDS = 10.0
# The lock outlives the longest possible generation (total timeout plus the drain, plus a margin
# for settlement), so a lock left by a crashed process frees itself; a live generation releases
# it when it settles.
LOCK_MARGIN_SECONDS = 30
# A watcher count left high by a crashed process only costs needless channel-layer sends; it
# is forgotten a day after the last socket opened on the chat.
WATCHERS_TTL = timedelta(days=1)

_TABLE = ChatPresence._meta.db_table

# Takes the lock when the chat has no row yet, or its lock is free or expired; its result (one
# row, or none when the chat is busy) is how many sockets watch the chat. `{source}` gives the
# new row: (chat id, owner, lock expiry, 0, NULL). Parameters after it: now, now.
_CLAIM = f"""
    INSERT INTO {_TABLE} (chat_id, lock_owner, lock_until, watchers, watchers_until) {{source}}
    ON CONFLICT (chat_id) DO UPDATE
        SET lock_owner = excluded.lock_owner, lock_until = excluded.lock_until
        WHERE {_TABLE}.lock_until IS NULL OR {_TABLE}.lock_until <= %s
    RETURNING CASE WHEN watchers_until > %s THEN watchers ELSE 0 END AS watching"""  # noqa: S608
_CLAIM_SQL = _CLAIM.format(source="VALUES (%s, %s, %s, 0, NULL)")
# Only the holder gives the lock back: should an answer outlive its lock, another answer's lock
# must stay.
RELEASE_SQL = (
    f"UPDATE {_TABLE} SET lock_owner = '', lock_until = NULL "  # noqa: S608
    "WHERE chat_id = %s AND lock_owner = %s"
)
_HOLDER_SQL = f"SELECT lock_owner FROM {_TABLE} WHERE chat_id = %s AND lock_until > %s"  # noqa: S608
_WATCH_SQL = f"""
    INSERT INTO {_TABLE} (chat_id, lock_owner, lock_until, watchers, watchers_until)
    VALUES (%s, '', NULL, 1, %s)
    ON CONFLICT (chat_id) DO UPDATE SET
        watchers = CASE WHEN {_TABLE}.watchers_until > %s THEN {_TABLE}.watchers + 1 ELSE 1 END,
        watchers_until = excluded.watchers_until"""  # noqa: S608
_UNWATCH_SQL = f"""
    UPDATE {_TABLE} SET watchers = watchers - 1
    WHERE chat_id = %s AND watchers > 0 AND watchers_until > %s"""  # noqa: S608


def group_name(chat: Chat) -> str:
    """The chat's channel-layer group. The creation time makes it unique even where ids are
    reused (a test database recreated, a restored backup), so a stale group never reaches a new
    chat's sockets."""
    return f"chat.{chat.pk}.{int(chat.created_at.timestamp() * 1_000_000)}"


def lock_owner(request_id: str, channel: str | None) -> str:
    """The lock's value for an answer: its request id, and the channel-layer channel that
    generates it, where a cancel reaches it (`chats.services.cancelling`)."""
    return f"{request_id} {channel or ''}"


def owner_channel(owner: object) -> str | None:
    """The channel named in a lock value (None: none, or no lock)."""
    if not isinstance(owner, str):
        return None
    return owner.partition(" ")[2] or None


def lock_ttl() -> float:
    return settings.GATEHOUSE_TIMEOUT_TOTAL + DRAIN_SECONDS + LOCK_MARGIN_SECONDS


def on_loop() -> bool:
    """Whether the message path's database steps run on the event loop (`config.apg`)."""
    return apg.enabled()


# --- for the statements of the message path ---------------------------------------------------


def claim_from(source: str) -> str:
    """The claim as a data-modifying CTE of another statement: `source` is a SELECT giving the
    new row, so the lock is taken only where it returns one (a chat that passed its gate).
    Parameters: `claim_params`, the source's two first."""
    return _CLAIM.format(source=source)


def claim_params(owner: str, now: datetime) -> list[Any]:
    """The claim's parameters after the chat's id: the owner and the lock's expiry (the new
    row's values), then now twice (the expiry test, the watchers' freshness)."""
    return [owner, now + timedelta(seconds=lock_ttl()), now, now]


# --- on Django's connection (a thread) ------------------------------------------------------


def _adapted(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def claim(*, chat_id: int, owner: str) -> int | None:
    """Take the chat's lock: how many sockets watch the chat, or None when it is busy."""
    owner, *times = claim_params(owner, timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, [chat_id, owner, *map(_adapted, times)])
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def lock_release(*, chat_id: int, owner: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(RELEASE_SQL, [chat_id, owner])


def lock_holder(*, chat_id: int) -> str | None:
    """The lock's value while an answer holds it, else None."""
    with connection.cursor() as cursor:
        cursor.execute(_HOLDER_SQL, [chat_id, _adapted(timezone.now())])
        row = cursor.fetchone()
    return None if row is None else row[0]


def holder_for_delete(*, chat_id: int) -> str | None:
    """`lock_holder` for a chat about to be deleted, in the deleting transaction: the chat's row
    and its presence row are locked first, so no answer can take the lock between this read and
    the delete. A claim in flight is waited for and its holder read; one that comes after waits
    for the delete and then fails as the chat not found."""
    list(Chat.objects.select_for_update().filter(pk=chat_id).values_list("pk"))
    list(ChatPresence.objects.select_for_update().filter(chat_id=chat_id).values_list("pk"))
    return lock_holder(chat_id=chat_id)


def watch(*, chat_id: int) -> None:
    """Count one more socket on the chat."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_WATCH_SQL, [chat_id, _adapted(now + WATCHERS_TTL), _adapted(now)])


def unwatch(*, chat_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_UNWATCH_SQL, [chat_id, _adapted(timezone.now())])


# --- on the event loop (PostgreSQL) -----------------------------------------------------------


async def arelease(*, chat_id: int, owner: str) -> None:
    """`lock_release` from the event loop, where settlement could not say it (a refusal after
    the gate, a gate given up on)."""
    await apg.execute(RELEASE_SQL, [chat_id, owner])
