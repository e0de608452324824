"""The path of one message, for every entry point (REST, the legacy route, the WebSocket).

    generation = await message_start(...)   # gate, lock, route, context, admission
    reply = await generation.run()           # rows, stream, fan out, settle exactly once

`message_start` does everything that decides whether the provider is called, and raises an
`ApiError` when it must not be (unknown chat, revoked access, busy chat, invalid parameters,
admission refused): then nothing is stored and no reservation or lock is left behind. Past it,
`Generation.run` always settles (see `chats.services.generation`).

Before the first token the path costs two thread hops of database and cache work (this module's
first hop, then the user message and answer placeholder, written while the provider call opens)
plus routing and admission; no database write happens per token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings

from accounts.models import ApiToken, Membership, Organization
from chats.models import Chat
from chats.selectors import chat_for_message, history_for_context
from chats.services import presence
from chats.services.context import context_build, title_from
from chats.services.errors import ChatBusy, InputError, ProviderFailed
from chats.services.generation import Generation, Reply, Sink
from chats.services.inputs import MessageInput, params_check
from config.dbhop import db_hop
from providers import admission as billing
from providers.calls import CallParams
from providers.routing import Route, RouteError, aresolve

__all__ = ["Generation", "Reply", "Sink", "message_send", "message_start"]


@dataclass(slots=True)
class _Begun:
    chat: Chat
    key: str
    history: list[tuple[str, str]]
    watchers: int


def _begin(*, membership: Membership, token: ApiToken | None, chat_id: int, owner: str) -> _Begun:
    """The first hop: rights and the chat gate (one query), the chat's lock, the history, the
    count of sockets watching the chat."""
    chat = chat_for_message(membership=membership, token=token, chat_id=chat_id)
    key = presence.chat_key(chat)
    if not presence.lock_acquire(key=key, owner=owner):
        raise ChatBusy()
    try:
        history = history_for_context(chat_id=chat.pk)
        watchers = presence.watchers_count(key=key)
    except BaseException:
        presence.lock_release(key=key, owner=owner)
        raise
    return _Begun(chat, key, history, watchers)


async def _route(*, organization: Organization, chat: Chat, message: MessageInput) -> Route:
    """The message's provider and model, else the chat's defaults, else the organisation's."""
    if message.provider:
        provider = message.provider
        same = message.provider == chat.default_provider
        model = message.model or (chat.default_model if same else "") or None
    else:
        provider = chat.default_provider or None
        model = message.model or chat.default_model or None
    try:
        return await aresolve(organization=organization, provider=provider, model=model)
    except RouteError as exc:
        raise InputError.one(exc.field, exc.code, exc.message) from None


def _max_tokens(message: MessageInput, route: Route) -> int:
    """The output cap sent to the provider, explicit so the reservation matches the call."""
    if message.max_tokens is not None:
        return message.max_tokens
    endpoint = route.candidates[0].endpoint if route.candidates else None
    default = (endpoint and endpoint.default_max_tokens) or settings.GATEHOUSE_DEFAULT_MAX_TOKENS
    return min(default, route.limits.max_output_tokens)


async def message_start(
    *,
    membership: Membership,
    chat_id: int,
    message: MessageInput,
    token: ApiToken | None = None,
    request_id: str | None = None,
    sink: Sink | None = None,
    origin: str | None = None,
) -> Generation:
    """Everything before the provider call. `membership` must have its organisation loaded;
    `token` is the caller's API token (its revocation ends access); `sink` receives the frames of
    the caller's own socket; `origin` is that socket's channel name (never sent its own copies).
    Raises `ApiError` (nothing stored) when the call must not happen."""
    request_id = request_id or uuid.uuid4().hex
    begun = await db_hop(
        _begin, membership=membership, token=token, chat_id=chat_id, owner=request_id
    )
    try:
        route = await _route(organization=membership.organization, chat=begun.chat, message=message)
        max_tokens = _max_tokens(message, route)
        params_check(
            message,
            model=route.model,
            max_output_tokens=route.limits.max_output_tokens,
            temperature_range=route.limits.temperature_range,
        )
        context = context_build(
            system_prompt=begun.chat.system_prompt,
            history=begun.history,
            content=message.content,
            context_window=route.limits.context_window,
            max_tokens=max_tokens,
        )
        admission = await billing.admit(
            request_id=request_id,
            membership=membership,
            route=route,
            messages=context,
            max_tokens=max_tokens,
        )
    except BaseException:
        await db_hop(presence.lock_release, key=begun.key, owner=request_id)
        raise
    return Generation(
        chat_id=begun.chat.pk,
        key=begun.key,
        group=presence.group_name(begun.chat),
        request_id=request_id,
        content=message.content,
        title=None if begun.chat.title else title_from(message.content),
        route=route,
        context=context,
        params=CallParams(temperature=message.temperature, max_tokens=max_tokens),
        admission=admission,
        sink=sink,
        origin=origin,
        # The caller's own socket is one of the watchers.
        broadcast=begun.watchers > (1 if origin else 0),
    )


async def message_send(
    *,
    membership: Membership,
    chat_id: int,
    message: MessageInput,
    token: ApiToken | None = None,
    request_id: str | None = None,
) -> Reply:
    """The whole path for clients that wait for the finished answer (REST). Sockets open on the
    chat see it stream. A provider failure raises `ProviderFailed` after the message is saved."""
    generation = await message_start(
        membership=membership, chat_id=chat_id, message=message, token=token, request_id=request_id
    )
    reply = await generation.run()
    if reply.error is not None:
        raise ProviderFailed(
            reply.error.code,
            reply.error.message,
            message_id=reply.message_id,
            retry_after=reply.error.retry_after,
        )
    return reply
