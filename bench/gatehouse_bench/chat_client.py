"""Arms that go through Gatehouse's chats: the WebSocket (`/ws/chats/<id>/`, frames
start/token/done/error) and the REST call that returns the finished assistant message.

Every request gets a chat of its own, made before the block starts: a chat's history grows
with each message, and reusing chats would make later blocks carry longer contexts than
earlier ones (drift the alternation could not cancel).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from gatehouse_bench.arm import ArmMissing, ArmUnavailable
from gatehouse_bench.http_client import ERRORS, HttpClient, Response
from gatehouse_bench.plan import CHUNKS
from gatehouse_bench.stats import Sample

SETUP_PARALLELISM = 8  # chats and sockets made at once while preparing a block
SETUP_ATTEMPTS = 3
SETUP_RETRY_PAUSE_S = 0.5


async def _bounded(coros: list[Any]) -> list[Any]:
    """Run coroutines SETUP_PARALLELISM at a time; failures come back as exception objects."""
    gate = asyncio.Semaphore(SETUP_PARALLELISM)

    async def one(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)


class _ChatsBase:
    def __init__(
        self,
        *,
        name: str,
        label: str,
        base_url: str,
        token: str,
        server_pid: int | None,
        concurrency: int,
        timeout_s: float,
        chunks: int = CHUNKS,
    ) -> None:
        self.name, self.label, self.server_pid = name, label, server_pid
        self.chunks, self.measures_database = chunks, True
        self.base_url, self.timeout_s = base_url, timeout_s
        self.headers = {"Authorization": f"Bearer {token}"}
        self.client = HttpClient(max(concurrency, SETUP_PARALLELISM))

    async def create_chat(self) -> int:
        """A fresh chat. Set-up, not measurement: a server error is retried a few times."""
        status = 0
        for attempt in range(SETUP_ATTEMPTS):
            if attempt:
                await asyncio.sleep(SETUP_RETRY_PAUSE_S * attempt)
            async with asyncio.timeout(self.timeout_s):
                response = await self.client.post(
                    f"{self.base_url}/api/chats", {"title": "bench"}, self.headers
                )
            status = response.status
            if status in (200, 201):
                return int(response.json()["id"])
            if status == 404:
                raise ArmMissing("POST /api/chats answers 404: the chats API is not there yet")
            if status < 500:
                break
        raise ArmUnavailable(f"POST /api/chats answers {status}")

    async def probe(self) -> None:
        items = await self.prepare(1)
        try:
            if isinstance(items[0], ArmUnavailable):
                raise items[0]
            if isinstance(items[0], BaseException):
                raise ArmUnavailable(f"{type(items[0]).__name__}: {items[0]}")
            sample = await self.request(items[0], "Probe. sim:chunks=3")
            if not sample.ok:
                raise ArmUnavailable(f"{self.label}: {sample.error}")
        finally:
            await self.release(items)

    async def prepare(self, count: int) -> list[Any]:
        return await _bounded([self.create_chat() for _ in range(count)])

    async def request(self, item: Any, content: str) -> Sample:
        raise NotImplementedError

    async def release(self, items: list[Any]) -> None:
        return None

    async def close(self) -> None:
        await self.client.close()


class ChatWebSocketArm(_ChatsBase):
    streamed = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ws_base = self.base_url.replace("http://", "ws://", 1)

    async def _open(self, chat_id: int) -> ClientConnection:
        try:
            return await connect(
                f"{self.ws_base}/ws/chats/{chat_id}/",
                additional_headers=self.headers,
                open_timeout=self.timeout_s,
                ping_interval=None,  # pings would add server work that is not streaming
                max_size=2**20,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            kind = ArmMissing if status == 404 else ArmUnavailable
            raise kind(f"WebSocket /ws/chats/<id>/ refused: HTTP {status}") from exc

    async def _chat_socket(self) -> ClientConnection:
        return await self._open(await self.create_chat())

    async def prepare(self, count: int) -> list[Any]:
        # Sockets are open before the block starts: a client connects once and then sends.
        return await _bounded([self._chat_socket() for _ in range(count)])

    async def request(self, item: Any, content: str) -> Sample:
        if isinstance(item, BaseException):
            return Sample(ok=False, total=0.0, error=f"setup: {type(item).__name__}: {item}"[:120])
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                await item.send(json.dumps({"type": "message", "content": content}))
                return await self._read(item, started)
        except (WebSocketException, TimeoutError, OSError, ValueError) as exc:
            return Sample(ok=False, total=time.perf_counter() - started, error=type(exc).__name__)

    async def _read(self, socket: ClientConnection, started: float) -> Sample:
        first: float | None = None
        frames, parts = 0, []
        while True:
            frame = json.loads(await socket.recv())
            kind = frame.get("type")
            if kind == "token":
                first = first if first is not None else time.perf_counter() - started
                frames += 1
                parts.append(frame.get("delta") or "")
            elif kind == "done":
                total = time.perf_counter() - started
                if frame.get("status") != "complete":
                    return Sample(ok=False, total=total, error=f"done: {frame.get('status')}")
                words = len("".join(parts).split())
                return Sample(ok=True, total=total, ttft=first, chunks=words, frames=frames)
            elif kind == "error":
                return Sample(
                    ok=False,
                    total=time.perf_counter() - started,
                    error=f"error: {frame.get('code')}",
                )
            # start, and any frame type added later (presence, ...), carry no answer text.

    async def release(self, items: list[Any]) -> None:
        sockets = [item for item in items if isinstance(item, ClientConnection)]
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


def _assistant_text(payload: Any) -> str | None:
    """The answer in the REST reply, whichever of the likely shapes it has."""
    if isinstance(payload, dict):
        if payload.get("role") == "assistant" and "content" in payload:
            return payload["content"] or ""
        for key in ("assistant", "assistant_message", "message"):
            if isinstance(payload.get(key), dict):
                return _assistant_text(payload[key])
        if isinstance(payload.get("messages"), list):
            return _assistant_text(payload["messages"])
        if "content" in payload:
            return payload["content"] or ""
    if isinstance(payload, list):
        for entry in reversed(payload):
            text = _assistant_text(entry)
            if text is not None:
                return text
    return None


class ChatRestArm(_ChatsBase):
    streamed = False

    async def request(self, item: Any, content: str) -> Sample:
        if isinstance(item, BaseException):
            return Sample(ok=False, total=0.0, error=f"setup: {type(item).__name__}: {item}"[:120])
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self.client.post(
                    f"{self.base_url}/api/chats/{item}/messages", {"content": content}, self.headers
                )
        except (TimeoutError, *ERRORS) as exc:
            return Sample(ok=False, total=time.perf_counter() - started, error=type(exc).__name__)
        total = time.perf_counter() - started
        if response.status not in (200, 201):
            return Sample(ok=False, total=total, error=_rest_error(response))
        text = _assistant_text(response.json())
        if text is None:
            return Sample(ok=False, total=total, error="no assistant message in the reply")
        return Sample(ok=True, total=total, chunks=len(text.split()), frames=1)


def _rest_error(response: Response) -> str:
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        text = response.body.decode(errors="replace").strip()
        code = "(an HTML error page)" if text.startswith("<") else text[:60]
    if response.status == 404:
        code = f"{code} (POST /api/chats/<id>/messages missing?)"
    return f"HTTP {response.status} {code}"
