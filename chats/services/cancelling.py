"""Stopping a chat's answer from wherever it is generated, and telling sockets a chat is gone.

Whoever generates an answer listens on a channel of the channel layer: a socket on its own
channel, a REST request (which waits for the finished answer) on one it makes for the purpose.
That channel — the answer's *origin* — is part of the value of the chat's lock
(`presence.lock_owner`), which the answer holds while it runs, so any process finds it with one
database read and it costs the answer nothing to publish: the REST cancel endpoint, a socket on the
chat whose user presses stop, the deletion of the chat. A `chat.cancel` message sent there stops
the answer, which is saved `cancelled` with the text so far.

The origin is not found through the chat's group: a socket generating an answer that is broadcast
leaves the group (it must not receive its own copies), and a REST request is never in it.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, get_channel_layer

from chats.models import Chat
from chats.services import presence
from chats.services.errors import NotGenerating
from chats.services.generation import Generation, Reply
from config.dbhop import db_hop
from config.inflight import keep

logger = logging.getLogger(__name__)

#: channel-layer message types (their consumer handlers are `chat_cancel`, `chat_deleted`)
CANCEL = "chat.cancel"
DELETED = "chat.deleted"


def origin_get(*, chat_id: int) -> str | None:
    """The channel generating the chat's answer, or None when nothing is generating."""
    return presence.owner_channel(presence.lock_holder(chat_id=chat_id))


# --- answers no socket waits on --------------------------------------------------------------


async def cancellable_channel() -> tuple[BaseChannelLayer, str]:
    """A channel of its own for a caller with no socket (REST), to start its answer with."""
    layer = get_channel_layer()
    return layer, await layer.new_channel()


async def run_cancellable(generation: Generation, layer: Any, channel: str) -> Reply:
    """`generation.run()` listening on `channel` (the answer's origin, from
    `cancellable_channel`): a cancel from any process — the cancel endpoint, a socket on the
    chat, the chat's deletion — stops it."""
    listener = keep(_listen(layer, channel, generation))
    try:
        return await generation.run()
    finally:
        listener.cancel()


async def _listen(layer: BaseChannelLayer, channel: str, generation: Generation) -> None:
    try:
        while True:
            message = await layer.receive(channel)
            if message.get("type") in (CANCEL, DELETED):
                generation.cancel()
    except Exception:
        logger.warning("request %s: cancel listener failed", generation.request_id, exc_info=True)


# --- senders ---------------------------------------------------------------------------------


async def acancel(*, chat_id: int) -> bool:
    """Ask whoever generates the chat's answer to stop; False when nothing is generating."""
    origin = await db_hop(origin_get, chat_id=chat_id)
    if origin is None:
        return False
    await get_channel_layer().send(origin, {"type": CANCEL})
    return True


def generation_cancel(*, chat: Chat) -> None:
    """Stop the chat's answer wherever it is generated (it is saved `cancelled`); raises
    `NotGenerating` when there is none. The caller has passed the chat's tenant gate."""
    origin = origin_get(chat_id=chat.pk)
    if origin is None:
        raise NotGenerating()
    async_to_sync(get_channel_layer().send)(origin, {"type": CANCEL})


def deleted_announce(*, group: str, origin: str | None) -> None:
    """Tell the sockets of a deleted chat, in every process, and whoever generates its answer
    (`origin`, read before the deletion took the chat's lock with it: a socket out of the group
    while it broadcasts, or a REST request), so that they stop."""
    async_to_sync(_announce)(group, origin)


async def _announce(group: str, origin: str | None) -> None:
    layer = get_channel_layer()
    await layer.group_send(group, {"type": DELETED})
    if origin is not None:
        await layer.send(origin, {"type": DELETED})
