"""The provider adapters: the real SDKs against the upstream simulator on loopback.

Nothing is patched: every request goes through openai / anthropic / ollama, their HTTP stacks,
the netguard request hook and the simulator's wire formats. The `simulator` fixture (session
scoped, tests/providers/conftest.py) is the simulator's base URL.
"""

from __future__ import annotations

import asyncio
import email.utils
import gc
import json
import logging
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from providers.adapters import (
    ADAPTERS,
    KINDS,
    MAX_ADAPTERS_PER_LOOP,
    adapter_class,
    close_adapters,
    get_adapter,
)
from providers.adapters.anthropic import to_anthropic_messages
from providers.adapters.base import (
    Adapter,
    ChatTurn,
    Endpoint,
    ErrorCode,
    ProviderError,
    StreamEnd,
    Timeouts,
    Usage,
    build_usage,
    estimate_tokens,
    resolve_max_tokens,
    resolve_temperature,
)
from providers.adapters.errors import parse_retry_after, redact, stream_error, to_provider_error

KEY = "sim-adapter-tests"


@dataclass(frozen=True)
class Kind:
    kind: str
    path: str
    models: tuple[str, ...]
    authenticated: bool = True

    @property
    def model(self) -> str:
        return self.models[0]


UNDER_TEST = {
    "openai": Kind("openai", "/openai/v1", ("sim-gpt", "sim-gpt-mini")),
    "openai_compatible": Kind("openai_compatible", "/openai/v1", ("sim-gpt", "sim-gpt-mini")),
    "anthropic": Kind("anthropic", "/anthropic", ("sim-claude", "sim-claude-haiku")),
    "ollama": Kind("ollama", "/ollama", ("sim-llama:latest",), authenticated=False),
}
WITH_AUTH = [name for name, kind in UNDER_TEST.items() if kind.authenticated]

Make = Callable[..., Adapter]


@pytest.fixture(params=list(UNDER_TEST))
def kind(request: pytest.FixtureRequest) -> Kind:
    return UNDER_TEST[request.param]


@pytest.fixture
async def make(simulator: str) -> AsyncIterator[Make]:
    """Adapters from the production entry point (`get_adapter`), closed after the test."""

    def _make(
        kind: Kind,
        *,
        key: str = KEY,
        base_url: str | None = None,
        timeouts: Timeouts | None = None,
        **defaults: Any,
    ) -> Adapter:
        endpoint = Endpoint(
            kind=kind.kind,
            base_url=base_url or simulator + kind.path,
            api_key=key,
            **defaults,
        )
        return get_adapter(endpoint, timeouts=timeouts)

    yield _make
    await close_adapters()


def say(*directives: str) -> list[ChatTurn]:
    return [
        {"role": "system", "content": "you are terse"},
        {"role": "user", "content": " ".join(("hello there", *directives))},
    ]


def word_count(messages: list[ChatTurn]) -> int:
    return sum(len(m["content"].split()) for m in messages)


async def collect(stream: AsyncIterator[str | StreamEnd]) -> tuple[list[str], StreamEnd]:
    """A stream's deltas and its end, checking the contract: non-empty str deltas, then exactly
    one StreamEnd, last."""
    items = [item async for item in stream]
    *deltas, end = items
    assert isinstance(end, StreamEnd)
    assert all(isinstance(d, str) and d for d in deltas)
    return deltas, end


async def failure(stream: AsyncIterator[str | StreamEnd]) -> tuple[list[str], ProviderError]:
    """The deltas a failing stream produced before its ProviderError (never a StreamEnd)."""
    deltas: list[str] = []
    with pytest.raises(ProviderError) as info:
        async for item in stream:
            assert isinstance(item, str) and item
            deltas.append(item)
    return deltas, info.value


# --- Registry and adapter cache -----------------------------------------------------------------


def test_registry_has_every_kind_with_a_label() -> None:
    assert set(ADAPTERS) == {"openai", "openai_compatible", "anthropic", "ollama"}
    assert [kind for kind, _ in KINDS] == list(ADAPTERS)
    assert all(label and label != kind for kind, label in KINDS)
    assert all(cls.kind == kind for kind, cls in ADAPTERS.items())
    assert dict(KINDS) == {kind: cls.label for kind, cls in ADAPTERS.items()}


def test_an_sdk_is_loaded_only_when_its_kind_is_first_used() -> None:
    # A fresh interpreter: this test process has long loaded every SDK.
    code = (
        "import os, sys, django;"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings');"
        "django.setup(); import config.asgi;"
        "from providers.adapters import adapter_class;"
        "before = {m for m in ('openai', 'anthropic', 'ollama') if m in sys.modules};"
        "adapter_class('anthropic');"
        "after = {m for m in ('openai', 'anthropic', 'ollama') if m in sys.modules};"
        "print(sorted(before), sorted(after))"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert done.stdout.split("\n")[0] == "[] ['anthropic']"


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown provider kind"):
        adapter_class("gopher")
    with pytest.raises(ValueError, match="unknown provider kind"):
        get_adapter(Endpoint(kind="gopher", base_url="http://127.0.0.1:1", api_key="k"))


def test_openai_compatible_needs_a_base_url() -> None:
    with pytest.raises(ValueError, match="base URL"):
        get_adapter(Endpoint(kind="openai_compatible", base_url=None, api_key="k"))


async def test_get_adapter_reuses_instances_within_a_loop(simulator: str) -> None:
    endpoint = Endpoint(kind="openai", base_url=simulator + "/openai/v1", api_key=KEY)
    try:
        first = get_adapter(endpoint)
        assert get_adapter(endpoint) is first
        assert (
            get_adapter(Endpoint(kind="openai", base_url=endpoint.base_url, api_key=KEY)) is first
        )
        # anything that changes the adapter's behaviour gives another one
        assert get_adapter(endpoint, timeouts=Timeouts(total=9.0)) is not first
        assert get_adapter(Endpoint("openai", endpoint.base_url, api_key="sim-other")) is not first
        assert get_adapter(
            Endpoint("openai", endpoint.base_url, KEY, default_max_tokens=9)
        ) is not (first)
        # and the reused instance works, several calls on one connection pool
        for _ in range(3):
            assert (await first.complete(say(), model="sim-gpt")).usage.output_tokens == 12
    finally:
        await close_adapters()


async def test_get_adapter_does_not_share_across_loops_or_outside_one(simulator: str) -> None:
    endpoint = Endpoint(kind="anthropic", base_url=simulator + "/anthropic", api_key=KEY)

    async def in_other_loop() -> Adapter:
        return get_adapter(endpoint)

    try:
        mine = get_adapter(endpoint)
        other = await asyncio.to_thread(asyncio.run, in_other_loop())
        assert other is not mine
        # without a running loop there is nothing to bind to: a fresh adapter each time
        loose = await asyncio.to_thread(get_adapter, endpoint)
        assert loose is not mine
        assert await asyncio.to_thread(get_adapter, endpoint) is not loose
    finally:
        await close_adapters()


async def test_get_adapter_cache_is_bounded(simulator: str) -> None:
    def endpoint(i: int) -> Endpoint:
        return Endpoint(kind="openai", base_url=simulator + "/openai/v1", api_key=f"sim-{i}")

    try:
        first = get_adapter(endpoint(0))
        for i in range(1, MAX_ADAPTERS_PER_LOOP + 1):
            get_adapter(endpoint(i))
        assert get_adapter(endpoint(MAX_ADAPTERS_PER_LOOP)) is get_adapter(
            endpoint(MAX_ADAPTERS_PER_LOOP)
        )
        assert get_adapter(endpoint(0)) is not first  # the least recently used went first
    finally:
        await close_adapters()


# --- Answers and usage --------------------------------------------------------------------------


async def test_complete(kind: Kind, make: Make) -> None:
    messages = say()
    completion = await make(kind).complete(messages, model=kind.model)
    assert len(completion.text.split()) == 12
    assert completion.usage == Usage(word_count(messages), 12)
    assert completion.finish_reason == "stop"
    if kind.kind != "ollama":  # Ollama has no request ids
        assert completion.provider_request_id


async def test_stream(kind: Kind, make: Make) -> None:
    adapter, messages = make(kind), say()
    deltas, end = await collect(adapter.stream(messages, model=kind.model))
    assert len(deltas) == 12
    assert end.usage == Usage(word_count(messages), 12)
    assert end.finish_reason == "stop"
    # the simulator is deterministic: the stream says what the completion says
    assert "".join(deltas) == (await adapter.complete(messages, model=kind.model)).text


async def test_stream_with_multi_word_chunks(kind: Kind, make: Make) -> None:
    messages = say("sim:chunks=4", "sim:chunk_size=3")
    deltas, end = await collect(make(kind).stream(messages, model=kind.model))
    assert len(deltas) == 4
    assert len("".join(deltas).split()) == 12
    assert end.usage == Usage(word_count(messages), 12)


async def test_consecutive_turns_of_one_role(kind: Kind, make: Make) -> None:
    # Anthropic wants alternating roles: the adapter merges; the others pass them through.
    messages: list[ChatTurn] = [
        {"role": "system", "content": "one"},
        {"role": "system", "content": "two"},
        {"role": "user", "content": "three four"},
        {"role": "user", "content": "five"},
    ]
    completion = await make(kind).complete(messages, model=kind.model)
    assert completion.usage == Usage(5, 12)


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_max_tokens_cut_finishes_with_length(kind: Kind, make: Make, mode: str) -> None:
    adapter, messages = make(kind), say()
    if mode == "complete":
        result = await adapter.complete(messages, model=kind.model, max_tokens=3)
        text, usage, finish = result.text, result.usage, result.finish_reason
    else:
        deltas, end = await collect(adapter.stream(messages, model=kind.model, max_tokens=3))
        text, usage, finish = "".join(deltas), end.usage, end.finish_reason
    assert finish == "length"
    assert len(text.split()) == 3
    assert usage == Usage(word_count(messages), 3)


async def test_max_tokens_falls_back_to_the_endpoint_default(kind: Kind, make: Make) -> None:
    adapter = make(kind, default_max_tokens=4)
    deltas, end = await collect(adapter.stream(say(), model=kind.model))
    assert (len(deltas), end.finish_reason) == (4, "length")
    # an explicit value still wins
    _, end = await collect(adapter.stream(say(), model=kind.model, max_tokens=100))
    assert (end.usage.output_tokens, end.finish_reason) == (12, "stop")


async def test_max_tokens_falls_back_to_the_platform_default(
    kind: Kind, make: Make, settings: Any
) -> None:
    settings.GATEHOUSE_DEFAULT_MAX_TOKENS = 5
    completion = await make(kind).complete(say(), model=kind.model)
    assert (completion.usage.output_tokens, completion.finish_reason) == (5, "length")


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_zero_usage_stays_zero(kind: Kind, make: Make, mode: str) -> None:
    adapter, messages = make(kind), say("sim:fault=zero_usage")
    if mode == "complete":
        usage = (await adapter.complete(messages, model=kind.model)).usage
    else:
        usage = (await collect(adapter.stream(messages, model=kind.model)))[1].usage
    assert usage == Usage(0, 0, estimated=False)


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_missing_usage_is_estimated(kind: Kind, make: Make, mode: str) -> None:
    adapter, messages = make(kind), say("sim:fault=no_usage")
    if mode == "complete":
        completion = await adapter.complete(messages, model=kind.model)
        text, usage, finish = completion.text, completion.usage, completion.finish_reason
    else:
        deltas, end = await collect(adapter.stream(messages, model=kind.model))
        text, usage, finish = "".join(deltas), end.usage, end.finish_reason
    prompt = "\n".join(m["content"] for m in messages)
    assert usage == Usage(estimate_tokens(prompt), estimate_tokens(text), estimated=True)
    assert finish == "stop"


# --- Models -------------------------------------------------------------------------------------


async def test_list_and_validate_models(kind: Kind, make: Make) -> None:
    adapter = make(kind)
    models = await adapter.list_models()
    assert [m.id for m in models] == list(kind.models)
    for model in kind.models:
        assert await adapter.validate_model(model)
    assert not await adapter.validate_model("sim-nonexistent")


async def test_anthropic_models_carry_their_limits(make: Make) -> None:
    models = await make(UNDER_TEST["anthropic"]).list_models()
    assert {(m.context_window, m.max_output_tokens) for m in models} == {(200_000, 64_000)}


async def test_ollama_validates_a_name_without_its_tag(make: Make) -> None:
    adapter = make(UNDER_TEST["ollama"])
    assert await adapter.validate_model("sim-llama")
    assert await adapter.validate_model("sim-llama:latest")
    assert not await adapter.validate_model("sim-llama:7b")


# --- Faults -------------------------------------------------------------------------------------


def expected_fault(kind: Kind, fault: str) -> str:
    # HTTP 503 is "unavailable"; only Anthropic says "overloaded" (529 / overloaded_error).
    if fault == "overloaded":
        return ErrorCode.OVERLOADED if kind.kind == "anthropic" else ErrorCode.UPSTREAM_UNAVAILABLE
    return {
        "500": ErrorCode.UPSTREAM_UNAVAILABLE,
        "503": ErrorCode.UPSTREAM_UNAVAILABLE,
        "inband_error": ErrorCode.UPSTREAM_UNAVAILABLE,
        "reset": ErrorCode.STREAM_INTERRUPTED,
        "malformed": ErrorCode.STREAM_INTERRUPTED,
    }[fault]


HTTP_AND_BODY_FAULTS = ["500", "503", "overloaded", "inband_error", "reset", "malformed"]


def strikes_mid_stream(kind: Kind, fault: str) -> bool:
    return fault in ("inband_error", "reset", "malformed") or (
        fault == "overloaded" and kind.kind == "anthropic"
    )


@pytest.mark.parametrize(
    "fault", ["500", "503", "overloaded", "inband_error", "reset", "malformed"]
)
async def test_stream_faults(kind: Kind, make: Make, fault: str) -> None:
    adapter = make(kind)
    deltas, error = await failure(adapter.stream(say(f"sim:fault={fault}"), model=kind.model))
    assert error.code == expected_fault(kind, fault)
    assert error.retryable is True
    assert error.message  # the safe text, never the upstream's
    # mid-stream faults strike after the simulator's default 3 chunks
    assert len(deltas) == (3 if strikes_mid_stream(kind, fault) else 0)
    # the adapter is still usable afterwards
    assert (await collect(adapter.stream(say(), model=kind.model)))[1].finish_reason == "stop"


@pytest.mark.parametrize(
    "fault", ["500", "503", "overloaded", "inband_error", "reset", "malformed"]
)
async def test_complete_faults(kind: Kind, make: Make, fault: str) -> None:
    with pytest.raises(ProviderError) as info:
        await make(kind).complete(say(f"sim:fault={fault}"), model=kind.model)
    # non-streamed, an in-band error is the provider's 500 and Anthropic's overload its 529
    assert info.value.code == expected_fault(kind, fault)
    assert info.value.retryable is True


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize(("directive", "seconds"), [("2", 2.0), ("0.5", 0.5)])
async def test_rate_limit_carries_retry_after(
    kind: Kind, make: Make, mode: str, directive: str, seconds: float
) -> None:
    adapter, messages = make(kind), say("sim:fault=429", f"sim:retry_after={directive}")
    if mode == "complete":
        with pytest.raises(ProviderError) as info:
            await adapter.complete(messages, model=kind.model)
        error = info.value
    else:
        _, error = await failure(adapter.stream(messages, model=kind.model))
    assert (error.code, error.retryable, error.retry_after, error.status) == (
        ErrorCode.RATE_LIMITED,
        True,
        seconds,
        429,
    )


@pytest.mark.parametrize("mode", ["complete", "stream", "list"])
async def test_unknown_model(kind: Kind, make: Make, mode: str) -> None:
    adapter = make(kind)
    if mode == "list":  # an unknown model is not an error for listing
        assert not await adapter.validate_model("sim-unknown")
        return
    if mode == "complete":
        with pytest.raises(ProviderError) as info:
            await adapter.complete(say(), model="sim-unknown")
        error = info.value
    else:
        _, error = await failure(adapter.stream(say(), model="sim-unknown"))
    assert (error.code, error.retryable, error.status) == (ErrorCode.MODEL_NOT_FOUND, False, 404)


@pytest.mark.parametrize("name", WITH_AUTH)
@pytest.mark.parametrize("mode", ["complete", "stream", "list"])
async def test_wrong_key(make: Make, name: str, mode: str) -> None:
    kind = UNDER_TEST[name]
    adapter = make(kind, key="wrong-key")
    with pytest.raises(ProviderError) as info:
        if mode == "complete":
            await adapter.complete(say(), model=kind.model)
        elif mode == "stream":
            await collect(adapter.stream(say(), model=kind.model))
        else:
            await adapter.list_models()
    assert (info.value.code, info.value.retryable, info.value.status) == (
        ErrorCode.AUTH_FAILED,
        False,
        401,
    )


async def test_keyless_openai_compatible_server(make: Make) -> None:
    # A self-hosted server without auth: no key configured must still send a request (the
    # simulator, which wants one, answers 401 — proving the request went out).
    with pytest.raises(ProviderError) as info:
        await make(UNDER_TEST["openai_compatible"], key="").complete(say(), model="sim-gpt")
    assert info.value.code == ErrorCode.AUTH_FAILED


# --- Timeouts -----------------------------------------------------------------------------------

FAST_FIRST = Timeouts(connect=2.0, first_token=0.3, chunk_gap=5.0, total=20.0)
FAST_GAP = Timeouts(connect=2.0, first_token=5.0, chunk_gap=0.3, total=20.0)


async def test_slow_first_token_times_out(kind: Kind, make: Make) -> None:
    adapter = make(kind, timeouts=FAST_FIRST)
    started = time.monotonic()
    messages = say("sim:fault=slow_first", "sim:first_token_delay=3")
    deltas, error = await failure(adapter.stream(messages, model=kind.model))
    assert time.monotonic() - started < 1.5
    assert (deltas, error.code, error.retryable) == ([], ErrorCode.TIMEOUT, True)
    assert "first_token" in error.detail
    # our own deadline: the task is not left cancelled
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    assert (await collect(adapter.stream(say(), model=kind.model)))[1].finish_reason == "stop"


async def test_stall_mid_stream_times_out(kind: Kind, make: Make) -> None:
    adapter = make(kind, timeouts=FAST_GAP)
    started = time.monotonic()
    deltas, error = await failure(adapter.stream(say("sim:fault=stall"), model=kind.model))
    assert time.monotonic() - started < 1.5
    assert (len(deltas), error.code, error.retryable) == (3, ErrorCode.TIMEOUT, True)
    assert "chunk_gap" in error.detail
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_total_timeout(kind: Kind, make: Make) -> None:
    adapter = make(kind, timeouts=Timeouts(connect=2.0, first_token=5.0, chunk_gap=5.0, total=0.5))
    slow = say("sim:delay=0.1")  # 12 chunks: 1.1 s in all
    started = time.monotonic()
    deltas, error = await failure(adapter.stream(slow, model=kind.model))
    assert (error.code, "total" in error.detail) == (ErrorCode.TIMEOUT, True)
    assert 0 < len(deltas) < 12
    with pytest.raises(ProviderError) as info:
        await adapter.complete(slow, model=kind.model)
    assert info.value.code == ErrorCode.TIMEOUT
    assert time.monotonic() - started < 2.5


async def test_a_slow_consumer_is_not_timed_out(kind: Kind, make: Make) -> None:
    # Only the waits on the upstream are bounded, not the time the consumer takes per chunk.
    adapter = make(kind, timeouts=Timeouts(first_token=0.3, chunk_gap=0.3, total=20.0))
    deltas: list[str] = []
    async for item in adapter.stream(say("sim:chunks=3"), model=kind.model):
        if isinstance(item, str):
            deltas.append(item)
            await asyncio.sleep(0.5)
    assert len(deltas) == 3


async def test_outside_cancellation_is_not_a_timeout(kind: Kind, make: Make) -> None:
    adapter = make(kind, timeouts=FAST_GAP)
    got_deltas = asyncio.Event()

    async def consume() -> None:
        async for _ in adapter.stream(say("sim:fault=stall", "sim:after=1"), model=kind.model):
            got_deltas.set()

    task = asyncio.create_task(consume())
    await got_deltas.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- Early exit releases the connection ---------------------------------------------------------


def pool_connections(adapter: Adapter) -> list[Any]:
    """White-box: the connections in the adapter's HTTP pool (all three SDK clients keep their
    httpx/httpx2 AsyncClient as `_client`)."""
    http = adapter._client._client  # type: ignore[attr-defined]
    return list(http._transport._pool.connections)


def released(adapter: Adapter) -> bool:
    return all(c.is_idle() or c.is_closed() for c in pool_connections(adapter))


async def test_aclose_releases_the_upstream_connection(kind: Kind, make: Make) -> None:
    adapter = make(kind)
    stream = adapter.stream(say("sim:fault=stall", "sim:after=5"), model=kind.model)
    assert isinstance(await anext(stream), str)
    assert not released(adapter)  # the stalled response holds its connection
    started = time.monotonic()
    await stream.aclose()  # type: ignore[attr-defined]
    assert time.monotonic() - started < 1.0
    assert released(adapter)


async def test_abandoned_stream_releases_the_upstream_connection(kind: Kind, make: Make) -> None:
    adapter = make(kind)
    async for _ in adapter.stream(say("sim:fault=stall", "sim:after=5"), model=kind.model):
        break  # no aclose: the event loop's async-generator finalizer closes it
    gc.collect()
    for _ in range(100):
        if released(adapter):
            break
        await asyncio.sleep(0.01)
    assert released(adapter)


async def test_connection_is_reused_after_a_complete_stream(kind: Kind, make: Make) -> None:
    adapter = make(kind)
    for _ in range(3):
        await collect(adapter.stream(say(), model=kind.model))
    assert len(pool_connections(adapter)) == 1


# --- The key never leaks ------------------------------------------------------------------------


def assert_no_key(error: ProviderError, key: str) -> None:
    for text in (str(error), repr(error), error.message, error.detail):
        assert key not in text
        assert key[5:-3] not in text  # nor a recognisable part of it


async def test_canary_key_never_in_errors_or_logs(
    kind: Kind, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the SDKs' debug logging included
    canary = f"sim-canary-{uuid.uuid4().hex}"
    adapter = make(kind, key=canary, timeouts=Timeouts(first_token=0.3, chunk_gap=0.3, total=5))
    errors: list[ProviderError] = []
    for fault in ["429", "500", "503", "overloaded", "inband_error", "reset", "malformed", "stall"]:
        messages = say(f"sim:fault={fault}")
        errors.append((await failure(adapter.stream(messages, model=kind.model)))[1])
        if fault != "stall":
            with pytest.raises(ProviderError) as info:
                await adapter.complete(messages, model=kind.model)
            errors.append(info.value)
    errors.append((await failure(adapter.stream(say("sim:fault=slow_first"), model=kind.model)))[1])
    with pytest.raises(ProviderError) as info:
        await adapter.complete(say(), model="sim-unknown")
    errors.append(info.value)
    if kind.authenticated:
        wrong = f"canary-{uuid.uuid4().hex}"  # not a sim- key: refused
        with pytest.raises(ProviderError) as info:
            await make(kind, key=wrong).complete(say(), model=kind.model)
        assert info.value.code == ErrorCode.AUTH_FAILED
        assert_no_key(info.value, wrong)
        assert wrong not in caplog.text
    assert len({e.code for e in errors}) >= 4
    for error in errors:
        assert_no_key(error, canary)
    assert canary not in caplog.text


async def test_a_key_echoed_by_the_upstream_is_redacted(kind: Kind, make: Make) -> None:
    # The simulator quotes an unknown directive in its 400 body: here, the key itself, whole
    # and truncated, the way some providers echo (part of) a rejected key.
    canary = f"sim-canary-{uuid.uuid4().hex}"
    adapter = make(kind, key=canary)
    for echoed in (canary, canary[:-6], f"x{canary[4:]}"):
        with pytest.raises(ProviderError) as info:
            await adapter.complete(say(f"sim:{echoed}"), model=kind.model)
        assert info.value.code == ErrorCode.BAD_REQUEST
        assert "[redacted]" in info.value.detail
        assert_no_key(info.value, canary)


# --- Base URL safety (netguard in the SDKs' request hook) ---------------------------------------


@pytest.mark.parametrize("mode", ["complete", "stream", "list"])
async def test_forbidden_base_url_is_refused(kind: Kind, make: Make, mode: str) -> None:
    adapter = make(kind, base_url="http://169.254.169.254/latest")
    with pytest.raises(ProviderError) as info:
        if mode == "complete":
            await adapter.complete(say(), model=kind.model)
        elif mode == "stream":
            await collect(adapter.stream(say(), model=kind.model))
        else:
            await adapter.list_models()
    assert (info.value.code, info.value.retryable) == (ErrorCode.URL_REFUSED, False)


async def test_redirect_to_a_forbidden_host_is_refused(make: Make, simulator: str) -> None:
    kind = UNDER_TEST["anthropic"]
    # the SDK appends its path to the base URL (here: to its query), the simulator redirects
    base_url = f"{simulator}/_sim/redirect?to=http://169.254.169.254/latest"
    with pytest.raises(ProviderError) as info:
        await make(kind, base_url=base_url).complete(say(), model=kind.model)
    assert (info.value.code, info.value.retryable) == (ErrorCode.URL_REFUSED, False)


async def test_a_redirect_keeps_the_key_only_within_the_origin(make: Make, simulator: str) -> None:
    kind = UNDER_TEST["anthropic"]
    same_origin = f"{simulator}/_sim/redirect?to={simulator}{kind.path}"
    completion = await make(kind, base_url=same_origin).complete(say(), model=kind.model)
    assert completion.usage.output_tokens == 12
    # localhost is the same server but another origin: the credential must not follow
    other_origin = simulator.replace("127.0.0.1", "localhost")
    cross = f"{simulator}/_sim/redirect?to={other_origin}{kind.path}"
    with pytest.raises(ProviderError) as info:
        await make(kind, base_url=cross).complete(say(), model=kind.model)
    assert info.value.code == ErrorCode.AUTH_FAILED


# OpenAI's SDK turns `.../_sim/redirect?to=X` into `.../_sim/redirect/?to=X`, a path the
# simulator does not route, and ollama's host parser drops query strings: for those two the
# hook is exercised on each adapter's own HTTP client (the one its SDK sends through).
CREDENTIALS = {"authorization": "Bearer sim-hook-test", "x-api-key": "sim-hook-test"}


async def test_every_adapters_http_client_guards_redirects(
    kind: Kind, make: Make, simulator: str
) -> None:
    http = make(kind)._client._client  # type: ignore[attr-defined]
    with pytest.raises(ProviderError) as info:
        await http.get(f"{simulator}/_sim/redirect?to=http://169.254.169.254/latest")
    assert info.value.code == ErrorCode.URL_REFUSED

    same = await http.get(
        f"{simulator}/_sim/redirect?to={simulator}/_sim/stats", headers=CREDENTIALS
    )
    assert same.status_code == 200 and len(same.history) == 1
    assert same.request.headers.get("x-api-key") == "sim-hook-test"

    other_origin = simulator.replace("127.0.0.1", "localhost")
    cross = await http.get(
        f"{simulator}/_sim/redirect?to={other_origin}/_sim/stats", headers=CREDENTIALS
    )
    assert cross.status_code == 200 and cross.request.url.host == "localhost"
    assert not {"authorization", "x-api-key"} & set(cross.request.headers)


# --- Units: sampling defaults, message shaping, usage -------------------------------------------


def test_temperature_falls_back_and_is_clamped(settings: Any) -> None:
    settings.GATEHOUSE_DEFAULT_TEMPERATURE = 0.2
    openai_kind = ADAPTERS["openai"](Endpoint("openai", None, "k", default_temperature=1.5))
    plain = ADAPTERS["openai"](Endpoint("openai", None, "k"))
    claude = ADAPTERS["anthropic"](Endpoint("anthropic", None, "k", default_temperature=1.5))
    assert resolve_temperature(openai_kind, 0.9) == 0.9
    assert resolve_temperature(openai_kind, None) == 1.5
    assert resolve_temperature(plain, None) == 0.2
    assert resolve_temperature(claude, None) == 1.0  # Anthropic's range is 0..1
    assert resolve_temperature(plain, 3.0) == 2.0
    del settings.GATEHOUSE_DEFAULT_TEMPERATURE
    assert resolve_temperature(plain, None) == 0.7


def test_max_tokens_falls_back(settings: Any) -> None:
    settings.GATEHOUSE_DEFAULT_MAX_TOKENS = 77
    with_default = ADAPTERS["ollama"](Endpoint("ollama", None, "", default_max_tokens=10))
    plain = ADAPTERS["ollama"](Endpoint("ollama", None, ""))
    assert resolve_max_tokens(with_default, 5) == 5
    assert resolve_max_tokens(with_default, None) == 10
    assert resolve_max_tokens(plain, None) == 77
    del settings.GATEHOUSE_DEFAULT_MAX_TOKENS
    assert resolve_max_tokens(plain, None) == 1024


def test_anthropic_messages_take_the_system_prompt_apart_and_merge_turns() -> None:
    messages: list[ChatTurn] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
        {"role": "system", "content": "be kind"},
        {"role": "assistant", "content": "d"},
        {"role": "user", "content": "e"},
    ]
    original = [dict(m) for m in messages]
    system, turns = to_anthropic_messages(messages)
    assert system == "be brief\n\nbe kind"
    assert turns == [
        {"role": "user", "content": "a\n\nb"},
        {"role": "assistant", "content": "c\n\nd"},
        {"role": "user", "content": "e"},
    ]
    assert messages == original


def test_usage_zero_stays_zero_and_missing_is_estimated() -> None:
    messages: list[ChatTurn] = [{"role": "user", "content": "one two three"}]
    assert build_usage(0, 0, messages, ["x"]) == Usage(0, 0)
    assert build_usage(7, None, messages, ["four five"]) == Usage(7, 3, estimated=True)
    assert build_usage(None, 2, messages, []) == Usage(4, 2, estimated=True)


# --- Units: error mapping -----------------------------------------------------------------------


def test_retry_after_seconds_milliseconds_and_dates() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": " 1.5 "}) == 1.5
    assert parse_retry_after({"retry-after": "-4"}) == 0.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    in_30s = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": in_30s}, now=now) == pytest.approx(30, abs=1)
    minus_zero = email.utils.formatdate(now + 30).replace("+0000", "-0000")
    assert parse_retry_after({"retry-after": minus_zero}, now=now) == pytest.approx(30, abs=1)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "nan"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after(httpx2.Headers({"Retry-After": "2"})) == 2.0


def test_redact() -> None:
    key = "sk-proj-Abc123Def456Ghi789"
    assert redact(f"bad key {key}!", key) == "bad key [redacted]!"
    assert key[:12] not in redact(f"Incorrect API key provided: {key[:12]}***{key[-4:]}", key)
    assert "Bearer [redacted]" in redact("header Authorization: Bearer abc.def", key)
    assert redact("nothing to see", key) == "nothing to see"
    assert redact("short key x1", "x1") == "short key [redacted]"
    assert redact("", key) == ""
    assert redact("no key configured", "") == "no key configured"


def _request() -> httpx2.Request:
    return httpx2.Request("POST", "https://api.example.com/v1/chat/completions")


def test_mapping_finds_a_provider_error_wrapped_by_an_sdk() -> None:
    refused = ProviderError(ErrorCode.URL_REFUSED, retryable=False, detail="to sim-secret-123456")
    try:
        try:
            raise refused
        except ProviderError as inner:
            raise anthropic.APIConnectionError(request=_request()) from inner
    except anthropic.APIConnectionError as wrapped:
        error = to_provider_error(wrapped, secret="sim-secret-123456")
    assert error is refused
    assert "sim-secret" not in error.detail


def test_mapping_of_a_status_error_that_quotes_the_key() -> None:
    key = "sk-live-0123456789abcdef"
    body = {"error": {"message": f"Incorrect API key provided: {key}", "code": "invalid_api_key"}}
    response = httpx2.Response(401, json=body, request=_request())
    exc = openai.AuthenticationError(f"Error code: 401 - {body}", response=response, body=body)
    error = to_provider_error(exc, secret=key)
    assert (error.code, error.status, error.retryable) == (ErrorCode.AUTH_FAILED, 401, False)
    assert key not in error.detail and key not in str(error)


def test_mapping_of_an_openai_compatible_missing_model_400() -> None:
    body = {"error": {"message": "The model `llama-9` does not exist.", "type": "NotFoundError"}}
    response = httpx2.Response(400, json=body, request=_request())
    exc = openai.BadRequestError("Error code: 400", response=response, body=body["error"])
    assert to_provider_error(exc).code == ErrorCode.MODEL_NOT_FOUND


def test_mapping_of_an_overloaded_503_and_a_retry_after_on_5xx() -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    response = httpx2.Response(503, json=body, headers={"retry-after": "7"}, request=_request())
    exc = anthropic.ServiceUnavailableError("Error code: 503", response=response, body=body)
    error = to_provider_error(exc)
    assert (error.code, error.retry_after) == (ErrorCode.OVERLOADED, 7.0)


@pytest.mark.parametrize(
    ("exc", "code", "retryable"),
    [
        (TimeoutError(), ErrorCode.TIMEOUT, True),
        (httpx.ReadTimeout("slow"), ErrorCode.TIMEOUT, True),
        (openai.APITimeoutError(request=_request()), ErrorCode.TIMEOUT, True),
        (httpx.ConnectError("refused"), ErrorCode.UPSTREAM_UNAVAILABLE, True),
        (ConnectionError("Failed to connect to Ollama"), ErrorCode.UPSTREAM_UNAVAILABLE, True),
        (httpx2.RemoteProtocolError("incomplete"), ErrorCode.STREAM_INTERRUPTED, True),
        (ConnectionResetError(), ErrorCode.STREAM_INTERRUPTED, True),
        (json.JSONDecodeError("Expecting value", "{", 1), ErrorCode.STREAM_INTERRUPTED, True),
        (ValueError("request-side"), ErrorCode.UPSTREAM_UNAVAILABLE, False),
        (httpx2.TooManyRedirects("loop"), ErrorCode.UPSTREAM_UNAVAILABLE, False),
        (RuntimeError("a bug"), ErrorCode.UPSTREAM_UNAVAILABLE, False),
    ],
)
def test_mapping_of_transport_and_unexpected_errors(
    exc: BaseException, code: str, retryable: bool
) -> None:
    error = to_provider_error(exc)
    assert (error.code, error.retryable) == (code, retryable)
    assert type(exc).__name__ in error.detail


def test_a_chunk_of_the_wrong_shape_is_a_malformed_stream() -> None:
    error = stream_error(KeyError("choices"), object(), secret="sim-secret-1234567")
    assert (error.code, error.retryable) == (ErrorCode.STREAM_INTERRUPTED, True)
    assert "malformed chunk" in error.detail
    # before the stream is open the same error is not blamed on the upstream's data
    assert stream_error(TypeError("bad"), None).code == ErrorCode.UPSTREAM_UNAVAILABLE


def test_apiconnectionerror_is_judged_by_its_cause() -> None:
    def wrapped(cause: Exception) -> openai.APIConnectionError:
        try:
            raise cause
        except Exception as inner:
            try:
                raise openai.APIConnectionError(request=_request()) from inner
            except openai.APIConnectionError as outer:
                return outer

    connect = to_provider_error(wrapped(httpx2.ConnectError("refused")))
    broken = to_provider_error(wrapped(httpx2.RemoteProtocolError("incomplete chunked read")))
    assert connect.code == ErrorCode.UPSTREAM_UNAVAILABLE
    assert broken.code == ErrorCode.STREAM_INTERRUPTED


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unreachable_upstream(kind: Kind, make: Make) -> None:
    # A port nothing listens on: connection refused → upstream_unavailable, retryable.
    adapter = make(kind, base_url=f"http://127.0.0.1:{free_port()}{kind.path}")
    with pytest.raises(ProviderError) as info:
        await adapter.complete(say(), model=kind.model)
    assert (info.value.code, info.value.retryable) == (ErrorCode.UPSTREAM_UNAVAILABLE, True)
    _, error = await failure(adapter.stream(say(), model=kind.model))
    assert error.code == ErrorCode.UPSTREAM_UNAVAILABLE


def test_the_token_estimate_is_the_larger_of_length_over_four_and_the_word_count() -> None:
    # The shortcut that skips the word split must never change the estimate.
    rng = random.Random(7)
    alphabet = "ab c\n\t\r\x0b\x0cé  x\u2003"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        expected = max(-(-len(text) // 4), len(text.split())) if text else 0
        assert estimate_tokens(text) == expected, repr(text)
    assert estimate_tokens("a b c d e f g h") == 8  # short words: the word count wins
    assert estimate_tokens("abcdefgh") == 2
