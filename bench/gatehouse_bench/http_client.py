"""The driver's HTTP client: aiohttp, one keep-alive pool per arm.

Why not httpx, which the SDKs use: the driver shares the 2 cores with the servers it measures,
so its own cost per request is taken from them. On these machines httpx spent about 4 ms of
driver CPU per non-streaming call and aiohttp 0.65 ms (2,000 calls at 32 clients against
Gatehouse's /v1, 2026-12-07), so with httpx the driver, not the server, was what capped
throughput at 32 clients. The same client serves every HTTP arm, so only the server differs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

# What a failed request raises, besides TimeoutError: caught by the arms and counted as errors.
ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, OSError, ValueError)


class Response:
    """Status and, for a whole response, its body."""

    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body

    def json(self) -> Any:
        return json.loads(self.body)


class HttpClient:
    """A pool made on first use: an aiohttp session belongs to the running event loop."""

    def __init__(self, concurrency: int, timeout_s: float) -> None:
        self._limit = concurrency + 8
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _pool(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit),
                timeout=self._timeout,
                trust_env=False,
            )
        return self._session

    async def post(self, url: str, payload: Any, headers: dict[str, str]) -> Response:
        async with self._pool().post(url, data=_encode(payload), headers=_json(headers)) as r:
            return Response(r.status, await r.read())

    @asynccontextmanager
    async def post_stream(
        self, url: str, payload: Any, headers: dict[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response with its body unread: iterate `response.content` for its lines."""
        async with self._pool().post(url, data=_encode(payload), headers=_json(headers)) as r:
            yield r

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def _json(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Content-Type": "application/json"}
