"""What the runner needs from an arm: one way of asking for one answer."""

from __future__ import annotations

from typing import Any, Protocol

from gatehouse_bench.stats import Sample


class ArmUnavailable(Exception):
    """The arm cannot run in this tree or on this machine; the message says why."""


class ArmMissing(ArmUnavailable):
    """The endpoint or its server is not there at all (404, never started): unlike a failing
    endpoint, asking again will not help."""


class Arm(Protocol):
    name: str
    label: str
    streamed: bool
    server_pid: int | None  # the process whose CPU and memory this arm is charged
    measures_database: bool  # Gatehouse arms: count the bench database's connections
    chunks: int  # words per answer asked of the simulator

    async def probe(self) -> None:
        """One real request; raises ArmUnavailable when the endpoint is missing or broken."""

    async def prepare(self, count: int) -> list[Any]:
        """Per-request state made before the block's clock and CPU reading start (chats,
        open sockets): creating them is not what the block measures."""

    async def request(self, item: Any, content: str) -> Sample: ...

    async def release(self, items: list[Any]) -> None: ...

    async def close(self) -> None: ...
