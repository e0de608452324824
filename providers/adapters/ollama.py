"""Ollama's chat API through the official `ollama` SDK (ollama.AsyncClient, on httpx)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import httpx
import ollama

from .base import (
    Adapter,
    ChatTurn,
    Completion,
    Endpoint,
    ErrorCode,
    ModelInfo,
    StreamClock,
    StreamEnd,
    Timeouts,
    build_usage,
    resolve_max_tokens,
    resolve_temperature,
)
from .errors import detected_error


class OllamaAdapter(Adapter):
    kind: ClassVar[str] = "ollama"
    label: ClassVar[str] = "Ollama"
    default_base_url: ClassVar[str] = "http://127.0.0.1:11434"

    def __init__(self, endpoint: Endpoint, *, timeouts: Timeouts | None = None) -> None:
        super().__init__(endpoint, timeouts=timeouts)
        # Explicit, so that OLLAMA_HOST in the environment cannot reroute a credential.
        host = endpoint.base_url or self.default_base_url
        # Ollama has no auth of its own; a key is for the proxies (and ollama.com) in front of it.
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else None
        # AsyncClient passes these through to its httpx.AsyncClient.
        self._client = ollama.AsyncClient(
            host=host,
            headers=headers,
            **self._http_options(httpx, host),
        )

    def _params(
        self,
        messages: Sequence[ChatTurn],
        model: str,
        temperature: float | None,
        max_tokens: int | None,
        stop: Sequence[str] | None,
        top_p: float | None,
    ) -> dict[str, Any]:
        options: dict[str, Any] = {
            "temperature": resolve_temperature(self, temperature),
            "num_predict": resolve_max_tokens(self, max_tokens),
        }
        if stop:
            options["stop"] = list(stop)
        if top_p is not None:
            options["top_p"] = top_p
        return {"model": model, "messages": messages, "options": options}

    async def complete(
        self,
        messages: Sequence[ChatTurn],
        *,
        model: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        top_p: float | None = None,
    ) -> Completion:
        params = self._params(messages, model, temperature, max_tokens, stop, top_p)
        # stream=False explicitly: Ollama streams when the field is absent.
        response = await self._bounded(self._client.chat(**params, stream=False))
        text = response.message.content or ""
        return Completion(
            text=text,
            usage=build_usage(response.prompt_eval_count, response.eval_count, messages, (text,)),
            finish_reason=response.done_reason or "stop",
        )

    async def stream(
        self,
        messages: Sequence[ChatTurn],
        *,
        model: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        top_p: float | None = None,
    ) -> AsyncIterator[str | StreamEnd]:
        params = self._params(messages, model, temperature, max_tokens, stop, top_p)
        clock = StreamClock(self.timeouts)
        upstream: Any = None
        parts: list[str] = []
        final: Any = None
        try:
            clock.wait()
            # Returns the SDK's generator; the request itself goes out on the first read.
            upstream = await self._client.chat(**params, stream=True)
            next_part = upstream.__anext__
            while True:
                clock.wait()
                try:
                    part = await next_part()
                except StopAsyncIteration:
                    break
                clock.idle()
                text = part.message.content
                if text:
                    if not parts:
                        clock.first_token()
                    parts.append(text)
                    yield text
                if part.done:
                    # Keep reading to the end of the body so the connection goes back to the pool.
                    final = part
        except asyncio.CancelledError:
            if clock.timed_out():
                raise clock.timeout_error() from None
            raise
        except Exception as exc:
            raise self._error(exc) from None
        finally:
            clock.close()
            if upstream is not None:
                # Closing the SDK's generator exits its `client.stream()` block: the response
                # is closed and the connection released now, not when the GC gets to it.
                await upstream.aclose()
        if final is None:
            raise detected_error(ErrorCode.STREAM_INTERRUPTED, "stream ended without done")
        yield StreamEnd(
            usage=build_usage(final.prompt_eval_count, final.eval_count, messages, parts),
            finish_reason=final.done_reason or "stop",
        )

    async def list_models(self) -> list[ModelInfo]:
        response = await self._bounded(self._client.list())
        return [ModelInfo(id=model.model) for model in response.models if model.model]

    async def validate_model(self, model: str) -> bool:
        # Ollama lists "name:tag"; "name" alone means "name:latest".
        wanted = {model, f"{model}:latest"} if ":" not in model else {model}
        return any(info.id in wanted for info in await self.list_models())

    async def aclose(self) -> None:
        await self._client.close()
