"""`chats.services.presence`: the chat's lock is held by one answer at a time, given back only by
its holder, and frees itself once expired; the count of watching sockets goes up and down and
is forgotten once stale. The same statements on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chats.models import Chat, ChatPresence
from chats.services import presence

pytestmark = pytest.mark.django_db


def test_one_holder_at_a_time_and_only_the_holder_releases(chat: Chat) -> None:
    assert presence.claim(chat_id=chat.pk, owner="first") == 0
    assert presence.claim(chat_id=chat.pk, owner="second") is None
    assert presence.lock_holder(chat_id=chat.pk) == "first"
    presence.lock_release(chat_id=chat.pk, owner="second")  # not its lock: nothing happens
    assert presence.lock_holder(chat_id=chat.pk) == "first"
    presence.lock_release(chat_id=chat.pk, owner="first")
    assert presence.lock_holder(chat_id=chat.pk) is None
    assert presence.claim(chat_id=chat.pk, owner="second") == 0


def test_an_expired_lock_is_taken_over(chat: Chat) -> None:
    # A process that crashed mid-answer never released its lock.
    assert presence.claim(chat_id=chat.pk, owner="crashed") is not None
    ChatPresence.objects.filter(chat=chat).update(lock_until=timezone.now() - timedelta(seconds=1))
    assert presence.lock_holder(chat_id=chat.pk) is None
    assert presence.claim(chat_id=chat.pk, owner="next") == 0
    assert presence.lock_holder(chat_id=chat.pk) == "next"


def test_the_claim_counts_the_watching_sockets(chat: Chat, bob_chat: Chat) -> None:
    presence.watch(chat_id=chat.pk)
    presence.watch(chat_id=chat.pk)
    presence.unwatch(chat_id=chat.pk)
    presence.watch(chat_id=bob_chat.pk)
    assert presence.claim(chat_id=chat.pk, owner="answer") == 1
    presence.unwatch(chat_id=chat.pk)
    presence.unwatch(chat_id=chat.pk)  # never below zero
    presence.lock_release(chat_id=chat.pk, owner="answer")
    assert presence.claim(chat_id=chat.pk, owner="answer") == 0


def test_a_stale_watcher_count_is_forgotten(chat: Chat) -> None:
    # Sockets of a process that crashed were never counted down.
    presence.watch(chat_id=chat.pk)
    presence.watch(chat_id=chat.pk)
    ChatPresence.objects.filter(chat=chat).update(
        watchers_until=timezone.now() - timedelta(seconds=1)
    )
    assert presence.claim(chat_id=chat.pk, owner="answer") == 0
    presence.watch(chat_id=chat.pk)  # counting starts again from this socket
    presence.lock_release(chat_id=chat.pk, owner="answer")
    assert presence.claim(chat_id=chat.pk, owner="answer") == 1


def test_the_lock_goes_with_its_chat(chat: Chat) -> None:
    assert presence.claim(chat_id=chat.pk, owner="answer") is not None
    chat.delete()
    assert not ChatPresence.objects.exists()
