"""Anthropic Messages through the official `anthropic` SDK (AsyncAnthropic, on httpx2).

As for OpenAI (see that module), streams use the SDK's generic `client.post(..., cast_to=object,
stream_cls=AsyncStream[object])`: the SDK still builds and authenticates the request, maps HTTP
errors, decodes the SSE and raises on `event: error`, but events arrive as decoded JSON rather
than constructed models (~13 µs per event saved, measured). `complete()` likewise posts with
`cast_to=httpx2.Response` (the SDK's documented way to get the raw response) and reads the
JSON body and the `request-id` header itself, skipping the SDK's request transform and the
Message model.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import anthropic
import httpx2

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
    collect_all,
    resolve_max_tokens,
)
from .errors import detected_error, stream_error

# Anthropic's stop reasons in the OpenAI vocabulary the rest of the gateway speaks.
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicAdapter(Adapter):
    kind: ClassVar[str] = "anthropic"
    label: ClassVar[str] = "Anthropic"
    temperature_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    default_base_url: ClassVar[str] = "https://api.anthropic.com"

    def __init__(self, endpoint: Endpoint, *, timeouts: Timeouts | None = None) -> None:
        super().__init__(endpoint, timeouts=timeouts)
        # Explicit, so that ANTHROPIC_BASE_URL in the environment cannot redirect a credential.
        base_url = endpoint.base_url or self.default_base_url
        http = self._http_options(httpx2, base_url)
        self._client = anthropic.AsyncAnthropic(
            api_key=endpoint.api_key,
            base_url=base_url,
            max_retries=0,
            timeout=http["timeout"],
            # No tracing spans: they cost on every call and the gateway has its own metrics.
            open_telemetry=False,
            http_client=anthropic.DefaultAsyncHttpxClient(**http),
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
        # temperature and top_p are not sent: API version 2026-10-21, which this SDK speaks,
        # answers 400 to any sampling parameter (even the default), and the SDK has dropped
        # them. `temperature_range` still describes the model family for forms.
        system, turns = to_anthropic_messages(messages)
        params: dict[str, Any] = {
            "model": model,
            "messages": turns,
            # Required by the API: there is no server-side default.
            "max_tokens": resolve_max_tokens(self, max_tokens),
        }
        if system:
            params["system"] = system
        if stop:
            params["stop_sequences"] = list(stop)
        return params

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
        # The generic call, as in stream(): the SDK builds, authenticates and sends the request
        # and maps HTTP errors; the body is read here as plain JSON (see the module docstring).
        response = await self._bounded(
            self._client.post("/v1/messages", body=params, cast_to=httpx2.Response)
        )
        try:
            message = json.loads(response.content)
            if message.get("type") == "error":
                # An error in a 200 body: judged by its type, as the SDK's stream judges an
                # `event: error` (an APIStatusError under the 200).
                error = message.get("error") or {}
                raise anthropic.APIStatusError(
                    str(error.get("message") or error), response=response, body=message
                )
            text = "".join(
                block["text"] for block in message.get("content") or () if block["type"] == "text"
            )
            usage = message.get("usage")
            return Completion(
                text=text,
                usage=build_usage(
                    _event_input_total(usage) if usage else None,
                    usage.get("output_tokens") if usage else None,
                    messages,
                    (text,),
                ),
                finish_reason=_finish(message.get("stop_reason")) or "stop",
                provider_request_id=response.headers.get("request-id") or message.get("id"),
            )
        except Exception as exc:
            # Invalid JSON, or JSON of the wrong shape: the answer is broken (stream_error says
            # so for a value of the wrong shape once there is an upstream response).
            raise stream_error(exc, response, secret=self.endpoint.api_key) from None

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
        params["stream"] = True
        clock = StreamClock(self.timeouts)
        upstream: anthropic.AsyncStream[Any] | None = None
        parts: list[str] = []
        stop_reason: str | None = None
        input_tokens: int | None = None
        output_tokens: int | None = None
        message_id: str | None = None
        try:
            clock.wait()
            upstream = await self._client.post(
                "/v1/messages",
                body=params,
                cast_to=object,
                stream=True,
                stream_cls=anthropic.AsyncStream[object],
            )
            next_event = upstream.__anext__
            while True:
                clock.wait()
                try:
                    event = await next_event()
                except StopAsyncIteration:
                    break
                clock.idle()
                kind = event.get("type")
                # Hot path first: text deltas are nearly every event.
                if kind == "content_block_delta":
                    delta = event.get("delta")
                    if delta and delta.get("type") == "text_delta" and delta.get("text"):
                        if not parts:
                            clock.first_token()
                        parts.append(delta["text"])
                        yield delta["text"]
                elif kind == "message_start":
                    message = event.get("message") or {}
                    message_id = message.get("id")
                    usage = message.get("usage")
                    if usage:
                        input_tokens = _event_input_total(usage)
                        output_tokens = usage.get("output_tokens")
                elif kind == "message_delta":
                    stop_reason = (event.get("delta") or {}).get("stop_reason") or stop_reason
                    usage = event.get("usage")
                    if usage:
                        # Cumulative counts: the delta's replace message_start's.
                        output_tokens = usage.get("output_tokens", output_tokens)
                        if usage.get("input_tokens") is not None:
                            input_tokens = _event_input_total(usage)
        except asyncio.CancelledError:
            if clock.timed_out():
                raise clock.timeout_error() from None
            raise
        except Exception as exc:
            raise stream_error(exc, upstream, secret=self.endpoint.api_key) from None
        finally:
            clock.close()
            if upstream is not None:
                # Releases the connection now when the consumer stopped early (or we failed).
                await upstream.close()
        if stop_reason is None:
            raise detected_error(ErrorCode.STREAM_INTERRUPTED, "stream ended without stop_reason")
        yield StreamEnd(
            usage=build_usage(input_tokens, output_tokens, messages, parts),
            finish_reason=_finish(stop_reason) or "stop",
            provider_request_id=_request_id(upstream, message_id),
        )

    async def list_models(self) -> list[ModelInfo]:
        models = await self._bounded(collect_all(self._client.models.list()))
        return [_model_info(model) for model in models]

    async def aclose(self) -> None:
        await self._client.close()


def to_anthropic_messages(messages: Sequence[ChatTurn]) -> tuple[str, list[dict[str, str]]]:
    """(system prompt, turns): system turns go to the separate `system` parameter, and
    consecutive turns of one role are merged, since the API wants user/assistant alternating."""
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "system":
            system.append(content)
        elif turns and turns[-1]["role"] == role:
            turns[-1]["content"] = f"{turns[-1]['content']}\n\n{content}"
        else:
            turns.append({"role": role, "content": content})
    return "\n\n".join(system), turns


def _input_total(input_tokens: int | None, created: int | None, read: int | None) -> int | None:
    # Anthropic counts cached prompt tokens apart; OpenAI's prompt_tokens includes them.
    if input_tokens is None:
        return None
    return input_tokens + (created or 0) + (read or 0)


def _event_input_total(usage: dict[str, Any]) -> int | None:
    return _input_total(
        usage.get("input_tokens"),
        usage.get("cache_creation_input_tokens"),
        usage.get("cache_read_input_tokens"),
    )


def _finish(stop_reason: str | None) -> str | None:
    return _FINISH.get(stop_reason, stop_reason) if stop_reason is not None else None


def _request_id(upstream: anthropic.AsyncStream[Any] | None, message_id: str | None) -> str | None:
    header = upstream.response.headers.get("request-id") if upstream is not None else None
    return header or message_id


def _model_info(model: Any) -> ModelInfo:
    return ModelInfo(
        id=model.id,
        context_window=getattr(model, "max_input_tokens", None),
        max_output_tokens=getattr(model, "max_tokens", None),
    )
