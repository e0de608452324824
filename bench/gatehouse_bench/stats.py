"""Percentiles and the per-arm summary of a set of samples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gatehouse_bench.runner import Block


@dataclass
class Sample:
    """One request as the client saw it. Times are seconds from sending the request."""

    ok: bool
    total: float
    ttft: float | None = None
    chunks: int = 0  # content chunks carried (one simulator word each), streamed or not
    frames: int = 0  # content frames the client received (1 for a non-streamed answer)
    error: str | None = None


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on pre-sorted values."""
    if not sorted_values:
        return math.nan
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def distribution_ms(values: Sequence[float]) -> dict[str, float] | None:
    """p50/p95/p99/mean/max in milliseconds, or None when there is nothing to summarise."""
    if not values:
        return None
    ordered = sorted(values)
    return {
        "p50": round(percentile(ordered, 0.50) * 1000, 3),
        "p95": round(percentile(ordered, 0.95) * 1000, 3),
        "p99": round(percentile(ordered, 0.99) * 1000, 3),
        "mean": round(sum(ordered) / len(ordered) * 1000, 3),
        "max": round(ordered[-1] * 1000, 3),
    }


def _per(cpu_s: float, count: int) -> float | None:
    return round(cpu_s / count * 1e6, 1) if count else None


@dataclass
class ArmTotals:
    """Everything measured for one arm in one cell, summed over its blocks."""

    samples: list[Sample] = field(default_factory=list)
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    upstream_cpu_s: float = 0.0
    database_cpu_s: float = 0.0
    redis_cpu_s: float = 0.0
    driver_cpu_s: float = 0.0
    rss_mib: float = 0.0
    db_connections: int | None = None
    blocks: int = 0
    # Server CPU per successful request of each block, in order: how far blocks disagree.
    block_cpu_us_per_request: list[float | None] = field(default_factory=list)

    def add(self, block: Block) -> None:
        self.samples.extend(block.samples)
        self.wall_s += block.wall_s
        self.server_cpu_s += block.usage.server_cpu_s
        self.upstream_cpu_s += block.usage.upstream_cpu_s
        self.database_cpu_s += block.usage.database_cpu_s
        self.redis_cpu_s += block.usage.redis_cpu_s
        self.driver_cpu_s += block.usage.driver_cpu_s
        self.rss_mib = max(self.rss_mib, block.rss_mib)
        if block.db_connections is not None:
            self.db_connections = max(self.db_connections or 0, block.db_connections)
        self.blocks += 1
        ok = sum(1 for s in block.samples if s.ok)
        self.block_cpu_us_per_request.append(_per(block.usage.server_cpu_s, ok))

    def summary(self, *, streamed: bool) -> dict[str, Any]:
        ok = [s for s in self.samples if s.ok]
        failed = [s for s in self.samples if not s.ok]
        chunks = sum(s.chunks for s in ok)
        frames = sum(s.frames for s in ok)
        return {
            "status": "ok" if ok else "failed",
            "requests": len(self.samples),
            "ok": len(ok),
            "errors": len(failed),
            "error_examples": sorted({s.error or "?" for s in failed})[:5],
            "blocks": self.blocks,
            "total_ms": distribution_ms([s.total for s in ok]),
            "ttft_ms": distribution_ms([s.ttft for s in ok if s.ttft is not None])
            if streamed
            else None,
            "throughput_rps": round(len(ok) / self.wall_s, 2) if self.wall_s else None,
            "chunks_per_request": round(chunks / len(ok), 2) if ok else None,
            "frames_per_request": round(frames / len(ok), 2) if ok else None,
            "server_cpu_ms": round(self.server_cpu_s * 1000, 1),
            "server_cpu_us_per_request": _per(self.server_cpu_s, len(ok)),
            "server_cpu_us_per_chunk": _per(self.server_cpu_s, chunks),
            "server_cpu_us_per_request_by_block": self.block_cpu_us_per_request,
            "server_cpu_pct": round(self.server_cpu_s / self.wall_s * 100, 1)
            if self.wall_s
            else None,
            "upstream_cpu_us_per_request": _per(self.upstream_cpu_s, len(ok)),
            "postgres_cpu_us_per_request": _per(self.database_cpu_s, len(ok)),
            "redis_cpu_us_per_request": _per(self.redis_cpu_s, len(ok)),
            "driver_cpu_pct": round(self.driver_cpu_s / self.wall_s * 100, 1)
            if self.wall_s
            else None,
            "server_rss_mib": round(self.rss_mib, 1),
            "postgres_connections": self.db_connections,
        }
