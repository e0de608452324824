"""The retry and fallback layer, against the upstream simulator through the real adapters."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from providers import breaker
from providers.adapters.base import Endpoint, ErrorCode, ProviderError, StreamEnd, Timeouts
from providers.calls import (
    CIRCUIT_OPEN,
    CallFailed,
    CallParams,
    Candidate,
    RetryPolicy,
    complete,
    open_stream,
    timeouts_from_settings,
)
from providers.simulator.server import SimulatorServer

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, retry_after_cap=2.0)
PARAMS = CallParams()
BASE_PATHS = {"openai": "/openai/v1", "anthropic": "/anthropic", "ollama": "/ollama"}
CHAT_PATHS = {
    "openai": "/openai/v1/chat/completions",
    "anthropic": "/anthropic/v1/messages",
    "ollama": "/ollama/api/chat",
}
MODELS = {"openai": "sim-gpt", "anthropic": "sim-claude", "ollama": "sim-llama"}


@pytest.fixture(scope="module")
def simulator():
    with SimulatorServer() as sim:
        yield sim


@pytest.fixture(autouse=True)
def _fresh(simulator, settings):
    settings.GATEHOUSE_PROVIDER_ALLOWED_HOSTS = []
    settings.GATEHOUSE_BREAKER_THRESHOLD = 100  # out of the way, except where a test lowers it
    settings.GATEHOUSE_BREAKER_COOLDOWN = 30.0
    httpx.post(f"{simulator.url}/_sim/reset").raise_for_status()


def make(
    sim: SimulatorServer,
    kind: str = "openai",
    *,
    name: str | None = None,
    model: str | None = None,
    key: str = "sim-test-key",
    base_url: str | None = None,
) -> Candidate:
    model = model or MODELS[kind]
    return Candidate(
        provider=name or kind,
        model=model,
        endpoint=Endpoint(
            kind=kind, base_url=base_url or sim.url + BASE_PATHS[kind], api_key=key, label=kind
        ),
        credential_id=None,
        # unique per test: the breaker state lives in the (shared) cache
        breaker_key=f"test:{uuid.uuid4().hex[:8]}:{kind}:{model}",
    )


def say(*directives: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": " ".join(["hello there", *directives])}]


def fault_key() -> str:
    return f"sim:fault_key={uuid.uuid4().hex[:12]}"


def stats(sim: SimulatorServer) -> dict:
    return httpx.get(f"{sim.url}/_sim/stats").json()


async def drain(stream) -> tuple[str, StreamEnd]:
    text, end = [], None
    async for event in stream:
        if isinstance(event, StreamEnd):
            end = event
        else:
            text.append(event)
    assert end is not None
    return "".join(text), end


# --- Retries -----------------------------------------------------------------------------------


async def test_stream_retries_until_fail_times_passes(simulator):
    c = make(simulator)
    messages = say("sim:fault=503", "sim:fail_times=2", fault_key())
    stream = await open_stream([c], messages, params=PARAMS, policy=FAST)
    text, end = await drain(stream)
    assert stream.candidate == c
    assert stream.attempts == [(c, ErrorCode.UPSTREAM_UNAVAILABLE)] * 2
    assert len(text.split()) == 12
    assert end.finish_reason == "stop"
    assert stats(simulator)["requests"] == 3


@pytest.mark.parametrize("kind", ["openai", "anthropic", "ollama"])
async def test_complete_retries_until_fail_times_passes(simulator, kind):
    c = make(simulator, kind)
    messages = say("sim:fault=500", "sim:fail_times=2", fault_key())
    completion, who = await complete([c], messages, params=PARAMS, policy=FAST)
    assert who == c
    assert len(completion.text.split()) == 12
    assert stats(simulator)["by_path"] == {CHAT_PATHS[kind]: 3}


async def test_attempts_are_per_candidate_and_exhaust(simulator):
    c = make(simulator)
    policy = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01)
    with pytest.raises(CallFailed) as info:
        await open_stream([c], say("sim:fault=503"), params=PARAMS, policy=policy)
    err = info.value
    assert isinstance(err, ProviderError)
    assert err.code == ErrorCode.UPSTREAM_UNAVAILABLE
    assert err.retryable
    assert err.attempts == [(c, ErrorCode.UPSTREAM_UNAVAILABLE)] * 2
    assert stats(simulator)["requests"] == 2


async def test_backoff_is_bounded(simulator):
    # Full jitter: each wait is uniform in [0, min(max_delay, base * 2**n)]. Three waits here
    # are at most 0.2 + 0.3 + 0.3 = 0.8 s; on top of that only a few local round trips.
    policy = RetryPolicy(attempts=4, base_delay=0.2, max_delay=0.3)
    started = time.monotonic()
    with pytest.raises(CallFailed):
        await complete([make(simulator)], say("sim:fault=503"), params=PARAMS, policy=policy)
    elapsed = time.monotonic() - started
    assert elapsed < 0.8 + 0.7
    assert stats(simulator)["requests"] == 4


def test_backoff_is_full_jitter_exponential_and_capped():
    policy = RetryPolicy(base_delay=0.25, max_delay=4.0)
    for retry, ceiling in [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (5, 4.0), (9, 4.0)]:
        samples = [policy.backoff(retry) for _ in range(2000)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.9  # reaches up to its ceiling...
        assert min(samples) < ceiling * 0.1  # ...and down to zero: full jitter
        assert abs(sum(samples) / len(samples) - ceiling / 2) < ceiling * 0.1


def test_policy_from_settings(settings):
    settings.GATEHOUSE_RETRY_ATTEMPTS = 5
    settings.GATEHOUSE_RETRY_BASE_DELAY = 0.5
    settings.GATEHOUSE_RETRY_MAX_DELAY = 8.0
    settings.GATEHOUSE_RETRY_AFTER_CAP = 20.0
    assert RetryPolicy.from_settings() == RetryPolicy(5, 0.5, 8.0, 20.0)
    settings.GATEHOUSE_RETRY_ATTEMPTS = 0
    assert RetryPolicy.from_settings().attempts == 1  # at least the call itself


async def test_retry_after_is_honoured(simulator):
    c = make(simulator)
    messages = say("sim:fault=429", "sim:retry_after=0.4", "sim:fail_times=2", fault_key())
    started = time.monotonic()
    stream = await open_stream([c], messages, params=PARAMS, policy=FAST)
    elapsed = time.monotonic() - started
    await drain(stream)
    assert stream.attempts == [(c, ErrorCode.RATE_LIMITED)] * 2
    assert 0.8 <= elapsed < 0.8 + 0.7  # two waits of exactly 0.4 s, not FAST's 0.02 s backoff


async def test_retry_after_above_the_cap_fails_fast(simulator):
    c = make(simulator)
    messages = say("sim:fault=429", "sim:retry_after=120")
    started = time.monotonic()
    with pytest.raises(CallFailed) as info:
        await open_stream([c], messages, params=PARAMS, policy=FAST)
    assert time.monotonic() - started < 1.0
    err = info.value
    assert err.code == ErrorCode.RATE_LIMITED
    assert err.message == "The provider asked us to wait 120 s, more than the 2 s allowed."
    assert err.retry_after == 120
    assert stats(simulator)["requests"] == 1


async def test_retry_after_above_the_cap_is_explained_even_without_retries_left(simulator):
    policy = RetryPolicy(attempts=1, retry_after_cap=10)
    with pytest.raises(CallFailed) as info:
        await complete(
            [make(simulator)],
            say("sim:fault=429", "sim:retry_after=120"),
            params=PARAMS,
            policy=policy,
        )
    assert info.value.message == "The provider asked us to wait 120 s, more than the 10 s allowed."


def test_timeouts_default_to_the_settings(settings):
    settings.GATEHOUSE_TIMEOUT_CONNECT = 1.5
    settings.GATEHOUSE_TIMEOUT_FIRST_TOKEN = 2.5
    settings.GATEHOUSE_TIMEOUT_CHUNK_GAP = 3.5
    settings.GATEHOUSE_TIMEOUT_TOTAL = 4.5
    assert timeouts_from_settings() == Timeouts(1.5, 2.5, 3.5, 4.5)


async def test_retry_after_above_the_cap_moves_to_the_next_candidate(simulator):
    first, second = make(simulator, name="first"), make(simulator, "anthropic", name="second")
    messages = say("sim:fault=429", "sim:retry_after=120", "sim:fail_times=1", fault_key())
    stream = await open_stream([first, second], messages, params=PARAMS, policy=FAST)
    await drain(stream)
    assert stream.candidate == second
    assert stream.attempts == [(first, ErrorCode.RATE_LIMITED)]


# --- Fallback ----------------------------------------------------------------------------------


async def test_transient_failures_fall_back_to_the_second_candidate(simulator):
    first, second = make(simulator, name="primary"), make(simulator, "anthropic", name="backup")
    policy = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01)
    messages = say("sim:fault=503", "sim:fail_times=2", fault_key())
    stream = await open_stream([first, second], messages, params=PARAMS, policy=policy)
    text, _ = await drain(stream)
    assert stream.candidate == second
    assert stream.candidate.provider == "backup"
    assert stream.attempts == [(first, ErrorCode.UPSTREAM_UNAVAILABLE)] * 2
    assert text
    assert stats(simulator)["by_path"] == {
        CHAT_PATHS["openai"]: 2,
        CHAT_PATHS["anthropic"]: 1,
    }


@pytest.mark.parametrize(
    ("broken", "code"),
    [
        ({"key": "wrong-key"}, ErrorCode.AUTH_FAILED),
        ({"model": "no-such-model"}, ErrorCode.MODEL_NOT_FOUND),
        ({"base_url": "http://169.254.169.254/v1"}, ErrorCode.URL_REFUSED),
        ({"base_url": "http://0xa9fea9fe/v1"}, ErrorCode.URL_REFUSED),
    ],
)
async def test_route_errors_fall_back_without_retrying(simulator, broken, code):
    first, second = make(simulator, **broken), make(simulator, "ollama")
    stream = await open_stream([first, second], say(), params=PARAMS, policy=FAST)
    await drain(stream)
    assert stream.candidate == second
    assert stream.attempts == [(first, code)]
    first_requests = 0 if code == ErrorCode.URL_REFUSED else 1  # refused before any request
    assert stats(simulator)["by_path"].get(CHAT_PATHS["openai"], 0) == first_requests


async def test_bad_request_stops_the_fallback(simulator):
    first, second = make(simulator), make(simulator, "anthropic")
    with pytest.raises(CallFailed) as info:
        # an invalid simulator directive is answered with a 400
        await open_stream([first, second], say("sim:chunks=many"), params=PARAMS, policy=FAST)
    assert info.value.code == ErrorCode.BAD_REQUEST
    assert info.value.attempts == [(first, ErrorCode.BAD_REQUEST)]
    assert stats(simulator)["requests"] == 1


async def test_complete_falls_back_too(simulator):
    first, second = make(simulator, key="wrong-key"), make(simulator, "anthropic")
    completion, who = await complete([first, second], say(), params=PARAMS, policy=FAST)
    assert who == second
    assert completion.text


async def test_all_failing_raises_the_most_informative_error(simulator):
    # The credential problem is what the operator can fix; the outage of the second only says
    # "later". Both are listed.
    first = make(simulator, key="wrong-key", name="mine")
    second = make(simulator, "anthropic", name="backup")
    policy = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01)
    with pytest.raises(CallFailed) as info:
        await open_stream([first, second], say("sim:fault=500"), params=PARAMS, policy=policy)
    err = info.value
    assert err.code == ErrorCode.AUTH_FAILED
    assert [e.code for e in err.errors] == [ErrorCode.AUTH_FAILED, ErrorCode.UPSTREAM_UNAVAILABLE]
    assert err.attempts == [
        (first, ErrorCode.AUTH_FAILED),
        (second, ErrorCode.UPSTREAM_UNAVAILABLE),
        (second, ErrorCode.UPSTREAM_UNAVAILABLE),
    ]


async def test_all_transient_raises_the_last_error(simulator):
    first, second = make(simulator), make(simulator, "anthropic")
    policy = RetryPolicy(attempts=1)
    with pytest.raises(CallFailed) as info:
        await complete([first, second], say("sim:fault=429"), params=PARAMS, policy=policy)
    assert info.value.code == ErrorCode.RATE_LIMITED
    assert info.value.cause is info.value.errors[-1]


async def test_no_candidates_is_a_programming_error():
    with pytest.raises(ValueError, match="at least one candidate"):
        await open_stream([], say(), params=PARAMS, policy=FAST)


# --- After the first event ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic", "ollama"])
async def test_no_retry_after_the_first_token(simulator, kind):
    c, backup = make(simulator, kind), make(simulator, "openai", name="backup")
    messages = say("sim:fault=reset", "sim:after=3")
    stream = await open_stream([c, backup], messages, params=PARAMS, policy=FAST)
    received = []
    with pytest.raises(ProviderError) as info:
        async for event in stream:
            received.append(event)
    assert info.value.code == ErrorCode.STREAM_INTERRUPTED
    assert len(received) == 3
    assert stream.candidate == c
    assert stats(simulator)["requests"] == 1  # neither a retry nor a fallback


async def test_first_event_is_replayed_and_params_are_passed(simulator):
    c = make(simulator)
    params = CallParams(temperature=0.2, max_tokens=5, stop=["never"], top_p=0.9)
    stream = await open_stream([c], say(), params=params, policy=FAST)
    text, end = await drain(stream)
    assert len(text.split()) == 5
    assert end.finish_reason == "length"
    assert end.usage.output_tokens == 5


async def test_aclose_ends_the_stream_early(simulator):
    c = make(simulator)
    async with await open_stream([c], say("sim:chunks=50"), params=PARAMS, policy=FAST) as stream:
        first = await anext(stream)
        assert isinstance(first, str)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    await stream.aclose()  # idempotent


async def test_first_token_timeout_is_retried(simulator):
    c = make(simulator)
    # A stream that stalls before its first chunk, once.
    messages = say("sim:fault=stall", "sim:after=0", "sim:fail_times=1", fault_key())
    timeouts = Timeouts(connect=2.0, first_token=0.3, chunk_gap=2.0, total=10.0)
    started = time.monotonic()
    stream = await open_stream([c], messages, params=PARAMS, policy=FAST, timeouts=timeouts)
    await drain(stream)
    assert stream.attempts == [(c, ErrorCode.TIMEOUT)]
    assert 0.3 <= time.monotonic() - started < 1.5


# --- Circuit breaker ---------------------------------------------------------------------------


async def test_breaker_opens_skips_the_candidate_then_recovers(simulator, settings):
    settings.GATEHOUSE_BREAKER_THRESHOLD = 2
    settings.GATEHOUSE_BREAKER_COOLDOWN = 0.5
    flaky, backup = make(simulator, name="flaky"), make(simulator, "anthropic", name="backup")
    policy = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01)
    key = fault_key()

    # 1. Two consecutive failures open flaky's route; backup answers.
    messages = say("sim:fault=503", "sim:fail_times=2", key)
    stream = await open_stream([flaky, backup], messages, params=PARAMS, policy=policy)
    await drain(stream)
    assert stream.candidate == backup
    assert await breaker.is_open(flaky.breaker_key)

    # 2. While open, flaky is skipped without a request (it would succeed now).
    httpx.post(f"{simulator.url}/_sim/reset")
    stream = await open_stream([flaky, backup], say(), params=PARAMS, policy=policy)
    await drain(stream)
    assert stream.candidate == backup
    assert stream.attempts == [(flaky, CIRCUIT_OPEN)]
    assert stats(simulator)["by_path"] == {CHAT_PATHS["anthropic"]: 1}

    # 3. After the cooldown one probe goes to flaky, succeeds and closes the route.
    await asyncio.sleep(0.6)
    stream = await open_stream([flaky, backup], say(), params=PARAMS, policy=policy)
    await drain(stream)
    assert stream.candidate == flaky
    assert stream.attempts == []
    assert not await breaker.is_open(flaky.breaker_key)
    assert await breaker.allow(flaky.breaker_key)


async def test_every_route_open_is_reported_as_paused(simulator, settings):
    settings.GATEHOUSE_BREAKER_THRESHOLD = 1
    c = make(simulator)
    policy = RetryPolicy(attempts=1)
    with pytest.raises(CallFailed):
        await complete([c], say("sim:fault=503"), params=PARAMS, policy=policy)
    with pytest.raises(CallFailed) as info:
        await complete([c], say(), params=PARAMS, policy=policy)
    assert info.value.code == ErrorCode.UPSTREAM_UNAVAILABLE
    assert "paused" in info.value.message
    assert info.value.attempts == [(c, CIRCUIT_OPEN)]
    assert stats(simulator)["requests"] == 1


async def test_breaker_opening_mid_retries_stops_the_retries(simulator, settings):
    settings.GATEHOUSE_BREAKER_THRESHOLD = 2
    first, second = make(simulator), make(simulator, "anthropic")
    policy = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.01)
    messages = say("sim:fault=503", "sim:fail_times=2", fault_key())
    stream = await open_stream([first, second], messages, params=PARAMS, policy=policy)
    await drain(stream)
    assert stream.candidate == second
    assert stream.attempts == [(first, ErrorCode.UPSTREAM_UNAVAILABLE)] * 2


async def test_route_errors_do_not_count_against_the_breaker(simulator, settings):
    settings.GATEHOUSE_BREAKER_THRESHOLD = 1
    c = make(simulator, key="wrong-key")
    for _ in range(3):
        with pytest.raises(CallFailed) as info:
            await complete([c], say(), params=PARAMS, policy=FAST)
        assert info.value.code == ErrorCode.AUTH_FAILED
    assert not await breaker.is_open(c.breaker_key)
