"""The database writes of one answer, each made in one thread hop: the user message and the
answer's placeholder when it starts, the answer's final state when it ends.

SQL rather than the ORM, for the same reason as the per-message reads in `chats.selectors`: the
ORM's compile step costs more CPU than the statement (about 1 ms against 0.3 here), once per
answer. Every column of Message is written: a new column needs adding here (every answer in the
tests goes through these statements).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from chats.models import Chat, Message
from chats.services import presence
from config import apg
from config.db import offline
from providers.budget import Expression
from providers.routing import Route

_TABLE = Message._meta.db_table
_COLUMNS = (
    "chat_id, role, content, status, provider, model, credential_id, error_code, "
    "finish_reason, request_id, usage_id, created_at, updated_at"
)
_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
_INSERT_SQL = f"INSERT INTO {_TABLE} ({_COLUMNS}) VALUES {_ROW}, {_ROW} RETURNING id, role"  # noqa: S608
_ROW_WITH_ID = "(%s, " + _ROW[1:]
_INSERT_WITH_IDS_SQL = (
    f"INSERT INTO {_TABLE} (id, {_COLUMNS}) VALUES {_ROW_WITH_ID}, {_ROW_WITH_ID}"  # noqa: S608
)
_FINISH_SQL = (
    f"UPDATE {_TABLE} SET status = %s, content = %s, provider = %s, model = %s, "  # noqa: S608
    "credential_id = %s, error_code = %s, finish_reason = %s, usage_id = {usage}, "
    "updated_at = %s WHERE id = %s"
)
_FINISH_BY_VALUE_SQL = _FINISH_SQL.format(usage="%s")
_TITLE_SQL = f"UPDATE {Chat._meta.db_table} SET title = %s WHERE id = %s AND title = ''"  # noqa: S608


def _now() -> object:
    return offline().ops.adapt_datetimefield_value(timezone.now())


def _relaxed_commit() -> None:
    """Inside a transaction on PostgreSQL: commit without waiting for the WAL flush. Only for
    rows whose loss in a crash costs nothing (a crash loses the answer in flight anyway); the
    ledger and the final answer keep synchronous commits."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _rows(
    chat_id: int, content: str, route: Route, request_id: str, now: object
) -> tuple[list[object], list[object]]:
    """The values of the user message's row and the answer's, in `_COLUMNS` order."""
    user = [chat_id, Message.Role.USER.value, content, Message.Status.COMPLETE.value]
    user += ["", "", None, "", "", "", None, now, now]
    answer = [chat_id, Message.Role.ASSISTANT.value, "", Message.Status.STREAMING.value]
    answer += [route.provider, route.model, None, "", "", request_id, None, now, now]
    return user, answer


def _ids(rows: list[tuple[int, str]]) -> tuple[int, int]:
    ids = {role: pk for pk, role in rows}
    return ids[Message.Role.USER.value], ids[Message.Role.ASSISTANT.value]


def messages_store(*, chat_id: int, content: str, route: Route, request_id: str) -> tuple[int, int]:
    """The user message and the answer's placeholder (`streaming`), in one INSERT. Returns
    (user message id, answer id)."""
    if not connection.features.can_return_columns_from_insert:  # SQLite before 3.35
        return _messages_store_orm(
            chat_id=chat_id, content=content, route=route, request_id=request_id
        )
    with transaction.atomic(), connection.cursor() as cursor:
        _relaxed_commit()
        user, answer = _rows(chat_id, content, route, request_id, _now())
        cursor.execute(_INSERT_SQL, [*user, *answer])
        return _ids(cursor.fetchall())


async def amessages_store(
    *, chat_id: int, content: str, route: Route, request_id: str, ids: tuple[int, int]
) -> None:
    """`messages_store` from the event loop (`config.apg`), with the ids drawn beforehand
    (`chats.selectors.achat_for_message`): the one INSERT, committed by itself. It runs while
    the provider call opens; nothing on the way to the first token waits for it."""
    user, answer = _rows(chat_id, content, route, request_id, timezone.now())
    await apg.execute(_INSERT_WITH_IDS_SQL, [ids[0], *user, ids[1], *answer])


def _messages_store_orm(
    *, chat_id: int, content: str, route: Route, request_id: str
) -> tuple[int, int]:
    rows = [
        Message(chat_id=chat_id, role=Message.Role.USER, content=content),
        Message(
            chat_id=chat_id,
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
            provider=route.provider,
            model=route.model,
            request_id=request_id,
        ),
    ]
    user, answer = Message.objects.bulk_create(rows)
    return user.pk, answer.pk


@dataclass(frozen=True, slots=True)
class AnswerEnd:
    """The final state of an answer, as settlement saves it."""

    message_id: int | None
    chat_id: int
    title: str | None  # the chat's title, to set if it has none (its first exchange)
    status: str
    content: str
    provider: str
    model: str
    credential_id: int | None
    error_code: str
    finish_reason: str

    def statements(
        self, usage_id: int | Expression | None, now: object
    ) -> list[tuple[str, list[object]]]:
        """The UPDATEs that save it (`now` adapted for the connection that runs them); the usage
        record's id as a value, or as SQL when they join the statement that writes it."""
        found: list[tuple[str, list[object]]] = []
        if self.message_id is not None:
            values = [self.status, self.content, self.provider, self.model, self.credential_id]
            values += [self.error_code, self.finish_reason]
            if isinstance(usage_id, Expression):
                sql = _FINISH_SQL.format(usage=usage_id.sql)
            else:
                sql, values = _FINISH_BY_VALUE_SQL, [*values, usage_id]
            found.append((sql, [*values, now, self.message_id]))
        if self.title:
            found.append((_TITLE_SQL, [self.title, self.chat_id]))
        return found


def answer_finish(*, end: AnswerEnd, usage_id: int | None, owner: str) -> None:
    """The answer's final state, the title of a chat's first exchange (set here, off the way
    to the first token), then the release of the chat's lock, whatever failed before it."""
    try:
        with connection.cursor() as cursor:
            for sql, values in end.statements(usage_id, _now()):
                cursor.execute(sql, values)
    finally:
        presence.lock_release(chat_id=end.chat_id, owner=owner)
