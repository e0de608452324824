"""Reads of the usage ledger shared by the usage API, the portal's report and the staff report:
filters, SQL aggregations (totals and groups) and the CSV export of exactly the filtered rows."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import Membership, Organization, User
from providers.models import UsageRecord

GROUPS = ("day", "member", "provider", "model")
STAFF_GROUPS = ("organization", *GROUPS)
UNPRICED = Q(price_source__in=[UsageRecord.PriceSource.UNKNOWN, UsageRecord.PriceSource.DEFAULT])


def usage_visible_to(membership: Membership) -> QuerySet[UsageRecord]:
    """Admins see the organisation's ledger, members their own rows."""
    if membership.is_admin:
        return UsageRecord.objects.for_organization(membership.organization)
    return UsageRecord.objects.for_member(membership)


def _bound(value: date | datetime, organization: Organization | None, *, end: bool) -> datetime:
    tzinfo = organization.tzinfo if organization is not None else UTC
    if isinstance(value, datetime):
        return value if timezone.is_aware(value) else value.replace(tzinfo=tzinfo)
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time(0), tzinfo=tzinfo)


def usage_filter(
    rows: QuerySet[UsageRecord], *, organization: Organization | None, params: dict[str, Any]
) -> QuerySet[UsageRecord]:
    if "from" in params:
        rows = rows.filter(created_at__gte=_bound(params["from"], organization, end=False))
    if "to" in params:
        rows = rows.filter(created_at__lt=_bound(params["to"], organization, end=True))
    if "member" in params:
        rows = rows.filter(user_id=params["member"])
    for name in ("provider", "model", "status"):
        if name in params:
            rows = rows.filter(**{name: params[name]})
    return rows


# Aliases differ from the model's field names (Django refuses an annotation named "cost").
_TOTALS = {
    "total_requests": Count("id"),
    "total_input_tokens": Sum("input_tokens"),
    "total_output_tokens": Sum("output_tokens"),
    "total_cost": Sum("cost"),
    "total_unpriced_requests": Count("id", filter=UNPRICED),
    "total_estimated_requests": Count("id", filter=Q(tokens_estimated=True)),
    "total_error_requests": Count("id", filter=Q(status=UsageRecord.Status.ERROR)),
}


def _with_zeroes(totals: dict[str, Any]) -> dict[str, Any]:
    """`total_cost: None` → `cost: 0`: the public names, and no nulls for empty sums."""
    return {
        key.removeprefix("total_"): (0 if totals[key] is None else totals[key]) for key in _TOTALS
    }


def usage_totals(rows: QuerySet[UsageRecord]) -> dict[str, Any]:
    return _with_zeroes(rows.aggregate(**_TOTALS))


def usage_groups(
    rows: QuerySet[UsageRecord], *, keys: list[str], organization: Organization | None
) -> list[dict[str, Any]]:
    """One SQL GROUP BY over the filtered rows, on ids only (no join per row); the labels of
    the groups are looked up afterwards. Days are the organisation's local days (UTC days for
    the staff's cross-organisation report)."""
    columns: list[str] = []
    if "organization" in keys:
        columns.append("organization_id")
    if "day" in keys:
        tzinfo = organization.tzinfo if organization is not None else UTC
        rows = rows.annotate(day=TruncDate("created_at", tzinfo=tzinfo))
        columns.append("day")
    if "member" in keys:
        columns.append("user_id")
    if "provider" in keys or "model" in keys:
        columns.append("provider")
    if "model" in keys:
        columns.append("model")
    grouped = list(rows.order_by().values(*columns).annotate(**_TOTALS).order_by(*columns))
    labels = _labels(grouped)
    return [_group_row(row, labels) for row in grouped]


def _labels(grouped: list[dict[str, Any]]) -> dict[str, dict[int, str]]:
    org_ids = {row["organization_id"] for row in grouped if "organization_id" in row}
    user_ids = {row["user_id"] for row in grouped if row.get("user_id") is not None}
    return {
        "organization": dict(Organization.objects.filter(pk__in=org_ids).values_list("pk", "slug")),
        "user": dict(User.objects.filter(pk__in=user_ids).values_list("pk", "email")),
    }


def _group_row(row: dict[str, Any], labels: dict[str, dict[int, str]]) -> dict[str, Any]:
    group = _with_zeroes(row)
    group |= {key: row[key] for key in ("day", "provider", "model") if key in row}
    if "user_id" in row:
        group |= {"member": row["user_id"], "email": labels["user"].get(row["user_id"])}
    if "organization_id" in row:
        group |= {"organization": labels["organization"].get(row["organization_id"])}
    group["error_rate"] = group["error_requests"] / group["requests"] if group["requests"] else 0.0
    return group


CSV_COLUMNS = [
    "request_id",
    "created_at",
    "member_email",
    "chat_id",
    "provider",
    "model",
    "credential",
    "input_tokens",
    "output_tokens",
    "tokens_estimated",
    "cost",
    "price_source",
    "input_price_per_mtok",
    "output_price_per_mtok",
    "status",
    "error_code",
    "latency_ms",
    "ttft_ms",
]


def _cell(value: Any) -> Any:
    # Spreadsheets run cells starting with these as formulas; a leading quote defuses them.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _csv_values(row: UsageRecord) -> list[Any]:
    email = row.user.email if row.user_id else ""
    values = {"member_email": email, "credential": row.credential_id}
    return [_cell(values[c] if c in values else getattr(row, c)) for c in CSV_COLUMNS]


class _Echo:
    def write(self, value: str) -> str:
        return value


def usage_csv(rows: QuerySet[UsageRecord]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for row in rows.select_related("user").order_by("created_at", "id").iterator(2000):
        yield writer.writerow(_csv_values(row))
