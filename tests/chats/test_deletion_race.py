"""A message that arrives while its chat is being deleted: the deletion reads who generates the
chat's answer under the rows' locks (`presence.holder_for_delete`), so an answer cannot take the
chat's lock unseen in between; it waits for the delete and is refused as "not found", leaving
nothing behind. The race itself on PostgreSQL only: row locks are what is tested (SQLite
serialises every write)."""

from __future__ import annotations

import threading
import time

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, connections, transaction

from accounts.models import Membership
from chats.models import Chat, ChatPresence, Message
from chats.services import presence
from chats.services.errors import ChatNotFound
from chats.services.inputs import MessageInput
from chats.services.messages import message_start
from tests.conftest import ON_POSTGRES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_path")]


def _someone_waits_on_a_lock(timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.02)
    return False


@pytest.mark.skipif(not ON_POSTGRES, reason="row locks: PostgreSQL only")
@pytest.mark.parametrize("watched", [False, True], ids=["no presence row", "a socket watching"])
def test_a_message_arriving_mid_deletion_waits_and_is_refused_as_not_found(
    creds, alice_membership: Membership, chat: Chat, watched: bool
) -> None:
    if watched:  # the presence row exists: the claim updates it rather than inserting one
        presence.watch(chat_id=chat.pk)
    locked, go_on = threading.Event(), threading.Event()
    seen: list[str | None] = []

    def delete() -> None:
        try:
            with transaction.atomic():
                seen.append(presence.holder_for_delete(chat_id=chat.pk))
                locked.set()
                go_on.wait(15)
                Chat.objects.filter(pk=chat.pk).delete()
        finally:
            connections.close_all()

    outcome: list[BaseException | str] = []

    def send() -> None:
        try:
            async_to_sync(message_start)(
                membership=alice_membership,
                chat_id=chat.pk,
                message=MessageInput(content="Hello sim:chunks=2"),
            )
            outcome.append("started")
        except BaseException as exc:
            outcome.append(exc)
        finally:
            connections.close_all()

    deleter = threading.Thread(target=delete)
    deleter.start()
    assert locked.wait(10)
    sender = threading.Thread(target=send)
    sender.start()
    try:
        # The message's claim of the chat's lock waits for the deleting transaction.
        assert _someone_waits_on_a_lock(), "the claim did not wait for the deletion"
        assert not outcome
    finally:
        go_on.set()
        deleter.join(15)
        sender.join(15)

    assert seen == [None]  # nothing was generating when the deletion looked
    assert len(outcome) == 1 and isinstance(outcome[0], ChatNotFound), outcome
    assert not Chat.objects.filter(pk=chat.pk).exists()
    assert not Message.objects.filter(chat_id=chat.pk).exists()
    assert not ChatPresence.objects.filter(chat_id=chat.pk).exists()


def test_the_deletion_reads_the_answer_that_holds_the_lock(chat: Chat) -> None:
    assert presence.claim(chat_id=chat.pk, owner="req-1 specific.channel!abc") is not None
    with transaction.atomic():
        holder = presence.holder_for_delete(chat_id=chat.pk)
    assert presence.owner_channel(holder) == "specific.channel!abc"
