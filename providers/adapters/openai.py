"""OpenAI chat completions through the official `openai` SDK (AsyncOpenAI, on httpx2).

Streams go through the SDK's documented generic call, `client.post(..., cast_to=object,
stream_cls=...)`, not `chat.completions.create`: the SDK still builds the request,
authenticates and maps HTTP errors, and its `AsyncStream` hands over each chunk as its decoded
JSON instead of constructing pydantic models from it: that construction measured ~100-175 µs
per chunk, more than the gateway's whole per-chunk budget (60 µs); dict reads cost well under
1 µs. The stream class is `_Chunks`, an `AsyncStream` that cuts the SSE in bulk
(`sse.Decoder`) rather than a line at a time, under the same rules (`[DONE]`, in-band
`{"error": ...}` frames raising `APIError`), each chunk decoded by orjson (1.5 µs where
`json.loads` took 7.6, measured on a ~180-byte chunk). `complete()` does the same with
`cast_to=httpx2.Response` (the SDK's documented way to get the raw response): it reads the
JSON body and the `x-request-id` header itself rather than have the SDK transform the request
parameters and build a ChatCompletion model (~0.7 ms of CPU per call, measured).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import httpx2
import openai
from orjson import loads as json_chunk

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
    resolve_temperature,
)
from .errors import detected_error, stream_error
from .sse import Decoder

# The SDK refuses to send a request without credentials; keyless self-hosted servers ignore it.
_NO_KEY = "unused"
# The SDK's bound on reading what is left of a body after `[DONE]`.
_DRAIN_TIMEOUT_S = 0.1


class OpenAIAdapter(Adapter):
    kind: ClassVar[str] = "openai"
    label: ClassVar[str] = "OpenAI"
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    # OpenAI deprecated `max_tokens` and its reasoning models refuse it.
    max_tokens_param: ClassVar[str] = "max_completion_tokens"
    #: ask for the final usage chunk (`stream_options.include_usage`)
    stream_usage: ClassVar[bool] = True

    def __init__(self, endpoint: Endpoint, *, timeouts: Timeouts | None = None) -> None:
        super().__init__(endpoint, timeouts=timeouts)
        base_url = endpoint.base_url or self.default_base_url
        if not base_url:
            raise ValueError(f"a {self.kind} endpoint needs a base URL")
        http = self._http_options(httpx2, base_url)
        self._client = openai.AsyncOpenAI(
            api_key=endpoint.api_key or _NO_KEY,
            base_url=base_url,
            max_retries=0,
            timeout=http["timeout"],
            http_client=openai.DefaultAsyncHttpxClient(**http),
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
        params: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": resolve_temperature(self, temperature),
            self.max_tokens_param: resolve_max_tokens(self, max_tokens),
        }
        if stop:
            params["stop"] = list(stop)
        if top_p is not None:
            params["top_p"] = top_p
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
            self._client.post("/chat/completions", body=params, cast_to=httpx2.Response)
        )
        try:
            body = json.loads(response.content)
            if body.get("error") is not None:
                # An error in a 200 body, as some compatible servers answer: judged by its
                # type like the same error in a stream (the SDK raises APIError for both).
                error = body["error"]
                message = error.get("message") if isinstance(error, dict) else None
                raise openai.APIError(message or str(error), response.request, body=error)
            choices = body.get("choices")
            if not choices:
                raise detected_error(ErrorCode.STREAM_INTERRUPTED, "completion without choices")
            choice = choices[0]
            text = (choice.get("message") or {}).get("content") or ""
            usage = body.get("usage")
            return Completion(
                text=text,
                usage=build_usage(
                    usage.get("prompt_tokens") if usage else None,
                    usage.get("completion_tokens") if usage else None,
                    messages,
                    (text,),
                ),
                finish_reason=choice.get("finish_reason") or "stop",
                provider_request_id=response.headers.get("x-request-id") or body.get("id"),
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
        if self.stream_usage:
            params["stream_options"] = {"include_usage": True}
        clock = StreamClock(self.timeouts)
        upstream: openai.AsyncStream[Any] | None = None
        parts: list[str] = []
        finish: str | None = None
        usage: dict[str, Any] | None = None
        chunk: dict[str, Any] | None = None
        try:
            clock.wait()
            upstream = await self._client.post(
                "/chat/completions",
                body=params,
                cast_to=object,
                stream=True,
                stream_cls=_Chunks,
            )
            next_chunk = upstream.__anext__
            while True:
                clock.wait()
                try:
                    chunk = await next_chunk()
                except StopAsyncIteration:
                    break
                clock.idle()
                # Hot loop: reads on the decoded JSON, nothing allocated of our own.
                if chunk.get("usage") is not None:
                    usage = chunk["usage"]
                choices = chunk.get("choices")
                if not choices:
                    continue
                choice = choices[0]
                if choice.get("finish_reason") is not None:
                    finish = choice["finish_reason"]
                delta = choice.get("delta")
                text = delta.get("content") if delta else None
                if text:
                    if not parts:
                        clock.first_token()
                    parts.append(text)
                    yield text
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
        if finish is None:
            raise detected_error(
                ErrorCode.STREAM_INTERRUPTED, "stream ended without a finish_reason"
            )
        yield StreamEnd(
            usage=build_usage(
                usage.get("prompt_tokens") if usage else None,
                usage.get("completion_tokens") if usage else None,
                messages,
                parts,
            ),
            finish_reason=finish,
            provider_request_id=_request_id(upstream, chunk),
        )

    async def list_models(self) -> list[ModelInfo]:
        models = await self._bounded(collect_all(self._client.models.list()))
        return [ModelInfo(id=model.id) for model in models]

    async def aclose(self) -> None:
        await self._client.close()


class _Chunks(openai.AsyncStream[object]):
    """The SDK's stream of decoded chunks (a documented `stream_cls`), its SSE split in bulk
    (`sse.Decoder`, ~15 µs a chunk less). Otherwise the rules of `AsyncStream.__stream__` for chat
    completions: `[DONE]` ends it, the rest of an HTTP/1.1 body is read so the connection can be
    reused, an `{"error": ...}` chunk raises `APIError`, a transport failure becomes
    `APITimeoutError` or `APIConnectionError`, and the response is closed whatever happens."""

    async def __stream__(self) -> AsyncIterator[Any]:
        response = self.response
        decoder = Decoder()  # fed directly: a generator between would cost a resume per chunk
        body = response.aiter_bytes()
        try:
            async for raw in body:
                for event in decoder.feed(raw):
                    if event.data.startswith(b"[DONE]"):
                        await _done(response, body)
                        return
                    yield _chunk(event.data, response)
            for event in decoder.end():
                if event.data.startswith(b"[DONE]"):
                    return
                yield _chunk(event.data, response)
        except httpx2.TimeoutException as exc:
            raise openai.APITimeoutError(request=response.request) from exc
        except httpx2.RequestError as exc:
            raise openai.APIConnectionError(request=response.request) from exc
        finally:
            await response.aclose()


def _chunk(data: bytes, response: httpx2.Response) -> Any:
    chunk = json_chunk(data)
    if chunk.__class__ is dict and chunk.get("error"):
        raise _in_band_error(chunk["error"], response)
    return chunk


async def _done(response: httpx2.Response, body: AsyncIterator[bytes]) -> None:
    if response.http_version == "HTTP/1.1":
        await _drain(body)


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read the rest of the body the stream was reading, so that the connection can serve the
    next call. (Not `response.aiter_raw()`: the body is already being consumed, and httpx
    refuses a second reader with `StreamConsumed`; the connection was then closed whenever the
    body's end came after `[DONE]` in a read of its own.)"""
    # What follows `[DONE]` is at most a blank line; bounded all the same, as the SDK does.
    try:
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            async for _ in body:
                pass
    except (TimeoutError, httpx2.RequestError, httpx2.StreamError):
        pass  # the response is closed next, and the connection with it


def _in_band_error(error: Any, response: httpx2.Response) -> openai.APIError:
    message = error.get("message") if isinstance(error, dict) else None
    if not message or not isinstance(message, str):
        message = "An error occurred during streaming"
    return openai.APIError(message=message, request=response.request, body=error)


def _request_id(
    upstream: openai.AsyncStream[Any] | None, chunk: dict[str, Any] | None
) -> str | None:
    header = upstream.response.headers.get("x-request-id") if upstream is not None else None
    return header or (chunk.get("id") if chunk else None)
