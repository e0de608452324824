"""The first steps of one message, before its provider call: the caller's rights and the chat
gate, the chat's lock, the history, the count of watching sockets, admission, and the rows of the
user message and the answer's placeholder. `chats.services.messages` puts them together.

Two ways to take them, the same steps in the same order:

- in a thread (`begin_sync`, `admit_and_store_sync`, one `config.dbhop` hop each) — SQLite, the
  in-process tests, and any case the other way does not cover;
- on the event loop (`abegin`, `aadmit_and_store`) where the database is PostgreSQL and the
  cache Redis (`presence.on_loop`): the gate and history in one statement (`config.apg`), the
  lock and the watcher count in one Redis round trip (`config.aredis`), admission in one
  statement where it can (`providers.admission.admit`), and the rows written while the provider
  call opens. No thread hop at all on the way to the first token, in the common case.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import NamedTuple

from django.conf import settings

from accounts.models import ApiToken, Membership
from chats.models import Chat
from chats.selectors import achat_for_message, chat_for_message, history_for_context
from chats.services import presence
from chats.services.context import context_counted
from chats.services.errors import ChatBusy
from chats.services.generation import spawn
from chats.services.inputs import MessageInput, params_check
from chats.services.records import amessages_store, messages_store
from providers import admission as billing
from providers.adapters.base import ChatTurn
from providers.routing import Route

#: a chat's (default provider, default model), as a socket last saw them
ChatDefaults = tuple[str, str]


@dataclass(slots=True)
class Guess:
    """A route resolved before the first hop from the chat's defaults as last seen."""

    route: Route
    defaults: ChatDefaults
    settings_version: int


@dataclass(slots=True)
class Admitted:
    """An admitted call, and its rows (written, or being written)."""

    route: Route
    max_tokens: int
    context: list[ChatTurn]
    admission: billing.Admission
    ids: tuple[int, int] | asyncio.Future[tuple[int, int]]  # (user message, answer)


@dataclass(slots=True)
class Begun:
    """The chat as read with its rights checked and its lock held; `admitted` when the same step
    could admit the call too."""

    chat: Chat
    key: str
    history: list[tuple[str, str]]
    watchers: int
    admitted: Admitted | None = None


def defaults_of(chat: Chat) -> ChatDefaults:
    return chat.default_provider, chat.default_model


def begin_sync(
    *,
    membership: Membership,
    token: ApiToken | None,
    chat_id: int,
    owner: str,
    request_id: str,
    message: MessageInput,
    guess: Guess | None,
) -> Begun:
    """The first hop: rights and the chat gate (one query), the chat's lock, the history, the
    count of sockets watching the chat; with a guess that still holds, admission and the rows."""
    chat = chat_for_message(membership=membership, token=token, chat_id=chat_id)
    key = presence.chat_key(chat)
    if not presence.lock_acquire(key=key, owner=owner):
        raise ChatBusy()
    try:
        begun = Begun(chat, key, history_for_context(chat_id=chat.pk), 0)
        begun.watchers = presence.watchers_count(key=key)
        # `chat_for_message` brought the organisation's settings version up to date.
        version = membership.organization.settings_version
        if guess and guess.defaults == defaults_of(chat) and guess.settings_version == version:
            prepared = prepare(message, guess.route, begun)
            begun.admitted = admit_and_store_sync(
                membership, begun, message, guess.route, prepared, request_id
            )
    except BaseException:
        presence.lock_release(key=key, owner=owner)
        raise
    return begun


def admit_and_store_sync(
    membership: Membership,
    begun: Begun,
    message: MessageInput,
    route: Route,
    prepared: Prepared,
    request_id: str,
) -> Admitted:
    """Admission, then the rows; a reservation is given back if the rows cannot be written."""
    max_tokens, context, input_tokens = prepared
    admission = billing.admit_sync(request_id, membership, route, input_tokens, max_tokens)
    try:
        ids = messages_store(
            chat_id=begun.chat.pk, content=message.content, route=route, request_id=request_id
        )
    except BaseException:
        billing.release_sync(admission)
        raise
    return Admitted(route, max_tokens, context, admission, ids)


def max_tokens_for(message: MessageInput, route: Route) -> int:
    """The output cap sent to the provider, explicit so the reservation matches the call."""
    if message.max_tokens is not None:
        return message.max_tokens
    endpoint = route.candidates[0].endpoint if route.candidates else None
    default = (endpoint and endpoint.default_max_tokens) or settings.GATEHOUSE_DEFAULT_MAX_TOKENS
    return min(default, route.limits.max_output_tokens)


class Prepared(NamedTuple):
    max_tokens: int
    context: list[ChatTurn]
    input_tokens: int  # the context's, estimated


def prepare(message: MessageInput, route: Route, begun: Begun) -> Prepared:
    """The output cap and the context; raises `InputError` for parameters the model refuses."""
    max_tokens = max_tokens_for(message, route)
    params_check(
        message,
        model=route.model,
        max_output_tokens=route.limits.max_output_tokens,
        temperature_range=route.limits.temperature_range,
    )
    context, input_tokens = context_counted(
        system_prompt=begun.chat.system_prompt,
        history=begun.history,
        content=message.content,
        context_window=route.limits.context_window,
        max_tokens=max_tokens,
    )
    return Prepared(max_tokens, context, input_tokens)


async def abegin(
    *,
    membership: Membership,
    token: ApiToken | None,
    chat_id: int,
    owner: str,
    key: str | None = None,
) -> Begun:
    """`begin_sync` on the event loop (see `on_loop`), without the guess: routing costs no hop
    here, so it simply follows. With the chat's cache `key` known (a socket's), the gate and
    the lock go to PostgreSQL and Redis at the same time; a lock taken for a caller the gate
    then refuses is given back at once."""
    gate = achat_for_message(membership=membership, token=token, chat_id=chat_id)
    if key is None:
        chat, history = await gate
        key = presence.chat_key(chat)
        claimed = await presence.aclaim(key=key, owner=owner)
    else:
        claiming = asyncio.ensure_future(presence.aclaim(key=key, owner=owner))
        try:
            chat, history = await gate
        except BaseException:
            if (await claiming)[0]:
                await presence.arelease(key=key, owner=owner)
            raise
        claimed = await claiming
        if presence.chat_key(chat) != key:  # another chat under a reused id: not this lock
            if claimed[0]:
                await presence.arelease(key=key, owner=owner)
            key = presence.chat_key(chat)
            claimed = await presence.aclaim(key=key, owner=owner)
    taken, watchers = claimed
    if not taken:
        raise ChatBusy()
    return Begun(chat, key, history, watchers)


async def aadmit_and_store(
    membership: Membership,
    begun: Begun,
    message: MessageInput,
    route: Route,
    prepared: Prepared,
    request_id: str,
) -> Admitted:
    """`admit_and_store_sync` on the event loop: admission (with no hop where it can:
    `providers.admission.admit`), then the rows' INSERT started, to finish while the provider
    call opens."""
    max_tokens, context, input_tokens = prepared
    admission = await billing.admit(
        request_id=request_id,
        membership=membership,
        route=route,
        messages=context,
        max_tokens=max_tokens,
        input_tokens=input_tokens,
    )
    rows = spawn(
        amessages_store(
            chat_id=begun.chat.pk, content=message.content, route=route, request_id=request_id
        )
    )
    return Admitted(route, max_tokens, context, admission, rows)
