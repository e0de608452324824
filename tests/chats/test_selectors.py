"""Reads on the per-message path: the gate with the caller's rights, and the history."""

from __future__ import annotations

import pytest

from accounts.models import Membership
from accounts.tokens import token_issue, token_revoke
from chats.models import Chat, Message
from chats.selectors import chat_for_message, history_for_context
from chats.services.errors import AccessRevoked, ChatNotFound

pytestmark = pytest.mark.django_db


def test_the_gate_returns_the_members_own_chat(alice_membership: Membership, chat: Chat) -> None:
    found = chat_for_message(membership=alice_membership, token=None, chat_id=chat.pk)
    assert found == chat
    assert found.created_at == chat.created_at  # converted like any model field


def test_another_members_chat_is_not_found(bob_membership: Membership, chat: Chat) -> None:
    with pytest.raises(ChatNotFound):
        chat_for_message(membership=bob_membership, token=None, chat_id=chat.pk)


def test_a_revoked_token_is_told_apart_from_a_missing_chat(
    alice_membership: Membership, chat: Chat
) -> None:
    issued = token_issue(membership=alice_membership, name="t")
    assert chat_for_message(membership=alice_membership, token=issued.token, chat_id=chat.pk)
    token_revoke(token=issued.token)
    with pytest.raises(AccessRevoked):
        chat_for_message(membership=alice_membership, token=issued.token, chat_id=chat.pk)


def test_a_deactivated_user_loses_access(alice_membership: Membership, chat: Chat) -> None:
    alice_membership.user.is_active = False
    alice_membership.user.save()
    with pytest.raises(AccessRevoked):
        chat_for_message(membership=alice_membership, token=None, chat_id=chat.pk)


def test_history_holds_user_turns_and_answers_with_text_oldest_first(chat: Chat) -> None:
    rows = [
        ("user", "one", "complete"),
        ("assistant", "answer one", "complete"),
        ("user", "two", "complete"),
        ("assistant", "", "error"),
        ("user", "three", "complete"),
        ("assistant", "half an answ", "cancelled"),
        ("assistant", "broken", "error"),
        ("assistant", "", "streaming"),
    ]
    Message.objects.bulk_create(
        Message(chat=chat, role=role, content=content, status=status)
        for role, content, status in rows
    )
    assert history_for_context(chat_id=chat.pk) == [
        ("user", "one"),
        ("assistant", "answer one"),
        ("user", "two"),
        ("user", "three"),
        ("assistant", "half an answ"),
    ]
