"""Reads for "cost in sight": each answer's tokens and cost, and the member's remaining budget."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from django.utils import timezone

from accounts.models import Membership
from providers.budget import LimitRef, counters_for, slots_for
from providers.models import SpendingLimit, UsageRecord

ZERO = Decimal(0)
CENT = Decimal("0.01")


def usd(value: Decimal, rounding: str = ROUND_HALF_UP) -> str:
    """Money for people: cents from a dollar up; below that, two significant digits, so a
    thousandth of a cent still shows instead of a misleading zero. What is left of a budget is
    rounded down (`ROUND_DOWN`): never promise money that is not there."""
    if value == 0:
        return "0.00"
    places = 2 if abs(value) >= 1 else max(2, min(-value.adjusted() + 1, 8))
    text = f"{value.quantize(Decimal(1).scaleb(-places), rounding=rounding):f}"
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.rstrip('0').ljust(2, '0')}"


@dataclass(frozen=True)
class BudgetLine:
    """One spending limit that applies to the member, in its current period."""

    label: str
    period: str
    hard: bool
    amount: Decimal
    used: Decimal  # spent plus what calls in flight have reserved
    resets_at: datetime | None

    @property
    def remaining(self) -> Decimal:
        return max(self.amount - self.used, ZERO)

    @property
    def percent_used(self) -> int:
        if self.amount <= 0:
            return 100
        return min(100, round(self.used / self.amount * 100))

    @property
    def remaining_text(self) -> str:
        return usd(self.remaining, ROUND_DOWN)

    @property
    def amount_text(self) -> str:
        return usd(self.amount)


def _label(limit: SpendingLimit) -> str:
    owner = {
        SpendingLimit.Scope.ORGANIZATION: "Organisation",
        SpendingLimit.Scope.MEMBER: "You",
        SpendingLimit.Scope.CREDENTIAL: f"Key {limit.credential.name}"
        if limit.credential
        else "Key",
    }[limit.scope]
    return f"{owner}: {limit.name}" if limit.name else owner


def budget_lines(*, membership: Membership) -> list[BudgetLine]:
    """The limits a call of this member is held to (the organisation's, the member's own, every
    credential's), with what is left of each in the period running now."""
    limits = list(SpendingLimit.objects.for_member(membership).select_related("credential"))
    slots = slots_for(
        [LimitRef.of(limit) for limit in limits],
        now=timezone.now(),
        tz=membership.organization.timezone,
    )
    counters = counters_for(slots)
    by_id = {limit.pk: limit for limit in limits}
    lines = []
    for slot in slots:
        counter = counters.get(slot.key)
        used = (counter.spent + counter.reserved) if counter else ZERO
        limit = by_id[slot.limit.id]
        lines.append(
            BudgetLine(
                label=_label(limit),
                period=limit.get_period_display(),
                hard=limit.hard,
                amount=limit.amount,
                used=used,
                resets_at=slot.end,
            )
        )
    return sorted(lines, key=lambda line: (not line.hard, line.remaining))


@dataclass(frozen=True)
class AnswerCost:
    input_tokens: int
    output_tokens: int
    estimated: bool
    cost: Decimal | None

    @property
    def cost_text(self) -> str:
        return "price unknown" if self.cost is None else f"${usd(self.cost)}"


def answer_costs(*, membership: Membership, request_ids: Iterable[str]) -> dict[str, AnswerCost]:
    """The ledger's word on each answer (keyed by the call's request id), for the member's own
    calls only."""
    ids = [rid for rid in request_ids if rid]
    if not ids:
        return {}
    rows = UsageRecord.objects.for_member(membership).filter(request_id__in=ids)
    return {
        row.request_id: AnswerCost(
            row.input_tokens, row.output_tokens, row.tokens_estimated, row.cost
        )
        for row in rows.only(
            "request_id", "input_tokens", "output_tokens", "tokens_estimated", "cost"
        )
    }
