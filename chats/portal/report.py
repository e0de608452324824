"""The organisation's usage report: totals, spend per day (the chart), per member, per model —
read from the ledger in the organisation's time zone."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDate

from accounts.models import Organization
from chats.portal.budget import usd
from providers.models import UsageRecord

ZERO = Decimal(0)
CHART_WIDTH = 720
CHART_HEIGHT = 200
CHART_PAD = 28  # room for the axis labels


@dataclass(frozen=True)
class Bar:
    day: date
    cost: Decimal
    calls: int
    x: float
    y: float
    width: float
    height: float
    labelled: bool = False

    @property
    def label(self) -> str:
        return f"{self.day:%d %b}: ${usd(self.cost)} in {self.calls} calls"


@dataclass
class Report:
    start: date
    end: date  # inclusive
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = ZERO
    bars: list[Bar] = field(default_factory=list)
    peak: Decimal = ZERO
    by_member: list[dict[str, Any]] = field(default_factory=list)
    by_model: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cost_text(self) -> str:
        return usd(self.cost)

    @property
    def peak_text(self) -> str:
        return usd(self.peak)

    @property
    def chart(self) -> dict[str, int]:
        return {"width": CHART_WIDTH, "height": CHART_HEIGHT, "pad": CHART_PAD}


def ledger_rows(*, organization: Organization, start: date, end: date) -> QuerySet[UsageRecord]:
    """The ledger rows of calls made from `start` to `end` (inclusive, local days)."""
    tz = organization.tzinfo
    since = datetime.combine(start, time(0), tzinfo=tz)
    until = datetime.combine(end + timedelta(days=1), time(0), tzinfo=tz)
    return UsageRecord.objects.for_organization(organization).filter(
        created_at__gte=since, created_at__lt=until
    )


_SUMS = {
    "calls": Count("id"),
    "input": Sum("input_tokens"),
    "output": Sum("output_tokens"),
    "cost": Sum("cost"),
}


def _grouped(rows: QuerySet[UsageRecord], *keys: str) -> list[dict[str, Any]]:
    grouped = rows.values(*keys).annotate(**_SUMS).order_by("-cost", *keys)
    return [
        {**row, "cost": row["cost"] or ZERO, "cost_text": usd(row["cost"] or ZERO)}
        for row in grouped
    ]


def _bars(per_day: dict[date, tuple[Decimal, int]], start: date, end: date) -> list[Bar]:
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    peak = max((cost for cost, _ in per_day.values()), default=ZERO) or Decimal(1)
    slot = (CHART_WIDTH - CHART_PAD) / len(days)
    usable = CHART_HEIGHT - CHART_PAD
    bars = []
    # A date under the first bar, the last, and every seventh between that leaves them room.
    labelled = {0, len(days) - 1} | {i for i in range(7, len(days) - 3, 7)}
    for index, day in enumerate(days):
        cost, calls = per_day.get(day, (ZERO, 0))
        height = float(cost / peak) * usable
        bars.append(
            Bar(
                day=day,
                cost=cost,
                calls=calls,
                x=round(CHART_PAD + index * slot + slot * 0.1, 2),
                y=round(usable - height, 2),
                width=round(slot * 0.8, 2),
                height=round(height, 2),
                labelled=index in labelled,
            )
        )
    return bars


def usage_report(*, organization: Organization, start: date, end: date) -> Report:
    rows = ledger_rows(organization=organization, start=start, end=end)
    report = Report(start=start, end=end)
    totals = rows.aggregate(**_SUMS)
    report.calls = totals["calls"] or 0
    report.input_tokens = totals["input"] or 0
    report.output_tokens = totals["output"] or 0
    report.cost = totals["cost"] or ZERO
    daily = rows.annotate(day=TruncDate("created_at", tzinfo=organization.tzinfo))
    per_day = {
        row["day"]: (row["cost"] or ZERO, row["calls"])
        for row in daily.values("day").annotate(**_SUMS).order_by("day")
    }
    report.bars = _bars(per_day, start, end)
    report.peak = max((cost for cost, _ in per_day.values()), default=ZERO)
    report.by_member = _grouped(rows, "user__email")
    report.by_model = _grouped(rows, "provider", "model")
    return report
