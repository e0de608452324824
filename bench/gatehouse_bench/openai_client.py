"""Arms that speak OpenAI chat completions over HTTP: the simulator itself (direct), Gatehouse's
`/v1/chat/completions` and the LiteLLM proxy. Same client code for all three, so only the
server differs."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from gatehouse_bench.arm import ArmMissing, ArmUnavailable
from gatehouse_bench.plan import CHUNKS
from gatehouse_bench.stats import Sample


def http_client(concurrency: int, timeout_s: float) -> httpx.AsyncClient:
    # One pool per arm with keep-alive, as an SDK client in a real program would hold.
    limits = httpx.Limits(
        max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8
    )
    return httpx.AsyncClient(timeout=timeout_s, limits=limits, trust_env=False)


def _delta_text(payload: dict[str, Any]) -> str:
    choices = payload.get("choices") or []
    if not choices:
        return ""
    return (choices[0].get("delta") or {}).get("content") or ""


def _error_of(response: httpx.Response, body: bytes) -> str:
    try:
        detail = json.loads(body).get("error")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, dict):
        return f"HTTP {response.status_code} {detail.get('code') or detail.get('type')}"
    if body.lstrip().startswith(b"<"):
        return f"HTTP {response.status_code} (an HTML error page)"
    return f"HTTP {response.status_code} {body[:80]!r}"


class OpenAIArm:
    def __init__(
        self,
        *,
        name: str,
        label: str,
        url: str,
        model: str,
        api_key: str,
        stream: bool,
        server_pid: int | None,
        concurrency: int,
        timeout_s: float,
        chunks: int = CHUNKS,
        measures_database: bool = False,
    ) -> None:
        self.name, self.label, self.streamed = name, label, stream
        self.chunks, self.measures_database = chunks, measures_database
        self.url, self.model, self.server_pid = url, model, server_pid
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._client = http_client(concurrency, timeout_s)

    def _body(self, content: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "stream": self.streamed,
        }
        if self.streamed:
            body["stream_options"] = {"include_usage": True}
        return body

    async def probe(self) -> None:
        sample = await self.request(None, "Probe. sim:chunks=3")
        if not sample.ok:
            missing = (sample.error or "").startswith("HTTP 404")
            raise (ArmMissing if missing else ArmUnavailable)(f"POST {self.url}: {sample.error}")

    async def prepare(self, count: int) -> list[Any]:
        return [None] * count

    async def request(self, item: Any, content: str) -> Sample:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                if self.streamed:
                    return await self._stream(content, started)
                return await self._whole(content, started)
        except (httpx.HTTPError, TimeoutError, OSError, ValueError) as exc:
            return Sample(ok=False, total=time.perf_counter() - started, error=type(exc).__name__)

    async def _whole(self, content: str, started: float) -> Sample:
        response = await self._client.post(
            self.url, json=self._body(content), headers=self._headers
        )
        total = time.perf_counter() - started
        if response.status_code != 200:
            return Sample(ok=False, total=total, error=_error_of(response, response.content))
        message = response.json()["choices"][0]["message"]
        words = len((message.get("content") or "").split())
        return Sample(ok=True, total=total, chunks=words, frames=1)

    async def _stream(self, content: str, started: float) -> Sample:
        request = self._client.build_request(
            "POST", self.url, json=self._body(content), headers=self._headers
        )
        response = await self._client.send(request, stream=True)
        try:
            if response.status_code != 200:
                body = await response.aread()
                return Sample(
                    ok=False, total=time.perf_counter() - started, error=_error_of(response, body)
                )
            return await self._read_events(response, started)
        finally:
            await response.aclose()

    async def _read_events(self, response: httpx.Response, started: float) -> Sample:
        first: float | None = None
        frames, parts, done = 0, [], False
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            payload = json.loads(data)
            if "error" in payload:
                error = payload["error"] or {}
                return Sample(ok=False, total=time.perf_counter() - started, error=str(error)[:80])
            text = _delta_text(payload)
            if text:
                first = first if first is not None else time.perf_counter() - started
                frames += 1
                parts.append(text)
        total = time.perf_counter() - started
        if not done:
            return Sample(ok=False, total=total, error="stream ended without [DONE]")
        words = len("".join(parts).split())
        return Sample(ok=True, total=total, ttft=first, chunks=words, frames=frames)

    async def release(self, items: list[Any]) -> None:
        return None

    async def close(self) -> None:
        await self._client.aclose()
