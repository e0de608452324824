"""How much load each cell gets. Every number here bounds a loop, in count or in time."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CHUNKS = 50  # words per answer: the "streaming (50 chunks)"
# A second answer length for some arms: CPU(long) - CPU(50) over the extra chunks is the cost
# of one more chunk, without the per-request work (auth, routing, database) spread over it.
# Shorter in the delayed mode, where every chunk costs 5 ms of wall time.
LONG_CHUNKS = 200
LONG_CHUNKS_DELAYED = 100
CONCURRENCY = (1, 32)

# The fixed-delay mode: what a fast real provider looks like from a nearby region.
DELAYED_FIRST_TOKEN_S = 0.020
DELAYED_CHUNK_GAP_S = 0.005


@dataclass(frozen=True)
class Mode:
    """Upstream timing, applied through simulator directives so one simulator serves both."""

    name: str
    first_token_delay: float = 0.0
    delay: float = 0.0

    def directives(self, chunks: int = CHUNKS) -> str:
        parts = [f"sim:chunks={chunks}"]
        if self.first_token_delay:
            parts.append(f"sim:first_token_delay={self.first_token_delay}")
        if self.delay:
            parts.append(f"sim:delay={self.delay}")
        return " ".join(parts)


ZERO = Mode("zero-delay")
DELAYED = Mode(
    f"delay {DELAYED_FIRST_TOKEN_S * 1000:g}ms+{DELAYED_CHUNK_GAP_S * 1000:g}ms/chunk",
    DELAYED_FIRST_TOKEN_S,
    DELAYED_CHUNK_GAP_S,
)


@dataclass(frozen=True)
class Plan:
    blocks: int = 3  # per arm and cell, alternated ABCABC...
    # Requests per block: at concurrency 1, and per concurrent client above it.
    requests_c1: int = 30
    requests_per_client: int = 2
    delayed_requests_c1: int = 12
    delayed_requests_per_client: int = 1
    warmup_c1: int = 5
    block_seconds: float = 60.0  # a block stops taking new requests after this
    request_timeout_s: float = 30.0
    run_budget_s: float = 540.0  # cells not started by then are reported as skipped
    concurrency: tuple[int, ...] = CONCURRENCY
    extra: dict[str, Any] = field(default_factory=dict)

    def requests(self, concurrency: int, mode: Mode) -> int:
        delayed = mode is not ZERO
        if concurrency == 1:
            return self.delayed_requests_c1 if delayed else self.requests_c1
        per_client = self.delayed_requests_per_client if delayed else self.requests_per_client
        return per_client * concurrency

    def long_chunks(self, mode: Mode) -> int:
        return LONG_CHUNKS if mode is ZERO else LONG_CHUNKS_DELAYED

    def warmup(self, concurrency: int, mode: Mode) -> int:
        """A whole block. With 5 requests at one stream, the first measured block of a fresh
        server still paid start-up work (statements not yet prepared on new connections, pools
        still opening): the first cell's CPU per request read 40% above the same cell's in
        another run of the same code (2026-12-07)."""
        return max(self.warmup_c1, self.requests(concurrency, mode))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT = Plan()
QUICK = Plan(
    blocks=2,
    requests_c1=10,
    requests_per_client=1,
    delayed_requests_c1=5,
    delayed_requests_per_client=1,
    warmup_c1=3,
    block_seconds=20.0,
    run_budget_s=240.0,
)
