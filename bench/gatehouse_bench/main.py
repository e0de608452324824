"""`make bench`: set up, start the servers, run both suites, write and print the results.

A server that cannot be set up (Gatehouse's endpoints still being built, the LiteLLM install
failing) turns its arms "unavailable" with the reason; it never fails the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from gatehouse_bench import peer, procinfo, report, speed
from gatehouse_bench.gatehouse_setup import DatabaseWatch, migrate, prepare_environment, seed
from gatehouse_bench.meters import Meters
from gatehouse_bench.plan import CHUNKS, DEFAULT, QUICK, Plan
from gatehouse_bench.runner import Cell, run_cell
from gatehouse_bench.servers import (
    ROOT,
    SIMULATOR_KEY,
    RunLogs,
    ServerProcess,
    start_gatehouse,
    start_simulator,
)
from gatehouse_bench.suites import Endpoint, chats_cells, gateway_cells


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short run (a smoke test, ~2 min)")
    parser.add_argument("--no-peer", action="store_true", help="skip the LiteLLM arm")
    parser.add_argument(
        "--suite", choices=("all", "chats", "gateway"), default="all", help="which suite to run"
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for Gatehouse (repeatable), e.g. DATABASE_CONN_MAX_AGE=0",
    )
    parser.add_argument(
        "--member-limit",
        action="store_true",
        help="give the bench member a hard spending limit too (an organisation budget and a "
        "member budget: every call reserves on and charges two limits)",
    )
    return parser.parse_args(argv)


def _git_revision() -> str:
    # Read-only: the lead commits, the bench only records what it measured.
    completed = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.stdout.strip() or "unknown"


class Servers:
    """Starts what it can; remembers why the rest is missing; stops all it started."""

    def __init__(self) -> None:
        self.started: list[ServerProcess] = []
        self.notes: list[str] = []
        self.sim = Endpoint()
        self.gatehouse = Endpoint()
        self.peer = Endpoint()
        self.gatehouse_desc = "not started"
        self.database = "none"
        self.run_id = ""

    def _keep(self, server: ServerProcess) -> ServerProcess:
        self.started.append(server)
        return server

    def start_simulator(self) -> None:
        sim = self._keep(start_simulator())
        self.sim = Endpoint(url=sim.url, pid=sim.pid)

    def start_gatehouse(self, run_id: str, extra_env: list[str], member_limit: bool) -> None:
        self.run_id = run_id
        try:
            setup = prepare_environment(run_id)
            for pair in extra_env:
                name, _, value = pair.partition("=")
                setup.env[name] = value
                self.notes.append(f"Gatehouse ran with {name}={value} (--server-env).")
            self.notes += setup.notes
            self.database = setup.database
            migrate(setup)
            seeded = seed(
                setup, simulator_url=self.sim.url or "", run_id=run_id, member_limit=member_limit
            )
            if member_limit:
                self.notes.append("The bench member had a hard member limit too (--member-limit).")
            server = self._keep(start_gatehouse(setup.env))
        except Exception as exc:  # a tree mid-change makes the arms unavailable, not the run
            detail = " ".join(str(exc).split())[-600:]  # one line: it lands in table cells
            reason = f"Gatehouse set-up failed: {type(exc).__name__}: {detail}"
            self.gatehouse = Endpoint(unavailable=reason)
            self.notes.append(reason)
            return
        self.gatehouse = Endpoint(url=server.url, pid=server.pid, token=seeded["token"])
        redis = "Redis" if setup.redis else "no Redis"
        self.gatehouse_desc = (
            f"daphne, 1 process, DEBUG=false, {setup.database}, {redis}, "
            f"org {seeded['organization']}"
        )

    def start_peer(self, wanted: bool) -> None:
        reason = None if wanted else "skipped (--no-peer)"
        reason = reason or peer.ensure_installed()
        if reason is None:
            try:
                server = self._keep(
                    peer.start_litellm(simulator_url=self.sim.url or "", api_key=SIMULATOR_KEY)
                )
            except (RuntimeError, OSError) as exc:
                reason = "LiteLLM did not start: " + " ".join(str(exc).split())[-400:]
            else:
                self.peer = Endpoint(url=server.url, pid=server.pid)
                return
        self.peer = Endpoint(unavailable=reason)
        self.notes.append(f"LiteLLM arm skipped: {reason}")

    def cpu_seconds(self) -> float:
        return sum(procinfo.tree_cpu_seconds(server.pid) for server in self.started)

    def stop(self) -> None:
        for server in reversed(self.started):
            server.stop()


class MachineLoad:
    """How busy the machine was while the bench measured, and how much of that was not the
    bench: other test runs on a shared 2-core machine move every figure."""

    def __init__(self, servers: Servers) -> None:
        self.servers = servers
        self.busy0 = procinfo.machine_busy_seconds()
        self.ours0 = servers.cpu_seconds() + procinfo.own_cpu_seconds()
        self.wall0 = time.monotonic()

    def summary(self) -> dict[str, Any]:
        wall = time.monotonic() - self.wall0
        capacity = wall * (os.cpu_count() or 1)
        busy = procinfo.machine_busy_seconds() - self.busy0
        ours = self.servers.cpu_seconds() + procinfo.own_cpu_seconds() - self.ours0
        return {
            "busy_pct": round(busy / capacity * 100, 1),
            "outside_bench_pct": round(max(busy - ours, 0.0) / capacity * 100, 1),
            "loadavg_end": os.getloadavg()[0],
        }


async def _run_cells(
    cells: list[Cell], plan: Plan, meters: Meters, deadline: float
) -> list[dict[str, Any]]:
    results = []
    for cell in cells:
        started = time.monotonic()
        try:
            result = await run_cell(cell, plan, meters=meters, deadline=deadline)
        except Exception as exc:  # a bug in one cell must not lose the others' results
            reason = f"the cell crashed: {type(exc).__name__}: {exc}"
            arms = {arm.name: {"status": "failed", "reason": reason} for arm in cell.arms}
            result = {
                "suite": cell.suite,
                "title": cell.title,
                "scenario": cell.scenario,
                "mode": cell.mode.name,
                "concurrency": cell.concurrency,
                "arms": arms,
            }
        finally:
            await asyncio.gather(*(arm.close() for arm in cell.arms), return_exceptions=True)
        results.append(result)
        _progress(result, time.monotonic() - started)
    return results


def _progress(result: dict[str, Any], seconds: float) -> None:
    parts = []
    for name, s in result["arms"].items():
        if "total_ms" in s:
            total = (s.get("total_ms") or {}).get("p50")
            parts.append(f"{name} p50 {total} ms ({s['errors']} err)")
        else:
            parts.append(f"{name} {s.get('status')}")
    print(f"bench: [{seconds:5.1f}s] {result['title']}: " + "; ".join(parts), flush=True)


async def _measure(args: argparse.Namespace, plan: Plan, servers: Servers) -> dict[str, Any]:
    deadline = time.monotonic() + plan.run_budget_s
    watch = DatabaseWatch(servers.database, servers.run_id)
    meters = Meters(
        upstream_pid=servers.sim.pid,
        database_pids=watch.pids,
        database_connections=watch.connections,
    )
    suites: dict[str, Any] = {}
    try:
        if args.suite in ("all", "chats"):
            cells = chats_cells(servers.sim, servers.gatehouse, plan)
            suites["chats"] = await _run_cells(cells, plan, meters, deadline)
        if args.suite in ("all", "gateway"):
            cells = gateway_cells(servers.sim, servers.gatehouse, servers.peer, plan)
            suites["gateway"] = await _run_cells(cells, plan, meters, deadline)
    finally:
        watch.close()
    return suites


def _load_notes(load: dict[str, Any]) -> list[str]:
    note = (
        f"While measuring, the machine was {load['busy_pct']}% busy (all CPUs); "
        f"{load['outside_bench_pct']}% went to processes outside the bench "
        "(PostgreSQL and Redis included)."
    )
    if load["outside_bench_pct"] > 10:
        note += " Other work competed for the CPUs: treat the figures as noisy."
    return [note]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    plan = QUICK if args.quick else DEFAULT
    now = datetime.now(UTC)
    # Unique even when two engineers start a run in the same second (it names the organisation).
    run_id = f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    logs = RunLogs.start(run_id)
    servers = Servers()
    began = time.monotonic()
    try:
        servers.start_simulator()
        servers.start_gatehouse(run_id, args.server_env, args.member_limit)
        if args.suite in ("all", "gateway"):
            servers.start_peer(not args.no_peer)
        print(f"bench: servers up in {time.monotonic() - began:.1f}s; measuring", flush=True)
        speed_before = speed.reference_us()
        load = MachineLoad(servers)
        suites = asyncio.run(_measure(args, plan, servers))
        machine_load = load.summary()
        machine_speed = speed.summary(speed_before, speed.reference_us())
    finally:
        servers.stop()
    results: dict[str, Any] = {
        "meta": {
            "run_id": run_id,
            "started_at": now.isoformat(timespec="seconds"),
            "duration_s": round(time.monotonic() - began, 1),
            "git_revision": _git_revision(),
            "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, "
            f"Python {platform.python_version()}",
            "gatehouse": servers.gatehouse_desc,
            "peer": "LiteLLM proxy 1.110.2, 1 worker, no database"
            if servers.peer.url
            else f"unavailable ({servers.peer.unavailable})",
            "plan_name": "quick" if args.quick else "default",
            "plan": plan.as_dict(),
            "chunks_per_answer": CHUNKS,
            "machine_load": machine_load,
            "machine_speed": machine_speed,
            "server_logs": str(logs.relative_to(ROOT)),
            "notes": servers.notes + _load_notes(machine_load) + [speed.note(machine_speed)],
        },
        "suites": suites,
    }
    results["targets"] = report.targets(results)
    json_path, md_path = report.write(results, run_id)
    print()
    print(report.markdown(results))
    print(f"bench: results in {json_path} and {md_path}")
    return 0
