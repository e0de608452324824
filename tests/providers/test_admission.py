"""Admission and settlement through the public async API: refusals, pricing policies, the
ledger written exactly once, rate limits, and the counter store failing."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Membership
from providers import admission as admissions
from providers.adapters.base import Endpoint, Usage
from providers.admission import AdmissionRefused, admit, release, settle
from providers.calls import Candidate
from providers.models import (
    CostPolicy,
    PriceOverride,
    ProviderCredential,
    Reservation,
    SpendingCounter,
    SpendingLimit,
    UsageRecord,
)
from providers.routing import ModelLimits, Route

# Both ways on PostgreSQL: in thread hops, and on the event loop (no hop: config.apg).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_path")]

HELLO = [{"role": "user", "content": "x" * 400}]  # estimated at 100 input tokens
Source = UsageRecord.PriceSource


def candidate(provider="openai", model="gpt-4o", kind="openai", credential_id=None) -> Candidate:
    return Candidate(
        provider=provider,
        model=model,
        endpoint=Endpoint(kind=kind, base_url=None, api_key="k"),
        credential_id=credential_id,
        breaker_key=f"{provider}:{credential_id}",
    )


def route(*candidates: Candidate) -> Route:
    candidates = candidates or (candidate(),)
    first = candidates[0]
    return Route(first.provider, first.model, list(candidates), ModelLimits(1000, 4096, (0, 2)))


def rid() -> str:
    return uuid.uuid4().hex


async def _membership(pk: int) -> Membership:
    return await Membership.objects.select_related("organization").aget(pk=pk)


@pytest.fixture
async def bob_m(bob_membership) -> Membership:
    return await _membership(bob_membership.pk)


def limit(organization, amount, **fields) -> SpendingLimit:
    fields.setdefault("scope", "organization")
    fields.setdefault("period", "month")
    return SpendingLimit.objects.create(organization=organization, amount=Decimal(amount), **fields)


USED = Usage(100, 50)


async def finish(admission, usage=USED, status="ok", cand=None, **extra):
    return await settle(
        admission=admission,
        candidate=cand or candidate(),
        usage=usage,
        status=status,
        latency_ms=120,
        ttft_ms=40,
        **extra,
    )


# --- budgets --------------------------------------------------------------------------------


async def test_admit_with_no_limits_reserves_nothing_and_settle_records_the_cost(bob_m) -> None:
    admission = await admit(
        request_id="req-1", membership=bob_m, route=route(), messages=HELLO, max_tokens=200
    )
    assert admission.reserved == 0
    record = await finish(admission, chat_id=7)
    assert record.cost == Decimal("0.00075")  # 100 x 2.5/M + 50 x 10/M (genai-prices, gpt-4o)
    assert (record.input_price_per_mtok, record.output_price_per_mtok) == (Decimal("2.5"), 10)
    assert record.price_source == Source.CATALOGUE
    assert (record.user_id, record.chat_id, record.status) == (bob_m.user_id, 7, "ok")


async def test_admit_reserves_the_worst_case_on_every_hard_limit(acme, bob_m) -> None:
    org = await sync_to_async(limit)(acme, "10")
    mine = await sync_to_async(limit)(acme, "5", scope="member", membership_id=bob_m.pk)
    admission = await admit(
        request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=200
    )
    # 100 estimated input tokens x 2.5/M + 200 max output tokens x 10/M
    assert admission.reserved == Decimal("0.00225")
    reserved = {c.limit_id: c.reserved async for c in SpendingCounter.objects.all()}
    assert reserved == {org.pk: Decimal("0.00225"), mine.pk: Decimal("0.00225")}


async def test_every_limit_in_scope_is_charged_and_given_back_its_reservation(
    acme, bob_m, db_path
) -> None:
    org = await sync_to_async(limit)(acme, "10")
    mine = await sync_to_async(limit)(acme, "5", scope="member", membership_id=bob_m.pk)
    soft = await sync_to_async(limit)(acme, "1", hard=False, period="day")
    await finish(
        await admit(
            request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=200
        )
    )
    # The counters exist now: admission and settlement take their one statement each on the
    # event loop, whatever the number of limits (the thread path is the fallback).
    admission = await admit(
        request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=200
    )
    record = await admissions.settle_on_loop(
        admission, candidate(), USED, status="ok", error_code="", latency_ms=1, ttft_ms=1
    )
    if db_path == "event loop":
        assert record is not None and record.cost == Decimal("0.00075")
    else:
        assert record is None  # no event-loop connection: the caller settles in a thread
        await finish(admission)
    counters = {c.limit_id: (c.spent, c.reserved) async for c in SpendingCounter.objects.all()}
    twice = (Decimal("0.00150"), 0)
    assert counters == {org.pk: twice, mine.pk: twice, soft.pk: twice}
    assert not await Reservation.objects.aexists()


async def test_budget_refusal_names_the_limit_and_when_it_resets(acme, bob_m) -> None:
    acme.timezone = "Europe/Paris"
    await acme.asave()
    bob_m = await _membership(bob_m.pk)
    tight = await sync_to_async(limit)(
        acme, "0.001", scope="member", membership_id=bob_m.pk, period="day", name="Bob's day"
    )
    with pytest.raises(AdmissionRefused) as refused:
        await admit(
            request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=200
        )
    exc = refused.value
    assert (exc.code, exc.status_code) == ("budget_exceeded", 402)
    assert exc.limit.id == tight.pk
    assert "Bob's day" in exc.message and "Europe/Paris" in exc.message
    local = exc.resets_at.astimezone(acme.tzinfo)
    assert (local.hour, local.minute) == (0, 0)
    assert exc.headers["X-Gatehouse-Limit"] == str(tight.pk)
    assert exc.as_dict()["limit"]["name"] == "Bob's day"
    assert not await Reservation.objects.aexists()


async def test_spent_budget_refuses_until_a_release_gives_room_back(acme, bob_m) -> None:
    await sync_to_async(limit)(acme, "0.003")
    first = await admit(
        request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=200
    )
    with pytest.raises(AdmissionRefused):
        await admit(
            request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=200
        )
    await release(admission=first)
    await release(admission=first)  # idempotent
    await admit(request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=200)


async def test_soft_limits_never_refuse(acme, bob_m) -> None:
    await sync_to_async(limit)(acme, "0", hard=False)
    admission = await admit(
        request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=200
    )
    await finish(admission)
    soft = await SpendingCounter.objects.aget()
    assert soft.spent == Decimal("0.00075") and soft.reserved == 0


async def test_a_call_ending_in_the_next_period_is_charged_there(acme, bob_m) -> None:
    monthly = await sync_to_async(limit)(acme, "10")
    admission = await admit(
        request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=200
    )
    # As if admitted last month: its reservation sits on the previous period's counter.
    held = await SpendingCounter.objects.aget(limit=monthly)
    held.period_start -= timedelta(days=40)
    held.period_end -= timedelta(days=40)
    await held.asave()
    await finish(admission)
    old = await SpendingCounter.objects.aget(pk=held.pk)
    assert (old.spent, old.reserved) == (0, 0)  # given back, charged nothing
    new = await SpendingCounter.objects.exclude(pk=held.pk).aget(limit=monthly)
    assert (new.spent, new.reserved) == (Decimal("0.00075"), 0)
    assert not await Reservation.objects.aexists()


def credential(organization, name: str) -> ProviderCredential:
    stored = ProviderCredential(
        organization=organization, name=name, provider="openai", kind="openai"
    )
    stored.set_secret("sk-test-0000000000")
    stored.save()
    return stored


async def test_credential_limits_hold_every_candidate_but_charge_only_the_one_that_answered(
    acme, bob_m
) -> None:
    primary = await sync_to_async(credential)(acme, "a")
    backup = await sync_to_async(credential)(acme, "b")
    limit_a = await sync_to_async(limit)(acme, "1", scope="credential", credential_id=primary.pk)
    limit_b = await sync_to_async(limit)(acme, "1", scope="credential", credential_id=backup.pk)
    a, b = candidate(credential_id=primary.pk), candidate(credential_id=backup.pk)
    admission = await admit(
        request_id=rid(), membership=bob_m, route=route(a, b), messages=HELLO, max_tokens=200
    )
    assert await Reservation.objects.acount() == 2
    await finish(admission, cand=b)
    spent = {c.limit_id: (c.spent, c.reserved) async for c in SpendingCounter.objects.all()}
    assert spent == {limit_a.pk: (0, 0), limit_b.pk: (Decimal("0.00075"), 0)}
    record = await UsageRecord.objects.aget(request_id=admission.request_id)
    assert record.credential_id == backup.pk


# --- exactly once ---------------------------------------------------------------------------


async def test_settling_twice_writes_one_row_and_moves_the_counters_once(acme, bob_m) -> None:
    await sync_to_async(limit)(acme, "10")
    admission = await admit(
        request_id="once", membership=bob_m, route=route(), messages=HELLO, max_tokens=200
    )
    first = await finish(admission)
    second = await finish(admission, usage=Usage(9999, 9999), status="error")
    assert second.pk == first.pk and second.cost == first.cost
    assert await UsageRecord.objects.filter(request_id="once").acount() == 1
    row = await SpendingCounter.objects.aget()
    assert (row.spent, row.reserved) == (Decimal("0.00075"), 0)
    await release(admission=admission)  # after settlement: nothing to give back
    row = await SpendingCounter.objects.aget()
    assert (row.spent, row.reserved) == (Decimal("0.00075"), 0)


async def test_partial_stream_records_the_tokens_used_and_whether_estimated(bob_m) -> None:
    admission = await admit(
        request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=200
    )
    record = await finish(
        admission, usage=Usage(100, 12, estimated=True), status="partial", error_code="client_gone"
    )
    assert (record.status, record.error_code) == ("partial", "client_gone")
    assert (record.output_tokens, record.tokens_estimated) == (12, True)
    assert record.cost == Decimal("0.00037")


async def test_failure_before_any_provider_answered_costs_nothing(acme, bob_m) -> None:
    await sync_to_async(limit)(acme, "1")
    admission = await admit(
        request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=200
    )
    record = await settle(
        admission=admission,
        candidate=None,
        usage=None,
        status="error",
        error_code="upstream_unavailable",
        latency_ms=30,
        ttft_ms=None,
    )
    assert (record.cost, record.input_tokens, record.price_source) == (0, 0, Source.NONE)
    row = await SpendingCounter.objects.aget()
    assert (row.spent, row.reserved) == (0, 0)


async def test_unknown_status_is_a_programming_error(bob_m) -> None:
    admission = await admit(
        request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=1
    )
    with pytest.raises(ValueError):
        await finish(admission, status="weird")


# --- prices: frozen, unpriced, free ---------------------------------------------------------


async def test_price_is_frozen_on_the_row_and_later_edits_change_nothing_past(acme, bob_m) -> None:
    await sync_to_async(limit)(acme, "1")
    override = await PriceOverride.objects.acreate(
        organization=acme, provider="openai", model="gpt-4o", input_per_mtok=1000, output_per_mtok=0
    )
    admission = await admit(
        request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=10
    )
    record = await finish(admission)
    assert record.cost == Decimal("0.1") and record.input_price_per_mtok == 1000
    override.input_per_mtok = 9000
    await override.asave()
    await record.arefresh_from_db()
    counter = await SpendingCounter.objects.aget()
    assert (record.cost, record.input_price_per_mtok, counter.spent) == (
        Decimal("0.1"),
        1000,
        Decimal("0.1"),
    )
    # The new price applies from the next call on: 100 x 9000/M = 0.9 fits in the 0.9 left.
    await admit(request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=10)


SIM = candidate(provider="openai", model="sim-gpt")


async def test_unpriced_model_is_blocked_under_a_hard_limit_by_default(acme, bob_m) -> None:
    hard = await sync_to_async(limit)(acme, "100")
    with pytest.raises(AdmissionRefused) as refused:
        await admit(
            request_id=rid(), membership=bob_m, route=route(SIM), messages=HELLO, max_tokens=10
        )
    assert refused.value.code == "budget_exceeded"
    assert refused.value.limit.id == hard.pk
    assert "No price is known for openai/sim-gpt" in refused.value.message


async def test_unpriced_model_passes_without_hard_limits_and_is_recorded_as_unknown(
    acme, bob_m
) -> None:
    await sync_to_async(limit)(acme, "0", hard=False)
    admission = await admit(
        request_id=rid(), membership=bob_m, route=route(SIM), messages=HELLO, max_tokens=10
    )
    record = await finish(admission, cand=SIM)
    assert record.cost is None and record.price_source == Source.UNKNOWN and record.unpriced
    soft = await SpendingCounter.objects.filter(spent__gt=0).aexists()
    assert not soft  # unknown cost charges nothing


async def test_unpriced_model_is_charged_the_default_price_under_that_policy(acme, bob_m) -> None:
    await CostPolicy.objects.acreate(
        organization=acme,
        unpriced_policy="default_price",
        default_input_per_mtok=Decimal(10),
        default_output_per_mtok=Decimal(20),
    )
    await sync_to_async(limit)(acme, "1")
    admission = await admit(
        request_id=rid(), membership=bob_m, route=route(SIM), messages=HELLO, max_tokens=10
    )
    assert admission.reserved == Decimal("0.0012")  # 100 x 10/M + 10 x 20/M
    record = await finish(admission, cand=SIM)
    assert record.price_source == Source.DEFAULT and record.unpriced
    assert record.cost == Decimal("0.002")  # 100 x 10/M + 50 x 20/M
    counter = await SpendingCounter.objects.aget()
    assert (counter.spent, counter.reserved) == (Decimal("0.002"), 0)


@pytest.mark.parametrize("policy", ["block", "default_price"])
async def test_zero_priced_model_is_never_blocked_by_a_budget(acme, bob_m, policy) -> None:
    await CostPolicy.objects.acreate(organization=acme, unpriced_policy=policy)
    await PriceOverride.objects.acreate(
        provider="ollama", model="llama3", input_per_mtok=0, output_per_mtok=0
    )
    await sync_to_async(limit)(acme, "0")  # nothing may be spent at all
    free = candidate(provider="ollama", model="llama3", kind="ollama")
    admission = await admit(
        request_id=rid(), membership=bob_m, route=route(free), messages=HELLO, max_tokens=10_000
    )
    assert admission.reserved == 0
    record = await finish(admission, cand=free)
    assert record.cost == 0 and record.price_source == Source.PLATFORM


# --- the hot path ---------------------------------------------------------------------------


def _count_queries(membership, the_route) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        admissions.admit_sync(rid(), membership, the_route, 10, 10)
    return [q["sql"] for q in captured.captured_queries]


@pytest.mark.django_db
def test_admit_costs_no_query_for_an_organisation_without_limits(bob_membership) -> None:
    membership = Membership.objects.select_related("organization").get(pk=bob_membership.pk)
    _count_queries(membership, route())  # the first call reads the organisation's snapshot
    assert _count_queries(membership, route()) == []


@pytest.mark.django_db
@pytest.mark.parametrize("member_limit", [False, True], ids=["one hard limit", "two"])
def test_admit_with_hard_limits_is_one_statement_on_postgresql(
    acme, bob_membership, member_limit
) -> None:
    membership = Membership.objects.select_related("organization").get(pk=bob_membership.pk)
    held = [limit(acme, "10")]
    if member_limit:
        held.append(limit(acme, "10", scope="member", membership=membership))
    _count_queries(membership, route())  # first use creates the period's counters
    queries = _count_queries(membership, route())
    statements = [q.split()[0] for q in queries if not q.startswith(("SAVEPOINT", "RELEASE"))]
    # limits, policy and prices come from the snapshot
    if connection.vendor == "postgresql":
        assert statements == ["WITH"]  # the counters locked, checked and updated, and the INSERT
    else:
        assert statements == ["UPDATE"] * len(held) + ["INSERT"]
    for each in held:
        counter = SpendingCounter.objects.get(limit=each)
        assert counter.reserved > 0
        assert Reservation.objects.filter(counter=counter).count() == 2


# --- rate limits and the counter store ------------------------------------------------------


@pytest.fixture
def fresh_prefix(settings) -> None:
    settings.GATEHOUSE_RATELIMIT_PREFIX = f"t:{uuid.uuid4().hex}"


async def test_requests_per_minute_of_a_member_refuse_with_retry_after(
    acme, bob_m, fresh_prefix
) -> None:
    await CostPolicy.objects.acreate(organization=acme, member_requests_per_minute=2)
    for _ in range(2):
        await admit(request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=1)
    with pytest.raises(AdmissionRefused) as refused:
        await admit(request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=1)
    exc = refused.value
    assert (exc.code, exc.status_code) == ("rate_limited", 429)
    assert 1 <= int(exc.headers["Retry-After"]) <= 60
    assert "2 requests per minute" in exc.message


async def test_tokens_per_minute_are_given_back_at_settlement(acme, bob_m, fresh_prefix) -> None:
    # 100 input + 300 max tokens are counted at admission; only 150 are used.
    await CostPolicy.objects.acreate(organization=acme, org_tokens_per_minute=1000)
    first = await admit(
        request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=300
    )
    await admit(request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=300)
    with pytest.raises(AdmissionRefused):
        await admit(
            request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=300
        )
    await finish(first)  # gives back 250: 550 + 400 fits in 1000
    await admit(request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=300)


async def test_a_rate_limited_call_settles_on_the_event_loop_and_gives_tokens_back(
    acme, bob_m, fresh_prefix, db_path
) -> None:
    await CostPolicy.objects.acreate(organization=acme, org_tokens_per_minute=1000)
    await sync_to_async(limit)(acme, "10")
    await sync_to_async(limit)(acme, "10", scope="member", membership_id=bob_m.pk)
    first = await admit(
        request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=300
    )
    await admit(request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=300)
    record = await admissions.settle_on_loop(
        first, candidate(), USED, status="ok", error_code="", latency_ms=1, ttft_ms=1
    )
    if db_path == "event loop":  # the ledger row and both limits in one statement, then Redis
        assert record is not None and record.cost == Decimal("0.00075")
    else:
        assert record is None
        await finish(first)
    # 250 of the 400 tokens counted came back: 550 + 400 fits in 1000.
    await admit(request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=300)
    # Each limit: the settled call's cost spent, the two calls still open reserved (0.00325 each).
    counters = [(c.spent, c.reserved) async for c in SpendingCounter.objects.all()]
    assert counters == [(Decimal("0.00075"), Decimal("0.0065"))] * 2


async def test_budget_refusal_gives_back_the_rate_limit_tokens(acme, bob_m, fresh_prefix) -> None:
    await CostPolicy.objects.acreate(organization=acme, org_tokens_per_minute=600)
    await sync_to_async(limit)(acme, "0")
    for _ in range(3):
        with pytest.raises(AdmissionRefused) as refused:
            await admit(
                request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=400
            )
        assert refused.value.code == "budget_exceeded"


async def test_one_organisation_never_uses_anothers_allowance(
    acme, other, bob_m, fresh_prefix
) -> None:
    charlie_m = await Membership.objects.select_related("organization").aget(organization=other)
    for org in (acme, other):
        await CostPolicy.objects.acreate(organization=org, org_requests_per_minute=1)
    await admit(request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=1)
    await admit(request_id=rid(), membership=charlie_m, route=route(), messages=HELLO, max_tokens=1)


@pytest.fixture
def dead_redis(settings, fresh_prefix) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1


async def test_unreachable_redis_fails_closed(acme, bob_m, dead_redis) -> None:
    await CostPolicy.objects.acreate(organization=acme, org_requests_per_minute=100)
    with pytest.raises(AdmissionRefused) as refused:
        await admit(request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=1)
    assert (refused.value.code, refused.value.status_code) == ("service_unavailable", 503)


async def test_unreachable_redis_can_be_configured_to_fail_open(
    acme, bob_m, dead_redis, settings
) -> None:
    settings.GATEHOUSE_RATELIMIT_FAIL_OPEN = True
    await CostPolicy.objects.acreate(organization=acme, org_requests_per_minute=100)
    admission = await admit(
        request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=1
    )
    await finish(admission)  # the refund is best effort and does not fail either


async def test_unreachable_redis_does_not_matter_without_rate_limits(bob_m, dead_redis) -> None:
    await admit(request_id=rid(), membership=bob_m, route=route(), messages=HELLO, max_tokens=1)
