"""Budget counters: atomic reservations, settlement, release, expiry — and no overshoot."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import Membership, Organization, User
from accounts.services import organization_create
from providers import budget
from providers.adapters.base import Endpoint, Usage
from providers.admission import AdmissionRefused, admit_sync, release_sync, settle_sync
from providers.budget import BudgetExceeded, LimitRef
from providers.calls import Candidate
from providers.models import PriceOverride, Reservation, SpendingCounter, SpendingLimit
from providers.models import UsageRecord as Ledger
from providers.routing import ModelLimits, Route

ON_POSTGRES = connection.vendor == "postgresql"
LATER = timedelta(minutes=10)


def make_limit(organization, amount, *, scope="organization", period="month", hard=True, **kw):
    return SpendingLimit.objects.create(
        organization=organization,
        scope=scope,
        period=period,
        amount=Decimal(amount),
        hard=hard,
        **kw,
    )


def slots(*limits, now=None, tz="UTC"):
    refs = [LimitRef.of(limit) for limit in limits]
    return budget.slots_for(refs, now=now or timezone.now(), tz=tz)


def counter(limit) -> SpendingCounter:
    return SpendingCounter.objects.get(limit=limit)


def test_reservations_fill_a_limit_then_refuse(acme) -> None:
    limit = make_limit(acme, "1.00")
    expires = timezone.now() + LATER
    for n in range(4):
        budget.reserve(
            request_id=f"r{n}", slots=slots(limit), amount=Decimal("0.25"), expires_at=expires
        )
    with pytest.raises(BudgetExceeded) as refused:
        budget.reserve(
            request_id="r5", slots=slots(limit), amount=Decimal("0.01"), expires_at=expires
        )
    assert refused.value.slot.limit.id == limit.pk
    assert counter(limit).reserved == Decimal("1.00")
    assert Reservation.objects.count() == 4


def test_a_call_dearer_than_the_whole_limit_is_refused_on_a_fresh_counter(acme) -> None:
    limit = make_limit(acme, "0.10")
    with pytest.raises(BudgetExceeded):
        budget.reserve(
            request_id="big", slots=slots(limit), amount=Decimal("0.11"), expires_at=timezone.now()
        )
    assert not SpendingCounter.objects.filter(reserved__gt=0).exists()


def test_reservation_is_all_or_nothing_across_limits(acme, bob_membership) -> None:
    org_limit = make_limit(acme, "10")
    member_limit = make_limit(acme, "0.50", scope="member", membership=bob_membership)
    with pytest.raises(BudgetExceeded) as refused:
        budget.reserve(
            request_id="r",
            slots=slots(org_limit, member_limit),
            amount=Decimal(1),
            expires_at=timezone.now() + LATER,
        )
    assert refused.value.slot.limit.id == member_limit.pk
    assert SpendingCounter.objects.filter(reserved__gt=0).count() == 0
    assert not Reservation.objects.exists()


def test_settle_swaps_the_reservation_for_the_real_cost(acme) -> None:
    limit = make_limit(acme, "5")
    budget.reserve(
        request_id="r", slots=slots(limit), amount=Decimal(2), expires_at=timezone.now() + LATER
    )
    charged = budget.settle(request_id="r", slots=slots(limit), cost=Decimal("0.75"))
    row = counter(limit)
    assert (row.spent, row.reserved) == (Decimal("0.75"), 0)
    assert [c.spent for c in charged] == [Decimal("0.75")]
    assert not Reservation.objects.exists()


def test_settle_charges_soft_limits_without_reserving_on_them(acme) -> None:
    soft = make_limit(acme, "1", hard=False)
    budget.settle(request_id="r", slots=slots(soft), cost=Decimal("3"))
    assert counter(soft).spent == 3  # soft limits track spend past their amount


def test_release_gives_the_reservation_back_once(acme) -> None:
    limit = make_limit(acme, "1")
    budget.reserve(
        request_id="r", slots=slots(limit), amount=Decimal("0.6"), expires_at=timezone.now() + LATER
    )
    assert budget.release(request_id="r") == Decimal("0.6")
    assert budget.release(request_id="r") == 0
    assert counter(limit).reserved == 0


def test_sweep_returns_only_expired_reservations(acme) -> None:
    limit = make_limit(acme, "1")
    now = timezone.now()
    budget.reserve(request_id="dead", slots=slots(limit), amount=Decimal("0.3"), expires_at=now)
    budget.reserve(
        request_id="live", slots=slots(limit), amount=Decimal("0.2"), expires_at=now + LATER
    )
    assert budget.sweep(now=now + timedelta(seconds=1)) == 1
    assert counter(limit).reserved == Decimal("0.2")
    assert list(Reservation.objects.values_list("request_id", flat=True)) == ["live"]
    assert budget.sweep(now=now + timedelta(seconds=1)) == 0


def test_sweep_works_in_batches(acme) -> None:
    limit = make_limit(acme, "100")
    now = timezone.now()
    for n in range(7):
        budget.reserve(request_id=f"r{n}", slots=slots(limit), amount=Decimal(1), expires_at=now)
    assert budget.sweep(now=now, batch=3) == 7
    assert counter(limit).reserved == 0


def test_settle_after_sweep_charges_the_cost_without_giving_back_twice(acme) -> None:
    limit = make_limit(acme, "1")
    now = timezone.now()
    budget.reserve(request_id="slow", slots=slots(limit), amount=Decimal("0.5"), expires_at=now)
    budget.sweep(now=now)
    budget.settle(request_id="slow", slots=slots(limit), cost=Decimal("0.4"))
    row = counter(limit)
    assert (row.spent, row.reserved) == (Decimal("0.4"), 0)


def test_sweep_reservations_command(acme, capsys) -> None:
    limit = make_limit(acme, "1")
    budget.reserve(
        request_id="dead",
        slots=slots(limit),
        amount=Decimal("0.3"),
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    call_command("sweep_reservations")
    assert "1 expired reservation" in capsys.readouterr().out
    assert counter(limit).reserved == 0


def test_a_new_period_starts_at_zero_without_a_reset(acme) -> None:
    acme.timezone = "Europe/Paris"
    acme.save()
    limit = make_limit(acme, "1", period="day")
    late = datetime(2025, 6, 14, 21, 30, tzinfo=UTC)  # 23:30 in Paris
    budget.reserve(
        request_id="a",
        slots=slots(limit, now=late, tz="Europe/Paris"),
        amount=Decimal(1),
        expires_at=late,
    )
    with pytest.raises(BudgetExceeded):
        budget.reserve(
            request_id="b",
            slots=slots(limit, now=late, tz="Europe/Paris"),
            amount=Decimal(1),
            expires_at=late,
        )
    after_midnight = late + timedelta(minutes=31)  # 00:01 in Paris, still 14 June in UTC
    budget.reserve(
        request_id="c",
        slots=slots(limit, now=after_midnight, tz="Europe/Paris"),
        amount=Decimal(1),
        expires_at=late,
    )
    starts = list(
        SpendingCounter.objects.filter(limit=limit).values_list("period_start", flat=True)
    )
    assert sorted(starts) == [
        datetime(2025, 6, 13, 22, tzinfo=UTC),
        datetime(2025, 6, 14, 22, tzinfo=UTC),
    ]


def test_a_deleted_limit_no_longer_holds_calls(acme) -> None:
    limit = make_limit(acme, "0")
    stale = slots(limit)
    limit.delete()
    assert (
        budget.reserve(request_id="r", slots=stale, amount=Decimal(1), expires_at=timezone.now())
        == []
    )
    assert budget.settle(request_id="r", slots=stale, cost=Decimal(1)) == []


# --- the property: any interleaving keeps every hard limit, and counters match the ledger ----

PRICE_IN, PRICE_OUT = Decimal(1000), Decimal(2000)  # USD per Mtok: 0.001 and 0.002 per token
MESSAGE = [{"role": "user", "content": "x" * 40}]  # estimated at 10 input tokens


def _route(provider="sim", model="m", credential_id=None) -> Route:
    candidate = Candidate(
        provider=provider,
        model=model,
        endpoint=Endpoint(kind="openai", base_url=None, api_key="k"),
        credential_id=credential_id,
        breaker_key="k",
    )
    return Route(provider, model, [candidate], ModelLimits(1000, 1000, (0.0, 2.0)))


def _fresh_world(org_amount: Decimal, member_amount: Decimal):
    slug = f"o{uuid.uuid4().hex[:12]}"
    owner = User.objects.create_user(f"{slug}@example.com", "pw-123456789")
    organization = organization_create(name=slug, slug=slug, owner=owner)
    membership = Membership.objects.get(organization=organization)
    PriceOverride.objects.create(
        organization=organization,
        provider="sim",
        model="m",
        input_per_mtok=PRICE_IN,
        output_per_mtok=PRICE_OUT,
    )
    hard = [
        make_limit(organization, org_amount),
        make_limit(
            organization, member_amount, scope="member", membership=membership, period="day"
        ),
    ]
    return membership, hard


def _check_invariants(membership, hard, outstanding) -> None:
    ledger = Ledger.objects.filter(organization_id=membership.organization_id)
    settled = ledger.aggregate(total=Sum("cost"))["total"] or Decimal(0)
    for limit in hard:
        row = SpendingCounter.objects.filter(limit=limit).first()
        spent, reserved = (row.spent, row.reserved) if row else (Decimal(0), Decimal(0))
        assert spent + reserved <= limit.amount
        assert spent == settled.quantize(budget.QUANTUM)
        held = Reservation.objects.filter(counter__limit=limit).aggregate(t=Sum("amount"))["t"]
        assert reserved == (held or Decimal(0))
    assert set(
        Reservation.objects.filter(counter__limit__in=hard).values_list("request_id", flat=True)
    ) == set(outstanding)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.integers(min_value=1, max_value=400)),
        st.tuples(st.just("settle"), st.integers(0, 30), st.floats(0, 1), st.floats(0, 1)),
        st.tuples(st.just("settle_again"), st.integers(0, 30)),
        st.tuples(st.just("release"), st.integers(0, 30)),
        st.tuples(st.just("expire"), st.integers(0, 30)),
    ),
    max_size=40,
)


@pytest.mark.django_db
@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=OPS,
    org_amount=st.decimals(min_value=0, max_value=3, places=3),
    member_amount=st.decimals(min_value=0, max_value=2, places=3),
)
def test_any_interleaving_keeps_hard_limits_and_matches_the_ledger(
    ops, org_amount, member_amount
) -> None:
    membership, hard = _fresh_world(org_amount, member_amount)
    admitted, outstanding, settled = [], {}, set()
    for op in ops:
        if op[0] == "admit":
            rid = uuid.uuid4().hex
            try:
                admission = admit_sync(rid, membership, _route(), 10, op[1])
            except AdmissionRefused as exc:
                assert exc.code == "budget_exceeded"
            else:
                admitted.append(admission)
                outstanding[rid] = admission
        elif admitted:
            admission = admitted[op[1] % len(admitted)]
            rid = admission.request_id
            if op[0] == "settle" and rid in outstanding:
                # Real use never exceeds the worst case the admission reserved.
                usage = Usage(int(10 * op[2]), int(admission.max_tokens * op[3]))
                settle_sync(
                    admission,
                    _route().candidates[0],
                    usage,
                    status="ok",
                    error_code="",
                    latency_ms=1,
                    ttft_ms=1,
                    chat_id=None,
                )
                settled.add(rid)
                del outstanding[rid]
            elif op[0] == "settle_again" and rid in settled:
                before = list(SpendingCounter.objects.values_list("id", "spent", "reserved"))
                settle_sync(
                    admission,
                    None,
                    Usage(10, 10),
                    status="ok",
                    error_code="",
                    latency_ms=1,
                    ttft_ms=1,
                    chat_id=None,
                )
                assert (
                    list(SpendingCounter.objects.values_list("id", "spent", "reserved")) == before
                )
            elif op[0] == "release" and rid in outstanding:
                release_sync(admission)
                del outstanding[rid]
            elif op[0] == "expire" and rid in outstanding:
                # The process holding it died: it never settles; the sweeper gives it back.
                Reservation.objects.filter(request_id=rid).update(expires_at=timezone.now() - LATER)
                budget.sweep()
                del outstanding[rid]
        _check_invariants(membership, hard, outstanding)


# --- concurrency on PostgreSQL: many sessions hammering one organisation -----------------------


@pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL (set DATABASE_URL)")
@pytest.mark.django_db(transaction=True)
def test_concurrent_admissions_never_overshoot_a_hard_limit() -> None:
    amount, per_call = Decimal("1.00"), Decimal("0.03")  # room for exactly 33 calls
    owner = User.objects.create_user("owner@example.com", "pw-123456789")
    organization = organization_create(name="Busy", slug="busy", owner=owner)
    PriceOverride.objects.create(
        organization=organization,
        provider="sim",
        model="m",
        input_per_mtok=0,
        output_per_mtok=PRICE_OUT,
    )
    members = []
    for n in range(4):
        user = User.objects.create_user(f"m{n}@example.com", "pw-123456789")
        members.append(Membership.objects.create(user=user, organization=organization))
    org_limit = make_limit(organization, amount, period="day")
    for membership in members:  # a member limit too, so every call locks two counters
        make_limit(organization, "100", scope="member", membership=membership, period="day")

    threads_n, calls_each = 12, 8
    barrier = threading.Barrier(threads_n)
    outcomes: list[str] = []
    lock = threading.Lock()

    def hammer(worker: int) -> None:
        membership = Membership.objects.select_related("organization").get(
            pk=members[worker % 4].pk
        )
        barrier.wait()
        try:
            for _ in range(calls_each):
                rid = uuid.uuid4().hex
                try:
                    admission = admit_sync(rid, membership, _route(), 0, 15)  # 15 x 0.002
                except AdmissionRefused as exc:
                    outcome = exc.code
                else:
                    settle_sync(
                        admission,
                        _route().candidates[0],
                        Usage(0, 15),
                        status="ok",
                        error_code="",
                        latency_ms=1,
                        ttft_ms=1,
                        chat_id=None,
                    )
                    outcome = "ok"
                with lock:
                    outcomes.append(outcome)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads_n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert len(outcomes) == threads_n * calls_each
    assert set(outcomes) <= {"ok", "budget_exceeded"}
    row = SpendingCounter.objects.get(limit=org_limit)
    ledger = Ledger.objects.filter(organization=organization).aggregate(t=Sum("cost"))["t"]
    assert outcomes.count("ok") == int(amount / per_call) == 33
    assert row.spent == ledger == outcomes.count("ok") * per_call <= amount
    assert row.reserved == 0
    assert not Reservation.objects.exists()


# The workers of the multi-process tests: each its own interpreter, its own Django, its own
# connections to the test database. They print the outcome of each call, one line per call.
WORKER_SETUP = """
import asyncio, sys, time, uuid
import django
django.setup()
from accounts.models import Membership
from providers.adapters.base import Endpoint, Usage
from providers.admission import AdmissionRefused, admit_on_loop, admit_sync, settle_on_loop
from providers.admission import settle_sync
from providers.calls import Candidate
from providers.routing import ModelLimits, Route
from providers.snapshot import snapshot

membership_id, calls, start_at = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
candidate = Candidate("sim", "m", Endpoint("openai", None, "k"), None, "k")
route = Route("sim", "m", [candidate], ModelLimits(1000, 1000, (0.0, 2.0)))
membership = Membership.objects.select_related("organization").get(pk=membership_id)
snapshot(membership.organization)  # read before the first call, as a server has
"""

# In threads, as on SQLite or with rate limits: `admit_sync` and `settle_sync`.
WORKER = (
    WORKER_SETUP
    + """
time.sleep(max(0.0, start_at - time.time()))
for _ in range(calls):
    try:
        admission = admit_sync(uuid.uuid4().hex, membership, route, 0, 15)
    except AdmissionRefused as exc:
        print("outcome", exc.code, flush=True)
        continue
    settle_sync(admission, candidate, Usage(0, 15), status="ok", error_code="",
                 latency_ms=1, ttft_ms=1, chat_id=None)
    print("outcome", "ok", flush=True)
"""
)

# On the event loop, as a server runs calls on PostgreSQL: one statement each on the loop's own
# connection (config.apg), a third of the calls failing before any provider answered (their
# reservations given back, nothing spent). Also prints whether admission and settlement stayed
# on the loop.
LOOP_WORKER = (
    WORKER_SETUP
    + """
async def main():
    await asyncio.sleep(max(0.0, start_at - time.time()))
    for n in range(calls):
        rid = uuid.uuid4().hex
        admission = await admit_on_loop(rid, membership, route, (0, 15))
        where = "loop"
        if admission is None:  # no room, or no counter yet: the thread path decides
            where = "thread"
            try:
                admission = await asyncio.to_thread(admit_sync, rid, membership, route, 0, 15)
            except AdmissionRefused as exc:
                print("outcome", exc.code, where, flush=True)
                continue
        failed = n % 3 == 2
        record = await settle_on_loop(
            admission, None if failed else candidate, None if failed else Usage(0, 15),
            status="error" if failed else "ok", error_code="", latency_ms=1, ttft_ms=1,
        )
        settled = "unsettled" if record is None else "settled"
        print("outcome", "failed" if failed else "ok", where, settled, flush=True)

asyncio.run(main())
"""
)


def _test_database_url() -> str:
    from urllib.parse import urlparse, urlunparse

    parsed = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(parsed._replace(path="/" + connection.settings_dict["NAME"]))


def _busy_organisation(members: int) -> tuple[Organization, list[Membership], SpendingLimit]:
    """An organisation with a hard daily limit of 1.00 (room for 33 calls at 0.03), `members`
    members each with a hard member limit too (every call locks two counters), a price."""
    owner = User.objects.create_user("owner@example.com", "pw-123456789")
    organization = organization_create(name="Busy", slug="busy", owner=owner)
    PriceOverride.objects.create(
        organization=organization,
        provider="sim",
        model="m",
        input_per_mtok=0,
        output_per_mtok=PRICE_OUT,
    )
    found = [Membership.objects.get(organization=organization)]
    for n in range(members - 1):
        user = User.objects.create_user(f"m{n}@example.com", "pw-123456789")
        found.append(Membership.objects.create(user=user, organization=organization))
    org_limit = make_limit(organization, "1.00", period="day")
    for membership in found:
        make_limit(organization, "100", scope="member", membership=membership, period="day")
    return organization, found, org_limit


def _run_workers(script: str, memberships: list[int], calls: int, **env: str) -> list[list[str]]:
    """Run one worker per membership id, all starting at once after their Django is up; the
    words of every outcome line (each worker must print one per call)."""
    env = os.environ | {
        "DATABASE_URL": _test_database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **env,
    }
    start_at = str(time.time() + 3)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(membership), str(calls), start_at],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for membership in memberships
    ]
    lines = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err[-2000:]
        mine = [line.split()[1:] for line in out.splitlines() if line.startswith("outcome ")]
        assert len(mine) == calls, (out, err[-2000:])
        lines += mine
    return lines


@pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL (set DATABASE_URL)")
@pytest.mark.django_db(transaction=True)
def test_concurrent_processes_never_overshoot_a_hard_limit() -> None:
    organization, (membership,), org_limit = _busy_organisation(1)
    outcomes = [line[0] for line in _run_workers(WORKER, [membership.pk] * 6, 12)]
    assert outcomes.count("ok") == 33
    assert set(outcomes) == {"ok", "budget_exceeded"}
    row = SpendingCounter.objects.get(limit=org_limit)
    ledger = Ledger.objects.filter(organization=organization).aggregate(t=Sum("cost"))["t"]
    assert row.spent == ledger == Decimal("0.99") and row.reserved == 0


def _deadlocks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


@pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL (set DATABASE_URL)")
@pytest.mark.django_db(transaction=True)
def test_concurrent_processes_on_the_event_loop_never_overshoot_or_deadlock() -> None:
    organization, members, org_limit = _busy_organisation(3)
    amount, per_call, workers_n = org_limit.amount, Decimal("0.03"), 6
    deadlocks = _deadlocks()
    memberships = [members[n % 3].pk for n in range(workers_n)]
    lines = _run_workers(LOOP_WORKER, memberships, 18, GATEHOUSE_DB_ASYNC="true")
    outcomes = [line[0] for line in lines]
    assert set(outcomes) == {"ok", "failed", "budget_exceeded"}
    admitted = [line for line in lines if line[0] != "budget_exceeded"]
    # Every admitted call settled on the loop, in its one statement (no fallback to a thread);
    # most were admitted there too (the thread path creates the counters, and decides when the
    # loop's statement finds no room).
    assert all(line[2] == "settled" for line in admitted)
    assert sum(line[1] == "loop" for line in admitted) > len(admitted) / 2
    row = SpendingCounter.objects.get(limit=org_limit)
    ledger = Ledger.objects.filter(organization=organization).aggregate(t=Sum("cost"))["t"]
    assert row.spent == ledger == outcomes.count("ok") * per_call <= amount
    # A call is refused only while spent + reserved + 0.03 > 1.00, and the other workers hold
    # at most one reservation each: the limit was really filled, to within their calls.
    assert row.spent > amount - workers_n * per_call
    assert row.reserved == 0 and not Reservation.objects.exists()
    member_spent = sum(c.spent for c in SpendingCounter.objects.filter(limit__scope="member"))
    assert member_spent == row.spent
    assert _deadlocks() == deadlocks


def test_reservation_ttl_outlives_the_longest_call() -> None:
    assert budget.reservation_ttl() >= 2 * settings.GATEHOUSE_TIMEOUT_TOTAL
