"""The path of one message, for every entry point (REST, the legacy route, the WebSocket).

    generation = await message_start(...)   # gate, lock, route, context, admission, rows
    reply = await generation.run()           # stream, fan out, settle exactly once

`message_start` does everything that decides whether the provider is called, and raises an
`ApiError` when it must not be (unknown chat, revoked access, busy chat, invalid parameters,
admission refused): then nothing is stored and no reservation or lock is left behind. Past it,
`Generation.run` always settles (see `chats.services.generation`).

The first steps are taken on the event loop where the database allows (PostgreSQL: no thread
hop before the first token), else in as few thread hops as possible: a socket knows its
chat's default provider and model (`hint`), so the route is resolved from them before the first
hop, and that one hop checks the caller's rights, takes the chat's lock, reads the history,
admits the call and writes the rows. If the chat's defaults or the organisation's settings
changed meanwhile (or there is no hint, as for REST), the guess is dropped: the route is resolved
from the chat as read, and a second hop admits and writes. See `chats.services.begin`. No
database write happens per token.
"""

from __future__ import annotations

import asyncio
import uuid

from accounts.models import ApiToken, Membership, Organization
from chats.services import begin, presence
from chats.services.begin import ChatDefaults, Guess, defaults_of, prepare
from chats.services.context import title_from
from chats.services.errors import InputError, ProviderFailed
from chats.services.generation import Generation, Reply, Sink
from chats.services.inputs import MessageInput
from config.dbhop import db_hop
from config.inflight import keep
from providers.calls import CallParams
from providers.routing import Route, RouteError, aresolve

__all__ = ["ChatDefaults", "Generation", "Reply", "Sink", "message_send", "message_start"]


async def _route(
    *, organization: Organization, defaults: ChatDefaults, message: MessageInput
) -> Route:
    """The message's provider and model, else the chat's defaults, else the organisation's."""
    default_provider, default_model = defaults
    if message.provider:
        provider = message.provider
        same = message.provider == default_provider
        model = message.model or (default_model if same else "") or None
    else:
        provider = default_provider or None
        model = message.model or default_model or None
    try:
        return await aresolve(organization=organization, provider=provider, model=model)
    except RouteError as exc:
        raise InputError.one(exc.field, exc.code, exc.message) from None


async def _guess(
    membership: Membership, hint: ChatDefaults | None, message: MessageInput
) -> Guess | None:
    if hint is None:
        return None
    organization = membership.organization
    version = organization.settings_version
    try:
        route = await _route(organization=organization, defaults=hint, message=message)
    except InputError:
        return None  # perhaps stale defaults: the chat as read decides, and reports
    return Guess(route, hint, version)


async def message_start(
    *,
    membership: Membership,
    chat_id: int,
    message: MessageInput,
    token: ApiToken | None = None,
    request_id: str | None = None,
    sink: Sink | None = None,
    origin: str | None = None,
    hint: ChatDefaults | None = None,
    cancel_channel: str | None = None,
    history_tokens: int | None = None,
) -> Generation:
    """Everything before the provider call. `membership` must have its organisation loaded;
    `token` is the caller's API token (its revocation ends access); `sink` receives the frames of
    the caller's own socket; `origin` is that socket's channel name (never sent its own copies);
    `hint` the chat's defaults as the caller last saw them (`Generation.defaults` tells the
    current ones); `cancel_channel` where a cancel reaches the answer when that is not `origin`
    (a REST request's); `history_tokens` the chat's system prompt and history in tokens, as the
    caller last saw them (`Generation.history_tokens`): with `hint`, admission starts while the
    gate runs (`begin.speculate`). Raises `ApiError` (nothing stored) when the call must not
    happen."""
    request_id = request_id or uuid.uuid4().hex
    # The lock names the channel generating the answer: any process finds it there.
    owner = presence.lock_owner(request_id, cancel_channel or origin)
    loop = presence.on_loop()
    speculation = None
    if loop:
        # The gate and the lock go first: routing the guess may wait (a cold process reads its
        # credentials and model lists), and the lock must not — a message that arrives while
        # another answer streams is refused as busy, not let in once that answer has ended.
        beginning = keep(
            begin.abegin(membership=membership, token=token, chat_id=chat_id, owner=owner)
        )
        try:
            if history_tokens is not None:
                guess = await _guess(membership, hint, message)
                if guess is not None:
                    speculation = begin.speculate(
                        membership, guess, message, request_id, history_tokens
                    )
            begun = await asyncio.shield(beginning)
        except BaseException:
            begin.withdraw(speculation)
            keep(begin.abandon(beginning, owner))
            raise
    else:
        begun = await db_hop(
            begin.begin_sync,
            membership=membership,
            token=token,
            chat_id=chat_id,
            owner=owner,
            request_id=request_id,
            message=message,
            guess=await _guess(membership, hint, message),
        )
    admitted = begun.admitted
    try:
        if speculation is not None:
            admitted = await begin.confirm(speculation, membership, begun, message, request_id)
        if admitted is None:
            organization = membership.organization
            route = await _route(
                organization=organization, defaults=defaults_of(begun.chat), message=message
            )
            prepared = prepare(message, route, begun)
            steps = (membership, begun, message, route, prepared, request_id)
            if loop:
                admitted = await begin.aadmit_and_store(*steps)
            else:
                admitted = await db_hop(begin.admit_and_store_sync, *steps)
    except BaseException:
        if loop:
            await presence.arelease(chat_id=begun.chat.pk, owner=owner)
        else:
            await db_hop(presence.lock_release, chat_id=begun.chat.pk, owner=owner)
        raise
    return Generation(
        chat_id=begun.chat.pk,
        group=presence.group_name(begun.chat),
        request_id=request_id,
        owner=owner,
        title=None if begun.chat.title else title_from(message.content),
        route=admitted.route,
        context=admitted.context,
        params=CallParams(temperature=message.temperature, max_tokens=admitted.max_tokens),
        admission=admitted.admission,
        ids=admitted.ids,
        store=admitted.store,
        input_tokens=admitted.input_tokens,
        defaults=defaults_of(begun.chat),
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
    chat see it stream; a cancel from anywhere (`chats.services.cancelling`) stops it, and the
    reply is then the `cancelled` answer with the text so far. A provider failure raises
    `ProviderFailed` after the message is saved."""
    from chats.services.cancelling import cancellable_channel, run_cancellable

    layer, channel = await cancellable_channel()
    generation = await message_start(
        membership=membership,
        chat_id=chat_id,
        message=message,
        token=token,
        request_id=request_id,
        cancel_channel=channel,
    )
    reply = await run_cancellable(generation, layer, channel)
    if reply.error is not None:
        raise ProviderFailed(
            reply.error.code,
            reply.error.message,
            message_id=reply.message_id,
            retry_after=reply.error.retry_after,
        )
    return reply
