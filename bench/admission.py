"""`make bench-admission`: what a call's admission and settlement cost, by budget set-up.

Every chat message and `/v1` call is admitted (rate limits, worst case reserved on each hard
limit in scope) and settled (ledger row, reservations swapped for the real cost). What that
costs depends on the organisation's limits, not on the answer, so it is measured here on its
own: the public `admit` and `settle` of `providers.admission`, on uvloop, against PostgreSQL,
with the event loop's own connections on (`GATEHOUSE_DB_ASYNC`), as a server runs them.

For each set-up — no limit; one hard organisation limit (the bench's); an organisation and a
member hard limit (the usual budgeted organisation); the same plus a soft limit — it runs
`--calls` admit-then-settle cycles one after another (blocks of the set-ups alternate, so the
machine's drift falls on all alike) and reports, per cycle: this process's CPU, PostgreSQL's
CPU (its backends' run time, from /proc), and the wall time of admit and of settle (p50).

    .venv/bin/python bench/admission.py [--calls 400] [--blocks 5]

Database `gatehouse_bench` (created when missing, migrated; `make bench` uses it too), a fresh
organisation per run. Figures go to bench/results/admission-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "admission-latest.json"
HISTORY = [{"role": "user", "content": "word " * 200}]
SETUPS = [
    "no limit",
    "one hard limit",
    "two hard limits",
    "two hard + one soft",
    "two hard + rate limits",
]


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _setup_django() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from gatehouse_bench.gatehouse_setup import PG_DATABASE, postgres_database

    url = postgres_database(PG_DATABASE)
    if url is None:
        sys.exit("PostgreSQL is not reachable on 127.0.0.1:5432.")
    os.environ["DATABASE_URL"] = url
    # Rate limits are counted in Redis (the bench's database 9); without it that set-up is left out.
    from gatehouse_bench.gatehouse_setup import REDIS_URL, redis_up

    if redis_up():
        os.environ["REDIS_URL"] = REDIS_URL
    else:
        os.environ.pop("REDIS_URL", None)
        SETUPS.remove("two hard + rate limits")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # Production settings: with DEBUG on, Django would also record every query it runs.
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", "bench-admission-" + uuid.uuid4().hex)
    os.environ.setdefault("ALLOWED_HOSTS", "localhost")
    os.environ.setdefault("GATEHOUSE_ENCRYPTION_KEYS", _fernet_key())
    os.environ["GATEHOUSE_DB_ASYNC"] = "true"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _organisations(run_id: str) -> dict[str, Any]:
    """One organisation per set-up, each with one member; the memberships, organisation loaded."""
    from accounts.models import Membership, User
    from accounts.services import organization_create
    from providers.models import CostPolicy, PriceOverride, SpendingLimit

    found = {}
    for n, name in enumerate(SETUPS):
        user = User.objects.create_user(f"adm-{run_id}-{n}@example.com")
        org = organization_create(
            name=f"Admission {run_id} {n}", slug=f"adm-{run_id}-{n}", owner=user
        )
        PriceOverride.objects.create(
            organization=org,
            provider="openai",
            model="sim-gpt",
            input_per_mtok=Decimal("2.50"),
            output_per_mtok=Decimal("10.00"),
        )
        membership = Membership.objects.select_related("organization").get(organization=org)
        big = Decimal("1000000")
        if name != "no limit":
            SpendingLimit.objects.create(
                organization=org, scope="organization", amount=big, period="month"
            )
        if name.startswith("two"):
            SpendingLimit.objects.create(
                organization=org, scope="member", membership=membership, amount=big, period="month"
            )
        if name.endswith("rate limits"):  # far above what the run sends: never refused
            CostPolicy.objects.update_or_create(
                organization=org,
                defaults={
                    "org_requests_per_minute": 1_000_000,
                    "member_tokens_per_minute": 1_000_000_000,
                },
            )
        if name.endswith("soft"):
            SpendingLimit.objects.create(
                organization=org, scope="organization", amount=big, hard=False, period="day"
            )
        found[name] = membership
    return found


def _route() -> Any:
    from providers.adapters.base import Endpoint
    from providers.calls import Candidate
    from providers.routing import ModelLimits, Route

    candidate = Candidate("openai", "sim-gpt", Endpoint("openai", None, "k"), None, "openai:0")
    return Route("openai", "sim-gpt", [candidate], ModelLimits(128000, 4096, (0.0, 2.0)))


def _db_cpu() -> float:
    from gatehouse_bench.procinfo import pids_named, runtime_by_pid

    return sum(runtime_by_pid(pids_named("postgres")).values())


async def _cycles(membership: Any, calls: int) -> dict[str, list[float]]:
    from providers.adapters.base import Usage
    from providers.admission import admit, settle

    route, used = _route(), Usage(1000, 50)
    admit_ms, settle_ms = [], []
    for _ in range(calls):
        t0 = time.perf_counter()
        admission = await admit(
            request_id=uuid.uuid4().hex,
            membership=membership,
            route=route,
            messages=HISTORY,
            max_tokens=512,
        )
        t1 = time.perf_counter()
        await settle(
            admission=admission,
            candidate=route.candidates[0],
            usage=used,
            status="ok",
            latency_ms=10,
            ttft_ms=5,
        )
        t2 = time.perf_counter()
        admit_ms.append((t1 - t0) * 1000)
        settle_ms.append((t2 - t1) * 1000)
    return {"admit_ms": admit_ms, "settle_ms": settle_ms}


def _measured(run: Callable[[], dict[str, list[float]]], calls: int) -> dict[str, Any]:
    cpu0, db0 = time.process_time(), _db_cpu()
    times = run()
    cpu, db = time.process_time() - cpu0, _db_cpu() - db0
    return {"cpu_s": cpu, "db_s": db, "calls": calls, **times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="cycles per block")
    parser.add_argument("--blocks", type=int, default=5, help="blocks per set-up, alternating")
    args = parser.parse_args()
    _setup_django()
    import uvloop
    from django.db import connection
    from gatehouse_bench.speed import reference_us

    from providers.snapshot import snapshot

    run_id = time.strftime("%Y%m%dT%H%M%S")
    members = _organisations(run_id)
    for membership in members.values():
        snapshot(membership.organization)  # what a server has read before its first call
    connection.close()
    speed_before = reference_us()
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    for membership in members.values():  # warm-up: counters created, statements prepared
        loop.run_until_complete(_cycles(membership, 20))
    blocks: dict[str, list[dict[str, Any]]] = {name: [] for name in SETUPS}
    for _ in range(args.blocks):
        for name, membership in members.items():
            blocks[name].append(
                _measured(
                    lambda m=membership: loop.run_until_complete(_cycles(m, args.calls)),
                    args.calls,
                )
            )
    speed_after = reference_us()
    rows = {name: _summary(found) for name, found in blocks.items()}
    result = {
        "run_id": run_id,
        "calls_per_block": args.calls,
        "blocks": args.blocks,
        "speed_us_per_round": [speed_before, speed_after],
        "setups": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"machine speed: {speed_before:.2f} / {speed_after:.2f} µs a round (lower is faster)")
    print(
        "| set-up | CPU per call (this process) | PostgreSQL CPU per call "
        "| admit p50 | settle p50 |"
    )
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['cpu_us']:.0f} µs | {row['db_us']:.0f} µs | "
            f"{row['admit_p50_ms']:.2f} ms | {row['settle_p50_ms']:.2f} ms |"
        )
    print(f"written to {RESULTS.relative_to(ROOT)}")


def _summary(blocks: list[dict[str, Any]]) -> dict[str, float]:
    calls = sum(block["calls"] for block in blocks)
    admit = [ms for block in blocks for ms in block["admit_ms"]]
    settle = [ms for block in blocks for ms in block["settle_ms"]]
    per_block = [block["cpu_s"] / block["calls"] * 1e6 for block in blocks]
    return {
        "cpu_us": sum(block["cpu_s"] for block in blocks) / calls * 1e6,
        "cpu_us_by_block": per_block,
        "db_us": sum(block["db_s"] for block in blocks) / calls * 1e6,
        "admit_p50_ms": statistics.median(admit),
        "settle_p50_ms": statistics.median(settle),
    }


if __name__ == "__main__":
    main()
