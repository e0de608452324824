"""Arms that speak OpenAI chat completions over HTTP: the simulator itself (direct), Gatehouse's
`/v1/chat/completions` and the LiteLLM proxy. Same client code for all three, so only the
server differs."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from gatehouse_bench.arm import ArmMissing, ArmUnavailable
from gatehouse_bench.http_client import ERRORS, HttpClient, StreamedResponse
from gatehouse_bench.plan import CHUNKS
from gatehouse_bench.stats import Sample


def _delta_text(payload: dict[str, Any]) -> str:
    choices = payload.get("choices") or []
    if not choices:
        return ""
    return (choices[0].get("delta") or {}).get("content") or ""


def _error_of(status: int, body: bytes) -> str:
    try:
        detail = json.loads(body).get("error")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, dict):
        return f"HTTP {status} {detail.get('code') or detail.get('type')}"
    if body.lstrip().startswith(b"<"):
        return f"HTTP {status} (an HTML error page)"
    return f"HTTP {status} {body[:80]!r}"


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
        self._client = HttpClient(concurrency)

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
        except (TimeoutError, *ERRORS) as exc:
            return Sample(ok=False, total=time.perf_counter() - started, error=type(exc).__name__)

    async def _whole(self, content: str, started: float) -> Sample:
        response = await self._client.post(self.url, self._body(content), self._headers)
        total = time.perf_counter() - started
        if response.status != 200:
            return Sample(ok=False, total=total, error=_error_of(response.status, response.body))
        message = response.json()["choices"][0]["message"]
        words = len((message.get("content") or "").split())
        return Sample(ok=True, total=total, chunks=words, frames=1)

    async def _stream(self, content: str, started: float) -> Sample:
        async with self._client.post_stream(self.url, self._body(content), self._headers) as r:
            if r.status != 200:
                body = await r.read()
                return Sample(
                    ok=False, total=time.perf_counter() - started, error=_error_of(r.status, body)
                )
            return await self._read_events(r, started)

    async def _read_events(self, response: StreamedResponse, started: float) -> Sample:
        first: float | None = None
        frames, parts, done = 0, [], False
        async for raw in response.content:
            if not raw.startswith(b"data:"):
                continue
            data = raw[5:].strip()
            if data == b"[DONE]":
                done = True  # read on to the body's end, so the connection is kept
                continue
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
        await self._client.close()
