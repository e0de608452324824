"""`make bench-reports`: one million usage rows in PostgreSQL, and the report queries timed.

Seeds a database of its own (`gatehouse_bench_reports`, created when missing) through the
project's migrations, bulk-inserts the ledger with one INSERT … SELECT generate_series, then
times every query the usage reports run — through the same selectors the staff report, the
portal and `/api/usage` use — and writes the figures to bench/results/.

    .venv/bin/python bench/reports.py [--rows 1000000] [--reseed] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DB_NAME = "gatehouse_bench_reports"
ORGS, USERS_PER_ORG, DAYS = 20, 10, 90


def _setup_django() -> None:
    from gatehouse_bench.gatehouse_setup import postgres_database

    url = postgres_database(DB_NAME)
    if url is None:
        sys.exit("PostgreSQL is not reachable on 127.0.0.1:5432.")
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _seed(rows: int, reseed: bool) -> tuple[int, float]:
    from django.db import connection

    from accounts.models import Membership, Organization, User
    from providers.models import UsageRecord

    if reseed:
        UsageRecord.objects.all().delete()
    have = UsageRecord.objects.count()
    if have >= rows:
        with connection.cursor() as cursor:
            # The visibility map lets the report's covering index answer without the table.
            cursor.execute("VACUUM ANALYZE providers_usagerecord")
        return have, 0.0
    orgs = []
    for i in range(ORGS):
        org, _ = Organization.objects.get_or_create(slug=f"bench-{i}", defaults={"name": f"B{i}"})
        orgs.append(org)
    users = []
    for org in orgs:
        for j in range(USERS_PER_ORG):
            user, _ = User.objects.get_or_create(email=f"u{j}@{org.slug}.example")
            Membership.objects.get_or_create(user=user, organization=org)
            users.append((org.pk, user.pk))
    org_ids = ",".join(str(o) for o, _ in users)
    user_ids = ",".join(str(u) for _, u in users)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # Trusted numbers only (ids and counts this script made): no user input reaches the SQL.
        cursor.execute(
            f"""
            INSERT INTO providers_usagerecord (request_id, organization_id, user_id, chat_id,
                provider, model, input_tokens, output_tokens, tokens_estimated, cost,
                input_price_per_mtok, output_price_per_mtok, price_source, reserved, status,
                error_code, latency_ms, ttft_ms, created_at)
            SELECT 'bench-' || g, (ARRAY[{org_ids}])[1 + g % {len(users)}],
                (ARRAY[{user_ids}])[1 + g % {len(users)}], g % 5000,
                (ARRAY['openai','anthropic','ollama'])[1 + g % 3],
                (ARRAY['sim-gpt','sim-gpt-mini','sim-claude','sim-llama'])[1 + g % 4],
                100 + g % 900, 10 + g % 500, g % 50 = 0,
                CASE WHEN g % 4 = 3 THEN NULL ELSE ((100 + g % 900) * 0.000003) END,
                3, 15, CASE WHEN g % 4 = 3 THEN 'unknown' ELSE 'catalogue' END, 0,
                CASE WHEN g % 37 = 0 THEN 'error' ELSE 'ok' END, '', 200 + g % 800, 50 + g % 100,
                now() - ((g % ({DAYS} * 1440)) * interval '1 minute')
            FROM generate_series({have + 1}, {rows}) AS g
            """  # noqa: S608
        )
        cursor.execute("VACUUM ANALYZE providers_usagerecord")
    return UsageRecord.objects.count(), time.perf_counter() - started


def _timed(run: Callable[[], object], repeat: int) -> dict[str, float]:
    run()  # warm the cache once, as a real report page would be
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(samples), 1), "max_ms": round(max(samples), 1)}


def _queries() -> dict[str, Callable[[], object]]:
    from accounts.models import Organization
    from providers.models import UsageRecord
    from providers.reports import usage_csv, usage_filter, usage_groups, usage_totals

    end = datetime.now(UTC).date()
    month = {"from": end - timedelta(days=29), "to": end}
    week = {"from": end - timedelta(days=6), "to": end}
    org = Organization.objects.get(slug="bench-3")
    everyone = usage_filter(UsageRecord.objects.all(), organization=None, params=month)
    one_org = usage_filter(
        UsageRecord.objects.for_organization(org), organization=org, params=month
    )
    one_org_week = usage_filter(
        UsageRecord.objects.for_organization(org), organization=org, params=week
    )

    def groups(rows, keys, organization=None):
        return lambda: usage_groups(rows, keys=keys, organization=organization)

    return {
        "staff: totals, 30 days, all organisations": lambda: usage_totals(everyone),
        "staff: spend per day, 30 days": groups(everyone, ["day"]),
        "staff: by organisation": groups(everyone, ["organization"]),
        "staff: by organisation and member": groups(everyone, ["organization", "member"]),
        "staff: by provider and model": groups(everyone, ["provider", "model"]),
        "org admin: totals, 30 days": lambda: usage_totals(one_org),
        "org admin: spend per day": groups(one_org, ["day"], org),
        "org admin: by member": groups(one_org, ["member"], org),
        "org admin: by provider and model": groups(one_org, ["provider", "model"], org),
        "org admin: CSV export, 7 days": lambda: sum(1 for _ in usage_csv(one_org_week)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    _setup_django()
    count, seed_seconds = _seed(args.rows, args.reseed)
    figures = {name: _timed(run, args.repeat) for name, run in _queries().items()}
    from providers.models import UsageRecord

    csv_rows = UsageRecord.objects.filter(organization__slug="bench-3").count()
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "ledger_rows": count,
        "seed_seconds": round(seed_seconds, 1),
        "rows_of_one_organisation": csv_rows,
        "queries": figures,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    for name in (f"reports-{stamp}.json", "reports-latest.json"):
        (RESULTS / name).write_text(json.dumps(result, indent=2))
    print(f"ledger rows: {count:,} (seeded in {seed_seconds:.1f} s)")
    print(f"{'query':<46} {'median ms':>10} {'max ms':>8}")
    for name, figure in figures.items():
        print(f"{name:<46} {figure['median_ms']:>10} {figure['max_ms']:>8}")


if __name__ == "__main__":
    main()
