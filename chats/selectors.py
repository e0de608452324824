"""Reads of chats. Every lookup is scoped to the caller's membership: the tenant gates here raise
`ChatNotFound` (404) for other organisations' and other members' chats alike."""

from __future__ import annotations

import json
from typing import NoReturn

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import F, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.models import ApiToken, Membership, Organization, User
from chats.models import Chat, Message, SystemPrompt
from chats.services import presence
from chats.services.errors import AccessRevoked, ChatNotFound
from config import apg
from config.dbhop import db_hop

#: the most messages read back to build a context; the model's window trims further
HISTORY_LIMIT = 200

_CONTEXT_STATUSES = [
    Message.Status.COMPLETE.value,
    Message.Status.PARTIAL.value,
    Message.Status.CANCELLED.value,
]


def chat_list(*, membership: Membership, archived: bool = False) -> QuerySet[Chat]:
    """Newest first."""
    return Chat.objects.for_member(membership).filter(archived=archived)


def chat_get_for_member(*, membership: Membership, chat_id: int) -> Chat:
    """The tenant gate of chats."""
    chat = Chat.objects.for_member(membership).filter(pk=chat_id).first()
    if chat is None:
        raise ChatNotFound()
    return chat


# The per-message reads below are SQL rather than querysets: they run before every answer's
# first token, where compiling the equivalent queryset costs several times executing it (about
# 0.9 ms of CPU against 0.2 for the gate, 0.6 against 0.1 for the history, measured). Table
# names come from the models; every value is a parameter.
_CHAT_FIELDS = [field.attname for field in Chat._meta.concrete_fields]
_CHAT_COLUMNS = ", ".join(f"c.{field.column}" for field in Chat._meta.concrete_fields)
_GATE_SQL = f"""
    SELECT {_CHAT_COLUMNS},
           (SELECT o.settings_version FROM {Organization._meta.db_table} o
            WHERE o.id = c.organization_id) AS settings_version
    FROM {Chat._meta.db_table} c
    WHERE c.id = %s AND c.organization_id = %s AND c.owner_id = %s
      AND EXISTS (SELECT 1 FROM {Membership._meta.db_table} m
                  JOIN {User._meta.db_table} u ON u.id = m.user_id
                  WHERE m.id = %s AND u.is_active = %s)"""  # noqa: S608 - no user input
_TOKEN_SQL = f"""
      AND EXISTS (SELECT 1 FROM {ApiToken._meta.db_table} t
                  WHERE t.id = %s AND t.membership_id = %s AND t.revoked_at IS NULL
                    AND (t.expires_at IS NULL OR t.expires_at > %s))"""  # noqa: S608
_HISTORY_OF = f"""
    SELECT {{columns}} FROM {Message._meta.db_table}
    WHERE chat_id = {{chat}} AND content <> '' AND (role = %s OR status IN (%s, %s, %s))
    ORDER BY id DESC LIMIT {HISTORY_LIMIT}"""  # noqa: S608
_HISTORY_SQL = _HISTORY_OF.format(columns="role, content", chat="%s")
_HISTORY_PARAMS = [Message.Role.USER.value, *_CONTEXT_STATUSES]


def _gate(
    membership: Membership, token: ApiToken | None, chat_id: int, now: object
) -> tuple[str, list[object]]:
    sql = _GATE_SQL
    params = [chat_id, membership.organization_id, membership.user_id, membership.pk, True]
    if token is not None:
        sql += _TOKEN_SQL
        params += [token.pk, membership.pk, now]
    return sql, params


def _gated(membership: Membership, chat: Chat) -> Chat:
    # A socket's membership was read when it opened: bring the version of its organisation's
    # settings up to date, so routing and admission read current ones.
    organization = membership.organization
    organization.settings_version = max(organization.settings_version, chat.settings_version)
    return chat


def chat_for_message(*, membership: Membership, token: ApiToken | None, chat_id: int) -> Chat:
    """The tenant gate and the caller's rights (membership, user, token) in one query, for the
    per-message path. Raises `AccessRevoked` when the membership or token no longer grants
    access, `ChatNotFound` when the chat is not the caller's."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    chat = next(iter(Chat.objects.raw(*_gate(membership, token, chat_id, now))), None)
    if chat is not None:
        return _gated(membership, chat)
    _refuse(membership=membership, token=token)


def _refuse(*, membership: Membership, token: ApiToken | None) -> NoReturn:
    """The rare path: tell "no longer allowed" from "no such chat"."""
    if not access_valid(membership=membership, token=token):
        raise AccessRevoked()
    raise ChatNotFound()


# PostgreSQL, from the event loop: the gate, the chat's lock and the history in one statement,
# the history as a JSON array of [role, content], oldest first; and, the gate passed, two ids of
# the message table for the message and its answer: their rows can then be written while the
# provider call opens, without the start frame (which names them) waiting for the INSERT. An id
# drawn for a call that does not go ahead is simply never used. The lock is claimed only for a
# chat that passed the gate (`presence.claim_from`); its result is NULL when the chat is busy.
_MESSAGE_ID = f"nextval(pg_get_serial_sequence('{Message._meta.db_table}', 'id'))"
_CLAIM_CTE = presence.claim_from("SELECT g.id, %s, %s, 0, NULL FROM g")
_GATE_HISTORY_SQL = f"""
    WITH g AS ({{gate}}), claim AS ({_CLAIM_CTE})
    SELECT g.*, (SELECT coalesce(json_agg(json_build_array(h.role, h.content) ORDER BY h.id),
                                 '[]')::text
                 FROM ({_HISTORY_OF.format(columns="id, role, content", chat="g.id")}) h),
           {_MESSAGE_ID}, {_MESSAGE_ID}, (SELECT watching FROM claim)
    FROM g"""  # noqa: S608 - no user input


async def achat_for_message(
    *, membership: Membership, token: ApiToken | None, chat_id: int, owner: str
) -> tuple[Chat, list[tuple[str, str]], tuple[int, int], int | None]:
    """`chat_for_message`, `presence.claim` and `history_for_context` in one statement on the
    event loop's own connection (`config.apg`; PostgreSQL only), with the ids the message and its
    answer will have (the smaller the message's). The last value is how many sockets watch the
    chat, or None when its lock is held by another answer."""
    now = timezone.now()
    gate, params = _gate(membership, token, chat_id, now)
    sql = _GATE_HISTORY_SQL.format(gate=gate)
    claim = presence.claim_params(owner, now)
    try:
        row = await apg.fetchone(sql, [*params, *claim, *_HISTORY_PARAMS])
    except psycopg.errors.ForeignKeyViolation:
        # The lock's row refers to a chat deleted meanwhile (`presence.holder_for_delete`).
        row = None
    if row is None:
        await db_hop(_refuse, membership=membership, token=token)
    *values, version, history, first, second, watchers = row
    chat = Chat.from_db(DEFAULT_DB_ALIAS, _CHAT_FIELDS, values)
    chat.settings_version = version
    turns = [(role, text) for role, text in json.loads(history)]
    ids = (min(first, second), max(first, second))
    return _gated(membership, chat), turns, ids, watchers


def message_list(*, chat: Chat) -> QuerySet[Message]:
    """Oldest first, as a conversation reads."""
    return Message.objects.filter(chat=chat).order_by("id")


def history_for_context(*, chat_id: int) -> list[tuple[str, str]]:
    """(role, content) of the chat's recent turns worth sending back to a model, oldest first:
    user messages, and answers that produced text (complete, partial or cancelled)."""
    with connection.cursor() as cursor:
        cursor.execute(_HISTORY_SQL, [chat_id, *_HISTORY_PARAMS])
        rows = cursor.fetchall()
    rows.reverse()
    return rows


def access_valid(*, membership: Membership, token: ApiToken | None) -> bool:
    """Whether the membership (and the token, for token-authenticated callers) still grants
    access: a removed member, a deactivated user, a revoked or expired token do not."""
    if token is not None:
        return _valid_token(membership=membership, token=token).exists()
    return Membership.objects.filter(pk=membership.pk, user__is_active=True).exists()


def _valid_token(*, membership: Membership, token: ApiToken) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(
        pk=token.pk,
        membership_id=membership.pk,
        revoked_at__isnull=True,
        membership__user__is_active=True,
    ).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))


def socket_access(
    *, user: User, token: ApiToken | None, chat_id: int
) -> tuple[Membership, Chat] | None:
    """The membership a socket on `chat_id` acts through, and the chat; None when the caller
    may not see the chat. A token is bound to its membership; a session user acts in the
    chat's organisation, if they still belong to it."""
    if token is not None:
        membership: Membership | None = token.membership
    else:
        organization_id = (
            Chat.objects.filter(pk=chat_id, owner=user).values_list("organization_id", flat=True)
        ).first()
        if organization_id is None:
            return None
        membership = (
            Membership.objects.for_user(user).filter(organization_id=organization_id).first()
        )
    if membership is None:
        return None
    chat = Chat.objects.for_member(membership).filter(pk=chat_id).first()
    return None if chat is None else (membership, chat)


def system_prompt_list(*, membership: Membership) -> QuerySet[SystemPrompt]:
    return SystemPrompt.objects.for_member(membership).select_related("owner")


def system_prompt_get_for_member(*, membership: Membership, prompt_id: int) -> SystemPrompt:
    """The tenant gate of system prompts: another member's personal prompt is a 404."""
    prompt = system_prompt_list(membership=membership).filter(pk=prompt_id).first()
    if prompt is None:
        raise Http404("No such system prompt.")
    return prompt


def system_prompt_default(*, membership: Membership) -> SystemPrompt | None:
    """The prompt that seeds a new chat: the member's own default, else the organisation's."""
    defaults = system_prompt_list(membership=membership).filter(is_default=True)
    # NULLs sort last in ascending order on PostgreSQL and first on SQLite: be explicit.
    return defaults.order_by(F("owner_id").asc(nulls_last=True)).first()
