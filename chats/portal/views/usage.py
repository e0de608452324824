"""Organisation admin: the usage report with its chart, and its CSV export."""

from __future__ import annotations

import csv
from datetime import date, timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from accounts.models import Organization
from chats.portal.access import admin_required
from chats.portal.report import ledger_rows, usage_report
from providers.models import UsageRecord

DEFAULT_DAYS = 30
MAX_DAYS = 366

CSV_COLUMNS = [
    "created_at",
    "request_id",
    "user",
    "provider",
    "model",
    "status",
    "input_tokens",
    "output_tokens",
    "tokens_estimated",
    "cost_usd",
    "price_source",
    "latency_ms",
    "ttft_ms",
    "chat_id",
]


def _range(request: HttpRequest, organization: Organization) -> tuple[date, date]:
    """From the query string (`from`, `to`, ISO dates), else the last 30 days; at most a year."""
    today = timezone.localtime(timezone=organization.tzinfo).date()
    try:
        end = date.fromisoformat(request.GET.get("to", "")) if request.GET.get("to") else today
        start_raw = request.GET.get("from", "")
        start = date.fromisoformat(start_raw) if start_raw else end - timedelta(DEFAULT_DAYS - 1)
    except ValueError:
        end, start = today, today - timedelta(DEFAULT_DAYS - 1)
    if start > end:
        start, end = end, start
    return max(start, end - timedelta(days=MAX_DAYS - 1)), end


@require_safe
@admin_required
def usage_page(request: HttpRequest) -> HttpResponse:
    organization = request.membership.organization
    start, end = _range(request, organization)
    report = usage_report(organization=organization, start=start, end=end)
    return render(
        request, "portal/org/usage.html", {"report": report, "timezone": organization.timezone}
    )


def _cell(value: object) -> object:
    """Text a spreadsheet would run as a formula is quoted (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv_row(row: UsageRecord) -> list[object]:
    return [
        row.created_at.isoformat(),
        row.request_id,
        row.user.email if row.user else "",
        row.provider,
        row.model,
        row.status,
        row.input_tokens,
        row.output_tokens,
        row.tokens_estimated,
        "" if row.cost is None else f"{row.cost:f}",
        row.price_source,
        "" if row.latency_ms is None else row.latency_ms,
        "" if row.ttft_ms is None else row.ttft_ms,
        "" if row.chat_id is None else row.chat_id,
    ]


@require_safe
@admin_required
def usage_csv(request: HttpRequest) -> HttpResponse:
    """Every ledger row of the range. Built whole (a year of one organisation's calls fits in
    memory) rather than streamed, which under ASGI would be buffered anyway."""
    organization = request.membership.organization
    start, end = _range(request, organization)
    rows = ledger_rows(organization=organization, start=start, end=end).select_related("user")
    filename = f"gatehouse-usage-{organization.slug}-{start}-{end}.csv"
    response = HttpResponse(
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    for row in rows.order_by("created_at", "id").iterator(chunk_size=500):
        writer.writerow([_cell(value) for value in _csv_row(row)])
    return response
