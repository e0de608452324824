"""Cells and blocks: the arms of one cell run in alternating blocks (ABCABC...), so slow drift
of the machine (another process waking up, caches warming, the database growing) lands on
every arm alike instead of on whichever ran last."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from gatehouse_bench import procinfo
from gatehouse_bench.arm import Arm, ArmMissing, ArmUnavailable
from gatehouse_bench.compare import compare_cell
from gatehouse_bench.meters import Meters, Usage
from gatehouse_bench.plan import CHUNKS, Mode, Plan
from gatehouse_bench.stats import ArmTotals, Sample

_question = itertools.count(1)
PROBE_ATTEMPTS = 3
PROBE_RETRY_PAUSE_S = 2.0


def _content(mode: Mode, arm: Arm) -> str:
    # A different question each time: the simulator's words are seeded by the text, and a
    # cache anywhere on the path must not see the same request twice.
    directives = mode.directives(getattr(arm, "chunks", CHUNKS))
    return f"Benchmark question {next(_question)}: tell me something. {directives}"


@dataclass
class Cell:
    suite: str  # "chats" or "gateway"
    scenario: str  # "stream" or "non-stream" (gateway), "chat" (chats)
    mode: Mode
    concurrency: int
    arms: list[Arm]
    reference: str = "direct"
    peer: str | None = None  # the arm ratios are taken against, besides the reference
    # Probe outcomes by arm, shared by the cells of a suite: (why missing, why failing); "" if not.
    probes: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def title(self) -> str:
        unit = "client" if self.suite == "gateway" else "stream"
        plural = "" if self.concurrency == 1 else "s"
        return f"{self.scenario}, {self.mode.name}, {self.concurrency} {unit}{plural}"


@dataclass
class Block:
    samples: list[Sample]
    wall_s: float
    usage: Usage
    rss_mib: float
    db_connections: int | None


async def _drive(
    arm: Arm, items: list[Any], mode: Mode, concurrency: int, stop_at: float
) -> list[Sample]:
    """`concurrency` clients, each sending its next request as soon as its last one ended."""
    samples: list[Sample] = []
    pending = iter(items)

    async def client() -> None:
        for item in pending:
            if time.monotonic() > stop_at:
                return
            samples.append(await arm.request(item, _content(mode, arm)))

    await asyncio.gather(*(client() for _ in range(min(concurrency, len(items)))))
    return samples


async def run_block(
    arm: Arm, count: int, mode: Mode, concurrency: int, *, meters: Meters, seconds: float
) -> Block:
    pid = arm.server_pid
    items = await arm.prepare(count)
    try:
        await Meters.quiesce(pid)
        before = meters.read(pid)
        started = time.perf_counter()
        samples = await _drive(arm, items, mode, concurrency, time.monotonic() + seconds)
        wall = time.perf_counter() - started
        await Meters.quiesce(pid)
        after = meters.read(pid)
        connections = meters.database_connections() if arm.measures_database else None
        return Block(
            samples=samples,
            wall_s=wall,
            usage=Meters.used(before, after),
            rss_mib=procinfo.tree_rss_mib(pid),
            db_connections=connections,
        )
    finally:
        await arm.release(items)
        await Meters.quiesce(pid)


async def _ready(cell: Cell, arm: Arm, plan: Plan, meters: Meters) -> bool:
    """Probe once per arm and suite, then warm up at the cell's concurrency (not measured)."""
    key = _key(cell, arm)
    if key not in cell.probes:
        cell.probes[key] = await _probe(arm)
    if cell.probes[key][0]:
        return False
    warmup = plan.warmup(cell.concurrency, cell.mode)
    await run_block(
        arm, warmup, cell.mode, cell.concurrency, meters=meters, seconds=plan.block_seconds
    )
    return True


async def _probe(arm: Arm) -> tuple[str, str]:
    """(why the arm is missing, why its probe failed). A missing endpoint makes the arm
    unavailable. A failing one is asked again, and if it still fails the arm runs anyway: its
    errors are a finding, and one overloaded moment must not hide an arm from the suite."""
    failing = ""
    for attempt in range(PROBE_ATTEMPTS):
        if attempt:
            await asyncio.sleep(PROBE_RETRY_PAUSE_S)
        try:
            await arm.probe()
        except ArmMissing as exc:
            return str(exc), ""
        except ArmUnavailable as exc:
            failing = str(exc)
        except Exception as exc:  # the probe's own failure is reported, not raised
            failing = f"{type(exc).__name__}: {exc}"
        else:
            return "", ""
    return "", failing


def _key(cell: Cell, arm: Arm) -> str:
    return f"{cell.suite}:{arm.name}:{cell.scenario}"


async def run_cell(cell: Cell, plan: Plan, *, meters: Meters, deadline: float) -> dict[str, Any]:
    result: dict[str, Any] = {
        "suite": cell.suite,
        "title": cell.title,
        "scenario": cell.scenario,
        "mode": cell.mode.name,
        "concurrency": cell.concurrency,
        "arms": {},
    }
    if time.monotonic() > deadline:
        for arm in cell.arms:
            result["arms"][arm.name] = {"status": "skipped", "reason": "run time budget spent"}
        return result
    ready = []
    for arm in cell.arms:
        if await _ready(cell, arm, plan, meters):
            ready.append(arm)
        else:
            result["arms"][arm.name] = {
                "status": "unavailable",
                "reason": cell.probes[_key(cell, arm)][0],
            }
    totals = {arm.name: ArmTotals() for arm in ready}
    count = plan.requests(cell.concurrency, cell.mode)
    for _ in range(plan.blocks):
        if time.monotonic() > deadline:
            break
        for arm in ready:
            block = await run_block(
                arm, count, cell.mode, cell.concurrency, meters=meters, seconds=plan.block_seconds
            )
            totals[arm.name].add(block)
    for arm in ready:
        summary = totals[arm.name].summary(streamed=arm.streamed)
        summary["label"] = arm.label
        if cell.probes[_key(cell, arm)][1]:
            summary["probe_failed"] = cell.probes[_key(cell, arm)][1]
        result["arms"][arm.name] = summary
    result["comparison"] = compare_cell(result["arms"], cell.reference, cell.peer)
    return result
