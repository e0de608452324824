"""The two suites the issues ask for, as cells of arms.

- chats: the simulator's OpenAI SSE stream (direct) vs Gatehouse's chat WebSocket and chat REST
  call, at zero upstream delay and at a fixed delay, 1 and 32 concurrent streams;
- gateway: the simulator (direct) vs Gatehouse's `/v1/chat/completions` vs the LiteLLM proxy,
  non-streamed and streamed, 1 and 32 concurrent clients, zero upstream delay.

The single-client streaming cells also run each gateway with longer answers (arms named
`<arm>-long`), for the marginal CPU cost of one more chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gatehouse_bench.arm import Arm, ArmMissing
from gatehouse_bench.chat_client import ChatRestArm, ChatWebSocketArm
from gatehouse_bench.openai_client import OpenAIArm
from gatehouse_bench.plan import CHUNKS, DELAYED, LONG_CHUNKS, ZERO, Plan
from gatehouse_bench.runner import Cell
from gatehouse_bench.servers import SIMULATOR_KEY
from gatehouse_bench.stats import Sample

GATEHOUSE_MODEL = "openai/sim-gpt"  # provider/model: the bench credential's provider is "openai"
PEER_MODEL = "sim-gpt"
PEER_KEY = "sk-bench"  # LiteLLM runs without a master key: any bearer is accepted


@dataclass
class Endpoint:
    """A server the arms talk to, or why there is none."""

    url: str | None = None
    pid: int | None = None
    unavailable: str | None = None
    token: str | None = None


class UnavailableArm:
    """Stands in for an arm whose server could not be set up: its probe says why."""

    server_pid = None
    measures_database = False
    chunks = CHUNKS

    def __init__(self, name: str, label: str, reason: str, *, streamed: bool) -> None:
        self.name, self.label, self.reason, self.streamed = name, label, reason, streamed

    async def probe(self) -> None:
        raise ArmMissing(self.reason)

    async def prepare(self, count: int) -> list[Any]:
        return []

    async def request(self, item: Any, content: str) -> Sample:
        return Sample(ok=False, total=0.0, error=self.reason)

    async def release(self, items: list[Any]) -> None:
        return None

    async def close(self) -> None:
        return None


def _or_unavailable(endpoint: Endpoint, name: str, streamed: bool, build: Callable[[], Arm]) -> Arm:
    if endpoint.unavailable or not endpoint.url:
        reason = endpoint.unavailable or "not started"
        return UnavailableArm(name, name, reason, streamed=streamed)
    return build()


def _direct(sim: Endpoint, *, stream: bool, concurrency: int, plan: Plan) -> Arm:
    return OpenAIArm(
        name="direct",
        label="simulator, OpenAI " + ("SSE" if stream else "JSON"),
        url=f"{sim.url}/openai/v1/chat/completions",
        model="sim-gpt",
        api_key=SIMULATOR_KEY,
        stream=stream,
        server_pid=sim.pid,
        concurrency=concurrency,
        timeout_s=plan.request_timeout_s,
    )


def _chat_arms(gh: Endpoint, *, concurrency: int, plan: Plan, long: int | None) -> list[Arm]:
    common: dict[str, Any] = {
        "base_url": gh.url,
        "token": gh.token,
        "server_pid": gh.pid,
        "concurrency": concurrency,
        "timeout_s": plan.request_timeout_s,
    }
    arms = [
        _or_unavailable(
            gh,
            "ws",
            True,
            lambda: ChatWebSocketArm(name="ws", label="Gatehouse WebSocket", **common),
        ),
        _or_unavailable(
            gh,
            "rest",
            False,
            lambda: ChatRestArm(name="rest", label="Gatehouse REST (whole answer)", **common),
        ),
    ]
    if long:
        label = f"Gatehouse WebSocket, {long}-word answers"
        arms.append(
            _or_unavailable(
                gh,
                "ws-long",
                True,
                lambda: ChatWebSocketArm(name="ws-long", label=label, chunks=long, **common),
            )
        )
    return arms


def chats_cells(sim: Endpoint, gh: Endpoint, plan: Plan) -> list[Cell]:
    shared: dict[str, tuple[str, str]] = {}  # probe outcomes, kept across the suite's cells
    cells = []
    for mode in (ZERO, DELAYED):
        for concurrency in plan.concurrency:
            long = plan.long_chunks(mode) if concurrency == 1 else None
            arms = [
                _direct(sim, stream=True, concurrency=concurrency, plan=plan),
                *_chat_arms(gh, concurrency=concurrency, plan=plan, long=long),
            ]
            cells.append(Cell("chats", "chat", mode, concurrency, arms, probes=shared))
    return cells


def _gateway_arm(
    endpoint: Endpoint, name: str, *, stream: bool, concurrency: int, plan: Plan, chunks: int
) -> Arm:
    gatehouse = name.startswith("gatehouse")
    label = "Gatehouse /v1/chat/completions" if gatehouse else "LiteLLM proxy 1.110.2"
    if chunks != CHUNKS:
        label += f", {chunks}-word answers"
    return _or_unavailable(
        endpoint,
        name,
        stream,
        lambda: OpenAIArm(
            name=name,
            label=label,
            url=f"{endpoint.url}/v1/chat/completions",
            model=GATEHOUSE_MODEL if gatehouse else PEER_MODEL,
            api_key=(endpoint.token or "") if gatehouse else PEER_KEY,
            server_pid=endpoint.pid,
            stream=stream,
            concurrency=concurrency,
            timeout_s=plan.request_timeout_s,
            chunks=chunks,
            measures_database=gatehouse,
        ),
    )


def gateway_cells(sim: Endpoint, gh: Endpoint, peer: Endpoint, plan: Plan) -> list[Cell]:
    shared: dict[str, tuple[str, str]] = {}
    cells = []
    for stream in (False, True):
        scenario = "stream" if stream else "non-stream"
        for concurrency in plan.concurrency:
            variants = [("", CHUNKS)]
            if stream and concurrency == 1:
                variants.append(("-long", LONG_CHUNKS))
            arms = [_direct(sim, stream=stream, concurrency=concurrency, plan=plan)]
            for suffix, chunks in variants:
                for name, endpoint in (("gatehouse", gh), ("litellm", peer)):
                    arms.append(
                        _gateway_arm(
                            endpoint,
                            name + suffix,
                            stream=stream,
                            concurrency=concurrency,
                            plan=plan,
                            chunks=chunks,
                        )
                    )
            cells.append(
                Cell("gateway", scenario, ZERO, concurrency, arms, peer="litellm", probes=shared)
            )
    return cells
