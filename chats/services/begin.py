"""The first steps of one message, before its provider call: the caller's rights and the chat
gate, the chat's lock, the history, the count of watching sockets, admission, and the rows of the
user message and the answer's placeholder. `chats.services.messages` puts them together.

Two ways to take them, the same steps in the same order:

- in a thread (`begin_sync`, `admit_and_store_sync`, one `config.dbhop` hop each) — SQLite, the
  in-process tests, and any case the other way does not cover;
- on the event loop (`abegin`, `aadmit_and_store`) where the database is PostgreSQL
  (`presence.on_loop`): the gate, the lock, the watcher count and the history in one statement
  (`config.apg`), admission in one statement where it can (`providers.admission.admit`), and the
  rows written while the provider request goes out, under ids the gate drew. No thread hop at
  all on the way to the first token, in the common case.

A socket also knows, from its last message, about how many tokens the chat's history holds. With
that, admission need not wait for the gate: `speculate` reserves while the gate runs, on the
route of the socket's hint and an estimate of the context no smaller than the real one, and
`confirm` keeps that admission only if the gate agrees on everything it assumed (caller, chat,
lock, route, settings, a context no larger than estimated); otherwise the reservation is given
back and admission runs again, as without it. One round trip to PostgreSQL fewer before the first
token; the hard limits hold either way, as a speculative reservation is a real one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError

from accounts.models import ApiToken, Membership
from chats.models import Chat
from chats.selectors import achat_for_message, chat_for_message, history_for_context
from chats.services import presence
from chats.services.context import context_counted
from chats.services.errors import ChatBusy, ChatNotFound, InputError
from chats.services.inputs import MessageInput, params_check
from chats.services.records import amessages_store, messages_store
from config.inflight import keep
from providers import admission as billing
from providers.adapters.base import ChatTurn, estimate_tokens
from providers.routing import Route

logger = logging.getLogger(__name__)

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
    ids: tuple[int, int]  # (user message, answer)
    input_tokens: int  # the context's, estimated
    store: Callable[[], Awaitable[None]] | None = None  # writes the rows, when not yet written


@dataclass(slots=True)
class Begun:
    """The chat as read with its rights checked and its lock held; `admitted` when the same step
    could admit the call too."""

    chat: Chat
    history: list[tuple[str, str]]
    watchers: int
    admitted: Admitted | None = None
    ids: tuple[int, int] | None = None  # drawn for the rows by the gate, when it could


@dataclass(slots=True)
class Speculation:
    """An admission started before the gate (`speculate`)."""

    guess: Guess
    input_tokens: int  # the estimate it reserved for
    admission: asyncio.Future[billing.Admission | None]


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
    try:
        watchers = presence.claim(chat_id=chat.pk, owner=owner)
    except IntegrityError:
        # The lock's row refers to a chat deleted meanwhile (`presence.holder_for_delete`).
        raise ChatNotFound() from None
    if watchers is None:
        raise ChatBusy()
    try:
        begun = Begun(chat, history_for_context(chat_id=chat.pk), watchers)
        # `chat_for_message` brought the organisation's settings version up to date.
        version = membership.organization.settings_version
        if guess and guess.defaults == defaults_of(chat) and guess.settings_version == version:
            prepared = prepare(message, guess.route, begun)
            begun.admitted = admit_and_store_sync(
                membership, begun, message, guess.route, prepared, request_id
            )
    except BaseException:
        presence.lock_release(chat_id=chat.pk, owner=owner)
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
    return Admitted(route, max_tokens, context, admission, ids, input_tokens)


def max_tokens_for(message: MessageInput, route: Route) -> int:
    """The output cap sent to the provider, explicit so the reservation matches the call; raises
    `InputError` for parameters the route's model refuses."""
    params_check(
        message,
        model=route.model,
        max_output_tokens=route.limits.max_output_tokens,
        temperature_range=route.limits.temperature_range,
    )
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
    context, input_tokens = context_counted(
        system_prompt=begun.chat.system_prompt,
        history=begun.history,
        content=message.content,
        context_window=route.limits.context_window,
        max_tokens=max_tokens,
    )
    return Prepared(max_tokens, context, input_tokens)


def speculate(
    membership: Membership,
    guess: Guess,
    message: MessageInput,
    request_id: str,
    history_tokens: int,
) -> Speculation | None:
    """Start admitting the call on the guessed route while the gate runs (see the module
    docstring). `history_tokens`: the chat's system prompt and history as the caller last saw
    them (`context.history_tokens`). Only where admission takes no thread hop and leaves no trace
    when it cannot reserve (`providers.admission.admit_on_loop`); None when there is nothing to
    start: the message's parameters are refused after the gate, in the usual order."""
    route = guess.route
    try:
        max_tokens = max_tokens_for(message, route)
    except InputError:
        return None
    # The context never holds more than the window leaves beside the answer.
    room = route.limits.context_window - max_tokens
    input_tokens = min(history_tokens + estimate_tokens(message.content), room)
    if input_tokens < 0:
        return None
    tokens = (input_tokens, max_tokens)
    admission = keep(billing.admit_on_loop(request_id, membership, route, tokens))
    return Speculation(guess, input_tokens, admission)


async def confirm(
    speculation: Speculation,
    membership: Membership,
    begun: Begun,
    message: MessageInput,
    request_id: str,
) -> Admitted | None:
    """The speculative admission, with its rows' INSERT, if the gate's reading agrees
    with what it assumed; else None, its reservation being given back. Raises `InputError` (the
    reservation given back) when the message does not fit the route."""
    try:
        admission = await _speculated(speculation)
    except BaseException:  # cancelled: the reservation is given back once it is made
        withdraw(speculation)
        raise
    if admission is None:
        return None
    guess = speculation.guess
    version = membership.organization.settings_version  # as the gate brought it up to date
    try:
        if guess.defaults != defaults_of(begun.chat) or guess.settings_version != version:
            prepared = None
        else:
            prepared = prepare(message, guess.route, begun)
            if prepared.input_tokens > speculation.input_tokens:
                prepared = None  # the history grew elsewhere: reserve for it
    except BaseException:
        keep(billing.release(admission=admission))
        raise
    if prepared is None:
        # Admission runs again under the same request id: its reservation must be gone first,
        # or the two race on the same rows (a duplicate reservation refused the message, or the
        # two statements deadlocked). Given back even if this task is cancelled meanwhile.
        await asyncio.shield(keep(billing.release(admission=admission)))
        return None
    return _stored(begun, message, guess.route, prepared, admission, request_id)


def withdraw(speculation: Speculation | None) -> None:
    """Give back a speculation's reservation, when it was made: the gate refused the call."""
    if speculation is not None:
        keep(_withdraw(speculation))


async def _withdraw(speculation: Speculation) -> None:
    admission = await _speculated(speculation)
    if admission is not None:
        await billing.release(admission=admission)


async def _speculated(speculation: Speculation) -> billing.Admission | None:
    try:
        return await asyncio.shield(speculation.admission)
    except asyncio.CancelledError:
        raise
    except Exception:
        # Its statement failed: nothing is known to be reserved (the ledger's sweep returns a
        # reservation left behind); admission runs again after the gate, and reports.
        logger.exception("speculative admission failed")
        return None


def _stored(
    begun: Begun,
    message: MessageInput,
    route: Route,
    prepared: Prepared,
    admission: billing.Admission,
    request_id: str,
) -> Admitted:
    """The admitted call, and the INSERT of its rows (with the ids the gate drew) for the
    generation to run with its provider request."""
    ids = begun.ids
    assert ids is not None  # `abegin` always draws them
    store = functools.partial(
        amessages_store,
        chat_id=begun.chat.pk,
        content=message.content,
        route=route,
        request_id=request_id,
        ids=ids,
    )
    max_tokens, context, input_tokens = prepared
    return Admitted(route, max_tokens, context, admission, ids, input_tokens, store)


async def abegin(
    *, membership: Membership, token: ApiToken | None, chat_id: int, owner: str
) -> Begun:
    """`begin_sync` on the event loop (see `on_loop`), without the guess: routing costs no hop
    here, so it simply follows. The gate, the lock and the history are one statement."""
    chat, history, ids, watchers = await achat_for_message(
        membership=membership, token=token, chat_id=chat_id, owner=owner
    )
    if watchers is None:
        raise ChatBusy()
    return Begun(chat, history, watchers, ids=ids)


async def abandon(beginning: asyncio.Future[Begun], owner: str) -> None:
    """Undo an `abegin` whose caller gave up on it: once its statement has answered (stopping
    it mid-flight would leave unknown whether it took the lock), the lock is given back if it
    was taken."""
    try:
        begun = await beginning
    except BaseException:
        return
    await presence.arelease(chat_id=begun.chat.pk, owner=owner)


async def aadmit_and_store(
    membership: Membership,
    begun: Begun,
    message: MessageInput,
    route: Route,
    prepared: Prepared,
    request_id: str,
) -> Admitted:
    """`admit_and_store_sync` on the event loop: admission (with no hop where it can:
    `providers.admission.admit`), and the rows' INSERT for the generation to run."""
    max_tokens, context, input_tokens = prepared
    admission = await billing.admit(
        request_id=request_id,
        membership=membership,
        route=route,
        messages=context,
        max_tokens=max_tokens,
        input_tokens=input_tokens,
    )
    return _stored(begun, message, route, prepared, admission, request_id)
