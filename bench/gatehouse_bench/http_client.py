"""The driver's HTTP/1.1 client: keep-alive connections on asyncio streams, JSON bodies in,
whole or streamed (line by line, for SSE) bodies out.

Why not a library:
- httpx, which the SDKs use, cost about 4 ms of driver CPU per non-streaming call here
  (2,000 calls at 32 clients against Gatehouse's /v1, 2026-12-07). The driver shares the two
  cores with the servers it measures, so with httpx the driver, not the server, capped
  throughput at 32 clients, and the `direct` arm's times carried the client's own cost.
- aiohttp was cheap (0.65 ms), but it would have to live in Gatehouse's virtual environment,
  and the openai and anthropic SDKs import it there whenever it is installed (for their optional
  aiohttp transport): 11.6 MiB more RSS in the measured server, for a package it never uses.

The same client serves every HTTP arm, so only the server differs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

# What a failed request raises, besides TimeoutError: caught by the arms and counted as errors.
ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError)

_Address = tuple[str, int]


class Response:
    """Status and, for a whole response, its body."""

    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body

    def json(self) -> Any:
        return json.loads(self.body)


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        self.writer.close()


class StreamedResponse:
    """A response whose body is read as it arrives: `content` yields it line by line."""

    def __init__(self, status: int, headers: dict[str, str], conn: _Connection) -> None:
        self.status, self._headers, self._conn = status, headers, conn
        self.complete = False  # the whole body was read: the connection can be reused

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self._pieces()])

    @property
    def content(self) -> AsyncIterator[bytes]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[bytes]:
        pending = b""
        async for piece in self._pieces():
            pending += piece
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line + b"\n"
        if pending:
            yield pending

    async def _pieces(self) -> AsyncIterator[bytes]:
        reader = self._conn.reader
        if self._headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readline()).split(b";", 1)[0], 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                yield await reader.readexactly(size)
                await reader.readexactly(2)
        elif "content-length" in self._headers:
            length = int(self._headers["content-length"])
            if length:
                yield await reader.readexactly(length)
        else:  # delimited by the end of the connection
            while piece := await reader.read(65536):
                yield piece
            return
        self.complete = self._headers.get("connection", "").lower() != "close"


class HttpClient:
    """Idle keep-alive connections per server address, at most `concurrency + 8` kept."""

    def __init__(self, concurrency: int) -> None:
        # No timeout of its own: every arm bounds its requests with `asyncio.timeout`.
        self._keep = concurrency + 8
        self._idle: dict[_Address, list[_Connection]] = {}

    async def post(self, url: str, payload: Any, headers: dict[str, str]) -> Response:
        async with self.post_stream(url, payload, headers) as response:
            return Response(response.status, await response.read())

    @asynccontextmanager
    async def post_stream(
        self, url: str, payload: Any, headers: dict[str, str]
    ) -> AsyncIterator[StreamedResponse]:
        """The response with its body unread. A connection goes back to the pool only when the
        block read its whole body; any other way out closes it."""
        parts = urlsplit(url)
        address = (parts.hostname or "127.0.0.1", parts.port or 80)
        request = _request(address, parts.path or "/", payload, headers)
        response = await self._send(address, request)
        try:
            yield response
        finally:
            if response.complete and len(self._idle.setdefault(address, [])) < self._keep:
                self._idle[address].append(response._conn)
            else:
                response._conn.close()

    async def _send(self, address: _Address, request: bytes) -> StreamedResponse:
        # A kept connection the server has since closed (uvicorn drops idle ones after 5 s)
        # fails before any answer: the request is sent again once, on a new connection.
        while self._idle.get(address):
            conn = self._idle[address].pop()
            try:
                return await _exchange(conn, request)
            except (OSError, EOFError):
                conn.close()
        reader, writer = await asyncio.open_connection(*address)
        return await _exchange(_Connection(reader, writer), request)

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


def _request(address: _Address, path: str, payload: Any, headers: dict[str, str]) -> bytes:
    body = json.dumps(payload).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {address[0]}:{address[1]}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _exchange(conn: _Connection, request: bytes) -> StreamedResponse:
    try:
        conn.writer.write(request)
        status_line = await conn.reader.readline()
        if not status_line:
            raise EOFError("connection closed before the status line")
        status = int(status_line.split(None, 2)[1])
        headers: dict[str, str] = {}
        while (line := await conn.reader.readline()) not in (b"\r\n", b"\n"):
            if not line:
                raise EOFError("connection closed in the headers")
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
    except BaseException:
        conn.close()
        raise
    return StreamedResponse(status, headers, conn)
