"""The chat socket, /ws/chats/<id>/: a thin consumer over `chats.services.messages`.

Authentication comes from `accounts.ws` (session cookie or bearer token, Origin checked). A
socket for a chat the caller cannot see is refused at the handshake (HTTP 403). Every frame
re-checks the caller's rights (the message path does it in its first database hop): a member
removed from the organisation or a revoked token gets an `access_revoked` error and the socket is
closed with code 4403. A socket on a chat that is deleted (from any process) gets a
`chat_deleted` error and is closed with code 4404.

A generation runs in its own task, so frames (`cancel` above all) are read while it streams.
Each socket is in the chat's channel-layer group to see answers generated elsewhere (another tab,
another process, a REST client). The generating socket sends its own frames directly; while its
answer is broadcast it leaves the group, so it never receives its own copies (only one answer is
generated per chat at a time, so it misses nothing else). Whoever generates the chat's answer
can be reached through `chats.services.cancelling`, whatever group it is in.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.sessions import InstanceSessionWrapper

from accounts.models import ApiToken, Membership, User
from chats.frames import encode, encode_token, frame_too_large
from chats.selectors import access_valid, history_for_context, socket_access
from chats.services import cancelling, presence
from chats.services.context import history_tokens
from chats.services.errors import (
    AccessRevoked,
    ChatBusy,
    ChatDeleted,
    InputError,
    MessageFailed,
)
from chats.services.inputs import MessageInput, message_input_parse
from chats.services.messages import ChatDefaults, Generation, message_start
from config.errors import ApiError
from config.inflight import keep
from config.ws_frames import text_writer
from providers.admission import AdmissionRefused

logger = logging.getLogger(__name__)

CLOSE_ACCESS_REVOKED = 4403
CLOSE_CHAT_DELETED = 4404
_FRAME_FIELDS = frozenset({"type"})
_REFUSAL_DETAILS = ("retry_after", "limit", "resets_at")


class _Opened(NamedTuple):
    membership: Membership
    group: str
    defaults: ChatDefaults
    history_tokens: int


def _open(user: User, token: ApiToken | None, chat_id: int) -> _Opened | None:
    """What a socket on the chat needs to know of it; counts the socket as watching."""
    found = socket_access(user=user, token=token, chat_id=chat_id)
    if found is None:
        return None
    membership, chat = found
    presence.watch(chat_id=chat.pk)
    history = history_for_context(chat_id=chat.pk)
    return _Opened(
        membership,
        presence.group_name(chat),
        (chat.default_provider, chat.default_model),
        history_tokens(system_prompt=chat.system_prompt, history=history),
    )


class ChatConsumer(AsyncJsonWebsocketConsumer):
    membership: Membership | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> None:
        self.chat_id = int(self.scope["url_route"]["kwargs"]["chat_id"])
        self.token: ApiToken | None = self.scope.get("api_token")
        self._generation: Generation | None = None
        self._pending = False  # a message is between its frame and its generation
        self._cancel_requested = False
        self._closed = False
        self._deleted = False
        self._in_group = False
        self._group_lock = asyncio.Lock()
        self._remote_origin: str | None = None  # the socket generating what we watch
        user = self.scope.get("user")
        # A presented but bad token is refused even when a session cookie came along.
        if self.scope.get("token_error") or user is None or not user.is_authenticated:
            await self.close()
            return
        opened = await database_sync_to_async(_open)(user, self.token, self.chat_id)
        if opened is None:
            await self.close()
            return
        # The defaults and the history's size let a message route, and even be admitted,
        # before the gate has answered (`message_start`'s `hint` and `history_tokens`).
        self.membership, self.group, self._defaults, self._history_tokens = opened
        await self._sync_group()
        await self.accept()
        await self.channel_layer.group_send(
            self.group, {"type": "chat.join", "origin": self.channel_name}
        )

    async def dispatch(self, message: dict[str, Any]) -> None:
        """channels' dispatch without its `aclose_old_connections()` before every handler: that
        is a hop to the shared sync thread per frame received and per group event (each token
        of an answer another socket generates), about 1 ms on the way to every first token. This
        consumer has no use for it: its database work runs through `database_sync_to_async`,
        which closes that thread's stale connections itself around each call, and through
        `config.dbhop` and `config.apg`, which keep their own."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def disconnect(self, code: int) -> None:
        self._closed = True
        if self._generation is not None:
            self._generation.detach()
        if self.membership is None:
            return
        await self._sync_group()
        await database_sync_to_async(presence.unwatch)(chat_id=self.chat_id)

    # --- frames from the client --------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self._refuse_frame("invalid_frame", "Frames must be JSON text.")
        elif frame_too_large(text_data):
            await self._refuse_frame("frame_too_large", "Frames are limited to 32 KiB.")
        else:
            try:
                data = json.loads(text_data)
            except ValueError:
                await self._refuse_frame("invalid_json", "The frame is not valid JSON.")
                return
            await self._dispatch(data)

    async def _dispatch(self, data: Any) -> None:
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "message":
            await self._on_message(data)
        elif kind == "cancel":
            await self._on_cancel()
        elif isinstance(data, dict):
            await self._refuse_frame("unknown_type", "Frame types are 'message' and 'cancel'.")
        else:
            await self._refuse_frame("invalid_frame", "A frame is a JSON object with a 'type'.")

    async def _on_message(self, data: dict[str, Any]) -> None:
        try:
            message = message_input_parse(data, ignore=_FRAME_FIELDS)
        except InputError as exc:
            if await self._allowed():
                await self._send_error(exc)
            return
        if self._pending or (self._generation is not None and not self._generation.finished):
            # This socket's own answer is streaming; the chat lock refuses other sockets' too.
            await self._send_error(ChatBusy())
            return
        self._pending = True
        keep(self._generate(message), stop_at_shutdown=True)

    async def _on_cancel(self) -> None:
        if not await self._allowed():
            return
        if self._generation is not None:
            self._generation.cancel()
        elif self._pending:
            self._cancel_requested = True
        elif self._remote_origin is not None:
            # Stop an answer another socket of this chat is generating (a second tab).
            await self.channel_layer.send(self._remote_origin, {"type": cancelling.CANCEL})
        else:
            # A REST request's answer (its frames name no origin), or one whose start frame this
            # socket has not seen yet.
            await cancelling.acancel(chat_id=self.chat_id)

    # --- the generation, in its own task -----------------------------------------------------

    async def _generate(self, message: MessageInput) -> None:
        try:
            generation = await message_start(
                membership=self.membership,
                chat_id=self.chat_id,
                message=message,
                token=self.token,
                sink=self._send_text,
                origin=self.channel_name,
                hint=self._defaults,
                history_tokens=self._history_tokens,
            )
        except AccessRevoked as exc:
            await self._revoked(exc)
            return
        except ApiError as exc:
            await self._send_error(exc)
            return
        except Exception:
            # The client must hear of it: without a frame it would wait for an answer forever.
            logger.exception("message on chat %s failed before its answer", self.chat_id)
            await self._send_error(MessageFailed())
            return
        finally:
            self._pending = False
        self._defaults = generation.defaults
        await self._run(generation)

    async def _run(self, generation: Generation) -> None:
        self._generation = generation
        if self._cancel_requested:
            self._cancel_requested = False
            generation.cancel()
        if self._closed or self._deleted:
            generation.detach()
        try:
            if generation.broadcast:
                await self._sync_group()
            await generation.run()
        finally:
            if self._generation is generation:
                self._generation = None
            self._history_tokens = generation.history_tokens
            await self._sync_group()

    async def _sync_group(self) -> None:
        """In the group unless our own answer is being broadcast (or the socket is closed)."""
        async with self._group_lock:
            generation = self._generation
            out = self._closed or (
                generation is not None and generation.broadcast and not generation.finished
            )
            if out and self._in_group:
                await self.channel_layer.group_discard(self.group, self.channel_name)
                self._in_group = False
            elif not out and not self._in_group:
                await self.channel_layer.group_add(self.group, self.channel_name)
                self._in_group = True

    # --- channel-layer events ----------------------------------------------------------------

    async def chat_frame(self, event: dict[str, Any]) -> None:
        """A frame of an answer generated elsewhere, already serialised."""
        origin = event.get("origin")
        if origin is not None and origin == self.channel_name:
            return
        kind = event.get("kind")
        if kind == "start":
            self._remote_origin = origin
        elif kind in ("done", "error"):
            self._remote_origin = None
        await self._send_text(event["text"])

    async def chat_join(self, event: dict[str, Any]) -> None:
        """Another socket opened on the chat: broadcast our answer from now on, and bring the
        newcomer up to date with what was said so far."""
        origin = event.get("origin")
        generation = self._generation
        if origin == self.channel_name or generation is None or generation.broadcast:
            return
        so_far = generation.broadcast_on()
        if so_far is not None and generation.started:
            # Before its start frame the whole answer reaches the group: nothing to catch up.
            await self._send_to(origin, generation.start_text, "start")
            if so_far:
                await self._send_to(origin, encode_token(so_far), None)
        await self._sync_group()

    async def _send_to(self, channel: str, text: str, kind: str | None) -> None:
        event = {"type": "chat.frame", "text": text, "origin": self.channel_name}
        if kind is not None:
            event["kind"] = kind
        await self.channel_layer.send(channel, event)

    async def chat_cancel(self, event: dict[str, Any]) -> None:
        if self._generation is not None:
            self._generation.cancel()

    async def chat_deleted(self, event: dict[str, Any]) -> None:
        """The chat was deleted. Sent to the group and, should this socket be generating, to it
        directly (it leaves the group while it broadcasts): it may come twice."""
        if self._deleted:
            return
        self._deleted = True
        if self._generation is not None:
            self._generation.cancel()
            # The error frame below ends the answer for this client; no `done` after it.
            self._generation.detach()
        elif self._pending:
            self._cancel_requested = True
        await self._send_error(ChatDeleted())
        await self.close(code=CLOSE_CHAT_DELETED)

    # --- sending -----------------------------------------------------------------------------

    async def _send_text(self, text: str) -> None:
        # The generation's sink, once per token: straight to the transport where it can be.
        write = self._frame_write
        if write is None or not write(text):
            await self._frame_send({"type": "websocket.send", "text": text})

    @functools.cached_property
    def _frame_write(self) -> Callable[[str], bool] | None:
        return text_writer(self._frame_send)

    @functools.cached_property
    def _frame_send(self) -> Callable[[dict[str, Any]], Awaitable[None]]:
        """The ASGI server's own send, under channels' session wrapper: the wrapper only acts on
        `http.response.start` (to save a session and set its cookie), yet reads the session's
        state on every message it passes on — once per token, for nothing."""
        wrapper = getattr(self.base_send, "__self__", None)
        if isinstance(wrapper, InstanceSessionWrapper):
            return wrapper.real_send
        return self.base_send

    async def _send_error(self, exc: ApiError) -> None:
        frame: dict[str, Any] = {
            "type": "error",
            "code": exc.code,
            "message": exc.message,
            "request_id": uuid.uuid4().hex,
        }
        if exc.fields:
            frame["fields"] = exc.fields
        if isinstance(exc, AdmissionRefused):
            # Which limit refused, when it resets, when to retry: clients show it to the user.
            details = exc.as_dict()
            frame.update({k: details[k] for k in _REFUSAL_DETAILS if details.get(k) is not None})
        await self._send_text(encode(frame))

    async def _refuse_frame(self, code: str, message: str) -> None:
        if await self._allowed():
            await self._send_error(ApiError(code, message))

    async def _allowed(self) -> bool:
        """Whether the caller still has access; if not, the socket is closed."""
        if await database_sync_to_async(access_valid)(membership=self.membership, token=self.token):
            return True
        await self._revoked(AccessRevoked())
        return False

    async def _revoked(self, exc: ApiError) -> None:
        if self._generation is not None:
            self._generation.cancel()
        await self._send_error(exc)
        await self.close(code=CLOSE_ACCESS_REVOKED)
