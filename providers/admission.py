"""Admission and settlement of provider calls — the one gate every entry point goes through.

    admission = await admit(request_id=rid, membership=m, route=r, messages=ms, max_tokens=n)
    try:
        ... call the provider ...
    finally:
        await settle(admission=admission, candidate=..., usage=..., status=..., ...)
    # or, when no provider call happened after all:
        await release(admission=admission)

`admit` refuses with `AdmissionRefused` before any provider call:

1. rate limits (`providers.ratelimit`): requests and tokens per minute of the organisation, the
   member and the route's primary credential — one Redis round trip, and none when the
   organisation has no rate limits. Counter store down: `service_unavailable` (HTTP 503),
   unless `GATEHOUSE_RATELIMIT_FAIL_OPEN`.
2. budget (`providers.budget`): the worst-case cost (estimated input tokens times the input
   price plus `max_tokens` times the output price, for the dearest candidate) is reserved on
   every hard limit in scope — the organisation's, the member's, each candidate credential's —
   in one transaction, all or nothing: `budget_exceeded` (HTTP 402) names the limit that
   refused and when it resets. A call whose worst case costs nothing (a zero price) is never
   refused by a budget. A model without a known price, under a hard limit: refused when the
   organisation's `CostPolicy.unpriced_policy` is `block` (the default), else reserved and
   charged at the policy's default price.

`settle` writes the ledger row (real tokens, the price used frozen on it, the cost — null when
unknown) and, in the same transaction, swaps the reservations for the real cost on every
limit in scope (the answering credential's, not the other candidates'), fires alert
thresholds, and gives back unused rate-limit tokens. Exactly once per request id: a second
call returns the first row and moves nothing.

Limits, policy and prices come from the organisation's snapshot (`providers.snapshot`): no
query reads them. On PostgreSQL, `admit` and `settle` each cost one statement on the event
loop's own connection (`config.apg`), however many limits apply: the reservation on every hard
limit, all or nothing; the ledger row with every counter's move. Rate limits are counted in
Redis: their admission takes one hop to a worker thread (`config.dbhop`), and their settlement
gives unused tokens back in one hop after its statement. SQLite, a missing counter row and a
refusal take the thread path too, where the same work is a short transaction; so does
`release`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import psycopg
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status as http

from accounts.models import Membership
from config import apg
from config.db import insert_row, insert_statement, inserted
from config.dbhop import db_hop
from config.errors import ApiError
from providers import budget, ratelimit
from providers.adapters.base import ChatTurn, Usage, estimate_tokens
from providers.alerts import alerts_check, alerts_due
from providers.budget import BudgetExceeded, LimitRef, money
from providers.models import CostPolicy, PriceOverride, SpendingLimit, UsageRecord
from providers.prices import Price, cost, price_for, prices_for, worst_case_cost
from providers.snapshot import Policy, Snapshot, current, snapshot

if TYPE_CHECKING:
    from providers.calls import Candidate
    from providers.routing import Route

ZERO = Decimal(0)
Scope = SpendingLimit.Scope
Unpriced = CostPolicy.Unpriced
Source = UsageRecord.PriceSource


class AdmissionRefused(ApiError):
    """A call refused before reaching a provider. `code`: `budget_exceeded` (402),
    `rate_limited` (429, with Retry-After) or `service_unavailable` (503)."""

    STATUS = {
        "budget_exceeded": http.HTTP_402_PAYMENT_REQUIRED,
        "rate_limited": http.HTTP_429_TOO_MANY_REQUESTS,
        "service_unavailable": http.HTTP_503_SERVICE_UNAVAILABLE,
    }

    def __init__(
        self,
        code: str,
        message: str,
        retry_after: float | None = None,
        limit: LimitRef | None = None,
        resets_at: datetime | None = None,
    ) -> None:
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        if limit is not None:
            headers["X-Gatehouse-Limit"] = str(limit.id)
        if resets_at is not None:
            headers["X-Gatehouse-Limit-Reset"] = resets_at.isoformat()
        super().__init__(code, message, status_code=self.STATUS.get(code, 400), headers=headers)
        self.retry_after = retry_after
        self.limit = limit
        self.resets_at = resets_at

    def as_dict(self) -> dict[str, Any]:
        """The refusal for a WebSocket error frame or a log line."""
        limit = self.limit
        return {
            "code": self.code,
            "message": self.message,
            "retry_after": self.retry_after,
            "limit": None
            if limit is None
            else {
                "id": limit.id,
                "name": limit.name,
                "scope": limit.scope,
                "period": limit.period,
                "amount": str(limit.amount),
            },
            "resets_at": self.resets_at.isoformat() if self.resets_at else None,
        }


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted call: what `settle` and `release` need to finish it."""

    request_id: str
    organization_id: int
    membership_id: int
    user_id: int
    provider: str
    model: str
    timezone: str
    reserved: Decimal
    limits: tuple[LimitRef, ...]
    policy: Policy
    overrides: tuple[PriceOverride, ...]
    ticket: ratelimit.Ticket | None
    input_tokens: int
    max_tokens: int
    admitted_at: datetime


# --- the configuration that applies ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    """What admission and settlement read of the organisation: its snapshot's, no query."""

    policy: Policy
    limits: tuple[LimitRef, ...]
    overrides: tuple[PriceOverride, ...]

    @property
    def hard(self) -> list[LimitRef]:
        """The limits that refuse calls (and so hold reservations)."""
        return [limit for limit in self.limits if limit.hard]


def _config(snap: Snapshot, membership: Membership, route: Route) -> Config:
    return Config(snap.policy, snap.limits_for(membership, _credential_ids(route)), snap.overrides)


# --- admit ----------------------------------------------------------------------------------


def _kind(candidate: Candidate) -> str:
    """The credential kind prices are looked up under; platform credentials are named after
    their kind."""
    endpoint = getattr(candidate, "endpoint", None)
    return getattr(endpoint, "kind", None) or candidate.provider


def _credential_ids(route: Route) -> list[int]:
    return list(dict.fromkeys(c.credential_id for c in route.candidates if c.credential_id))


def _buckets(membership: Membership, route: Route, policy: Policy) -> list[ratelimit.Bucket]:
    buckets = [
        ratelimit.Bucket(
            f"org:{membership.organization_id}", "the organisation", policy.org_rpm, policy.org_tpm
        ),
        ratelimit.Bucket(f"member:{membership.pk}", "you", policy.member_rpm, policy.member_tpm),
    ]
    primary = route.candidates[0].credential_id if route.candidates else None
    rates = policy.credential_rates.get(str(primary)) if primary else None
    if rates:
        buckets.append(
            ratelimit.Bucket(
                f"cred:{primary}",
                "the provider credential",
                rates.get("requests_per_minute"),
                rates.get("tokens_per_minute"),
            )
        )
    return buckets


def _fail_open() -> bool:
    return bool(getattr(settings, "GATEHOUSE_RATELIMIT_FAIL_OPEN", False))


def _rate_limit(
    membership: Membership, route: Route, policy: Policy, tokens: int
) -> ratelimit.Ticket | None:
    try:
        return ratelimit.hit(buckets=_buckets(membership, route, policy), tokens=tokens)
    except ratelimit.RateLimited as exc:
        raise AdmissionRefused(
            "rate_limited",
            f"Rate limit reached: {exc.bucket.label} may use {exc.limit} {exc.measure} per "
            f"minute. Try again in {exc.retry_after} s.",
            retry_after=exc.retry_after,
        ) from None
    except ratelimit.RateLimiterUnavailable:
        if _fail_open():
            return None
        raise AdmissionRefused(
            "service_unavailable",
            "Usage limits cannot be checked right now, so no new calls are accepted. "
            "Try again shortly.",
            retry_after=5,
        ) from None


def _worst_case(
    membership: Membership,
    route: Route,
    config: Config,
    hard: Sequence[LimitRef],
    tokens: tuple[int, int],
) -> Decimal:
    """The dearest candidate's worst-case cost, or a refusal when a candidate has no price and
    the policy blocks unpriced models."""
    kinds = {_kind(c) for c in route.candidates} or {route.provider}
    prices = prices_for(
        organization_id=membership.organization_id,
        provider=route.provider,
        kinds=kinds,
        model=route.model,
        overrides=config.overrides,
    )
    costs = []
    for price in prices.values():
        price = price or config.policy.fallback_price()
        if price is None:
            raise AdmissionRefused(
                "budget_exceeded",
                f"No price is known for {route.provider}/{route.model}, and this organisation "
                f"does not allow unpriced models while {hard[0].describe()} applies. An admin "
                "can set a price for it, or charge unpriced models at a default price.",
                limit=hard[0],
            )
        costs.append(worst_case_cost(price=price, input_tokens=tokens[0], max_tokens=tokens[1]))
    return max(costs, default=ZERO)


def _refused(exc: BudgetExceeded, tz: str) -> AdmissionRefused:
    limit, end = exc.slot.limit, exc.slot.end
    when = (
        f" It resets at {timezone.localtime(end, timezone=ZoneInfo(tz)):%Y-%m-%d %H:%M} ({tz})."
        if end
        else " It does not reset."
    )
    return AdmissionRefused(
        "budget_exceeded",
        f"Budget exceeded: {limit.describe()} has no room for this request "
        f"(up to {money(exc.needed)} USD).{when}",
        limit=limit,
        resets_at=end,
    )


def _hold_budget(
    request_id: str,
    membership: Membership,
    route: Route,
    config: Config,
    tokens: tuple[int, int],
    now: datetime,
) -> Decimal:
    """Reserve the call's worst case on every hard limit in scope; the amount reserved."""
    hard = config.hard
    if not hard:
        return ZERO
    amount = _worst_case(membership, route, config, hard, tokens)
    tz = membership.organization.timezone
    slots, expires = _holding(hard, now, tz)
    try:
        budget.reserve(request_id=request_id, slots=slots, amount=amount, expires_at=expires)
    except BudgetExceeded as exc:
        raise _refused(exc, tz) from None
    return amount


def _holding(
    hard: Sequence[LimitRef], now: datetime, tz: str
) -> tuple[list[budget.Slot], datetime]:
    """The periods a reservation made `now` holds, and when it may be swept."""
    return budget.slots_for(hard, now=now, tz=tz), now + timedelta(seconds=budget.reservation_ttl())


def _admission(
    request_id: str,
    membership: Membership,
    route: Route,
    config: Config,
    tokens: tuple[int, int],
    now: datetime,
    reserved: Decimal = ZERO,
    ticket: ratelimit.Ticket | None = None,
) -> Admission:
    return Admission(
        request_id=request_id,
        organization_id=membership.organization_id,
        membership_id=membership.pk,
        user_id=membership.user_id,
        provider=route.provider,
        model=route.model,
        timezone=membership.organization.timezone,
        reserved=reserved,
        limits=config.limits,
        policy=config.policy,
        overrides=config.overrides,
        ticket=ticket,
        input_tokens=tokens[0],
        max_tokens=tokens[1],
        admitted_at=now,
    )


def admit_sync(
    request_id: str, membership: Membership, route: Route, input_tokens: int, max_tokens: int
) -> Admission:
    """`admit` for code already in a thread with a database connection (a hop that does more
    database work: one hop, not two)."""
    now = timezone.now()
    config = _config(snapshot(membership.organization), membership, route)
    tokens = input_tokens + max_tokens
    ticket = _rate_limit(membership, route, config.policy, tokens)
    try:
        reserved = _hold_budget(
            request_id, membership, route, config, (input_tokens, max_tokens), now
        )
    except AdmissionRefused:
        # No tokens will be used: give them back (the request itself still counts).
        ratelimit.refund(ticket=ticket, tokens=tokens, marker=request_id)
        raise
    return _admission(
        request_id, membership, route, config, (input_tokens, max_tokens), now, reserved, ticket
    )


def estimate_input_tokens(messages: Iterable[ChatTurn]) -> int:
    """Input tokens of a call before the provider counts them (see `estimate_tokens`)."""
    return sum(estimate_tokens(message["content"]) for message in messages)


async def admit(
    *,
    request_id: str,
    membership: Membership,
    route: Route,
    messages: list[ChatTurn],
    max_tokens: int,
    input_tokens: int | None = None,
) -> Admission:
    """Admit a call or raise `AdmissionRefused`; see the module docstring. On the event loop
    where that is possible (`admit_on_loop`), else in one thread hop. `input_tokens`: the
    messages' `estimate_input_tokens`, when the caller has counted it already."""
    if input_tokens is None:
        input_tokens = estimate_input_tokens(messages)
    tokens = (input_tokens, max_tokens)
    admitted = await admit_on_loop(request_id, membership, route, tokens)
    if admitted is not None:
        return admitted
    return await db_hop(admit_sync, request_id, membership, route, *tokens)


async def admit_on_loop(
    request_id: str, membership: Membership, route: Route, tokens: tuple[int, int]
) -> Admission | None:
    """Admission without a thread hop: the organisation's snapshot is current, no rate limit
    applies (those are counted in Redis by `admit_sync`), and no hard limit does — or some do,
    the database is PostgreSQL and the reservation fits their existing counters: one statement on
    the event loop's own connection (`config.apg`), however many limits. None otherwise, with
    nothing reserved or counted:
    `admit_sync` decides, and refuses, so a call is never refused here (which is also what lets a
    caller try it before it knows the call may go ahead: `chats.services.begin.speculate`)."""
    # Only with the organisation loaded: reading it here would be a query on the event loop.
    if not Membership.organization.is_cached(membership):
        return None
    snap = current(membership.organization)
    if snap is None:
        return None
    config = _config(snap, membership, route)
    hard = config.hard
    if config.policy.has_rate_limits or (hard and not apg.enabled()):
        return None
    now = timezone.now()
    reserved = ZERO
    if hard:
        try:
            reserved = _worst_case(membership, route, config, hard, tokens)
        except AdmissionRefused:
            return None  # unpriced: `admit_sync` refuses, in its own words
        if reserved > 0:
            slots, expires = _holding(hard, now, membership.organization.timezone)
            held = await budget.areserve(
                request_id=request_id, slots=slots, amount=reserved, expires_at=expires
            )
            if not held:
                return None
    return _admission(request_id, membership, route, config, tokens, now, reserved)


# --- settle ---------------------------------------------------------------------------------


def _priced(
    admission: Admission, candidate: Candidate | None, usage: Usage | None
) -> tuple[Price | None, Decimal | None]:
    if usage is None or usage.input_tokens + usage.output_tokens == 0:
        return None, ZERO
    price = price_for(
        organization_id=admission.organization_id,
        provider=candidate.provider if candidate else admission.provider,
        kind=_kind(candidate) if candidate else admission.provider,
        model=candidate.model if candidate else admission.model,
        input_tokens=usage.input_tokens,
        overrides=admission.overrides,
    )
    price = price or admission.policy.fallback_price()
    return price, cost(usage=usage, price=price)


def _charged_limits(admission: Admission, candidate: Candidate | None) -> list[LimitRef]:
    credential_id = candidate.credential_id if candidate else None
    return [
        limit
        for limit in admission.limits
        if limit.scope != Scope.CREDENTIAL or limit.credential_id == credential_id
    ]


def _record(
    admission: Admission,
    candidate: Candidate | None,
    usage: Usage | None,
    price: Price | None,
    cost_value: Decimal | None,
    **fields: Any,
) -> UsageRecord:
    if price is not None:
        source = price.source
    else:
        source = Source.NONE if cost_value == ZERO else Source.UNKNOWN
    return UsageRecord(
        request_id=admission.request_id,
        organization_id=admission.organization_id,
        user_id=admission.user_id,
        credential_id=candidate.credential_id if candidate else None,
        provider=candidate.provider if candidate else admission.provider,
        model=candidate.model if candidate else admission.model,
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        tokens_estimated=bool(usage and usage.estimated),
        cost=cost_value,
        input_price_per_mtok=price.input_per_mtok if price else None,
        output_price_per_mtok=price.output_per_mtok if price else None,
        price_source=source,
        reserved=admission.reserved,
        **fields,
    )


def _settlement(
    admission: Admission, candidate: Candidate | None, usage: Usage | None, fields: dict[str, Any]
) -> tuple[UsageRecord, list[budget.Slot], Decimal | None]:
    """The ledger row to write (unsaved), the limit periods to charge, and the cost."""
    if fields["status"] not in UsageRecord.Status.values:
        raise ValueError(f"Unknown usage status {fields['status']!r}.")
    price, cost_value = _priced(admission, candidate, usage)
    record = _record(admission, candidate, usage, price, cost_value, **fields)
    slots = budget.slots_for(
        _charged_limits(admission, candidate), now=record.created_at, tz=admission.timezone
    )
    return record, slots, cost_value


def settle_sync(
    admission: Admission, candidate: Candidate | None, usage: Usage | None, **fields: Any
) -> UsageRecord:
    """`settle` for code already in a thread with a database connection."""
    record, slots, cost_value = _settlement(admission, candidate, usage, fields)
    try:
        if admission.limits:
            with transaction.atomic():
                insert_row(record)  # first: a duplicate stops here, before counters
                charged = budget.settle(
                    request_id=admission.request_id, slots=slots, cost=cost_value
                )
                alerts_check(organization_id=admission.organization_id, charged=charged)
        else:
            # No limit applied at admission: no reservation or counter to move (the common
            # case for organisations without budgets), so the ledger row is all there is —
            # one INSERT, no transaction around it.
            insert_row(record)
    except IntegrityError:
        existing = UsageRecord.objects.filter(request_id=admission.request_id).first()
        if existing is None:
            raise
        return existing
    _refund_unused(admission, usage)
    return record


def _refund_unused(admission: Admission, usage: Usage | None) -> None:
    """Give the rate-limit tokens the call did not use back to its allowance (Redis)."""
    used = (usage.input_tokens + usage.output_tokens) if usage else 0
    unused = admission.input_tokens + admission.max_tokens - used
    ratelimit.refund(ticket=admission.ticket, tokens=unused, marker=admission.request_id)


#: statements of the caller committed with the ledger row, naming its id as `budget.LEDGER_ID`
Also = Callable[[budget.Expression], Sequence[tuple[str, Sequence[Any]]]]


async def settle_on_loop(
    admission: Admission,
    candidate: Candidate | None,
    usage: Usage | None,
    *,
    also: Also | None = None,
    **fields: Any,
) -> UsageRecord | None:
    """`settle_sync` on the event loop (`config.apg`, PostgreSQL), with `also` — statements of
    the caller, such as the final state of a chat answer — in the same statement: one round
    trip, however many limits apply (`budget.settle_statement`); rate-limit tokens to give back
    (they live in Redis) go back after it, in one hop to a thread. None, with nothing written,
    where it cannot: no such connection, a ledger row already there, a limit deleted meanwhile.
    The caller then settles with `settle_sync`, which handles each of those."""
    if not apg.enabled():
        return None
    record, slots, cost_value = _settlement(admission, candidate, usage, fields)
    cost = cost_value or ZERO
    sql, values = insert_statement(record)
    try:
        if not admission.limits and also is None:
            # No limit applied at admission: the ledger row is all there is.
            record_id, charged = (await apg.fetchone(sql, values))[0], []
        else:
            statement = budget.settle_statement(
                insert=sql,
                values=values,
                request_id=admission.request_id,
                slots=slots,
                held=_held(admission),
                cost=cost,
                also=also(budget.LEDGER_ID) if also else (),
            )
            rows = await apg.fetchall(*statement)
            record_id, charged = budget.settled(rows, slots, cost)
    except (psycopg.IntegrityError, psycopg.errors.DeadlockDetected):
        # Rolled back whole (a statement is its own transaction): the sync path finds the
        # existing row, skips a deleted limit, or simply runs again.
        return None
    inserted(record, record_id)
    due = any(alerts_due(counter) for counter in charged)
    if due or admission.ticket is not None:
        # Alerts are claimed once per threshold by a conditional UPDATE, so firing them after
        # the commit is as exact as inside it; a crash in between leaves the threshold
        # unclaimed, and the next settlement fires it. The refund is once per request id too.
        await db_hop(_after_settlement, admission, usage, charged if due else [])
    return record


def _held(admission: Admission) -> list[budget.Slot]:
    """The periods the admission reserved on (as `_hold_budget` computed them), if it did."""
    if admission.reserved <= 0:
        return []
    hard = [limit for limit in admission.limits if limit.hard]
    return _holding(hard, admission.admitted_at, admission.timezone)[0]


def _after_settlement(
    admission: Admission, usage: Usage | None, charged: list[budget.Charged]
) -> None:
    if charged:
        with transaction.atomic():
            alerts_check(organization_id=admission.organization_id, charged=charged)
    _refund_unused(admission, usage)


async def settle(
    *,
    admission: Admission,
    candidate: Candidate | None,
    usage: Usage | None,
    status: str,
    error_code: str = "",
    latency_ms: int | None,
    ttft_ms: int | None,
    chat_id: int | None = None,
) -> UsageRecord:
    """Record the call and swap its reservation for the real cost; see the module docstring.
    `usage` is what the provider reported (or the adapter estimated) — for a partial stream,
    the tokens actually used; None when no provider answered. On the event loop where that is
    possible (`settle_on_loop`), else in one thread hop."""
    fields = {
        "status": status,
        "error_code": error_code,
        "latency_ms": latency_ms,
        "ttft_ms": ttft_ms,
        "chat_id": chat_id,
    }
    record = await settle_on_loop(admission, candidate, usage, **fields)
    if record is not None:
        return record
    return await db_hop(settle_sync, admission, candidate, usage, **fields)


# --- release --------------------------------------------------------------------------------


def release_sync(admission: Admission) -> None:
    """`release` for code already in a thread with a database connection."""
    budget.release(request_id=admission.request_id)
    ratelimit.refund(
        ticket=admission.ticket,
        tokens=admission.input_tokens + admission.max_tokens,
        marker=admission.request_id,
    )


async def release(*, admission: Admission) -> None:
    """Give back the reservation (and the rate-limit tokens) of a call that never reached a
    provider. Idempotent; a no-op after `settle`."""
    await db_hop(release_sync, admission)
