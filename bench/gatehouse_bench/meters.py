"""Readings taken before and after a block: CPU of the arm's server, of the simulator behind
it, of the PostgreSQL backends serving the bench database, of Redis and of the driver itself.

PostgreSQL is shared with whatever else runs on the machine (a test suite, another bench), so
only the backends connected to the bench database are counted, found by pid in
pg_stat_activity. Redis is one process for everyone: its figure is indicative only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gatehouse_bench import procinfo

QUIESCE_STEP_S = 0.1
QUIESCE_MAX_S = 3.0


@dataclass
class Reading:
    server: float
    upstream: float
    database: dict[int, float] = field(default_factory=dict)
    redis: float = 0.0
    driver: float = 0.0


@dataclass
class Usage:
    server_cpu_s: float
    upstream_cpu_s: float
    database_cpu_s: float
    redis_cpu_s: float
    driver_cpu_s: float


@dataclass
class Meters:
    upstream_pid: int | None
    database_pids: Callable[[], list[int]] = list
    database_connections: Callable[[], int | None] = lambda: None
    redis_pids: list[int] = field(default_factory=procinfo.redis_pids)

    def read(self, server_pid: int | None) -> Reading:
        return Reading(
            server=procinfo.tree_runtime_seconds(server_pid),
            upstream=procinfo.tree_runtime_seconds(self.upstream_pid),
            database=procinfo.runtime_by_pid(self.database_pids()),
            redis=procinfo.cpu_seconds(self.redis_pids),
            driver=procinfo.own_cpu_seconds(),
        )

    @staticmethod
    def used(before: Reading, after: Reading) -> Usage:
        # A backend that appeared during the block counts from zero: its whole life is in it.
        database = sum(cpu - before.database.get(pid, 0.0) for pid, cpu in after.database.items())
        return Usage(
            server_cpu_s=after.server - before.server,
            upstream_cpu_s=after.upstream - before.upstream,
            database_cpu_s=database,
            redis_cpu_s=after.redis - before.redis,
            driver_cpu_s=after.driver - before.driver,
        )

    @staticmethod
    async def quiesce(pid: int | None) -> None:
        """Wait until the server has stopped spending CPU: work a block started (usage written
        after the last frame went out, sockets closing) must land in that block's reading, not
        in the next arm's, which may be served by the same process."""
        if not pid:
            return
        deadline = time.monotonic() + QUIESCE_MAX_S
        last = procinfo.tree_cpu_seconds(pid)
        while time.monotonic() < deadline:
            await asyncio.sleep(QUIESCE_STEP_S)
            now = procinfo.tree_cpu_seconds(pid)
            if now == last:
                return
            last = now
