"""The staff usage report: every organisation, a date range, spend per day as a chart, tables
by organisation, member, provider and model, and the CSV of exactly the filtered rows."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from accounts.models import Organization
from providers.models import UsageRecord
from providers.reports import usage_csv, usage_filter, usage_groups, usage_totals

CHART_WIDTH, CHART_HEIGHT = 720, 180


class ReportForm(forms.Form):
    start = forms.DateField(label="From", required=False, widget=forms.DateInput({"type": "date"}))
    end = forms.DateField(label="To", required=False, widget=forms.DateInput({"type": "date"}))
    organization = forms.ModelChoiceField(
        Organization.objects.all(), required=False, to_field_name="slug", empty_label="All"
    )

    def params(self) -> dict[str, Any]:
        today = timezone.now().date()
        data = self.cleaned_data if self.is_valid() else {}
        return {
            "from": data.get("start") or today - timedelta(days=29),
            "to": data.get("end") or today,
        }


def spend_chart(days: list[dict[str, Any]], start: date, end: date) -> list[dict[str, Any]]:
    """Bars for every day in range (empty days included), scaled to the largest."""
    by_day = {row["day"]: row["cost"] or Decimal(0) for row in days}
    span = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    peak = max(by_day.values(), default=Decimal(0)) or Decimal(1)
    width = CHART_WIDTH / max(len(span), 1)
    bars = []
    for index, day in enumerate(span):
        cost = by_day.get(day, Decimal(0))
        height = float(cost / peak) * (CHART_HEIGHT - 20)
        bars.append(
            {
                "x": round(index * width + 1, 2),
                "y": round(CHART_HEIGHT - height, 2),
                "width": round(max(width - 2, 1), 2),
                "height": round(height, 2),
                "day": day,
                "cost": cost,
            }
        )
    return bars


@staff_member_required
def usage_report(request: HttpRequest) -> HttpResponse:
    form = ReportForm(request.GET or None)
    params = form.params()
    organization = form.cleaned_data.get("organization") if form.is_valid() else None
    rows = UsageRecord.objects.all()
    if organization is not None:
        rows = rows.filter(organization=organization)
    rows = usage_filter(rows, organization=organization, params=params)
    if request.GET.get("format") == "csv":
        response = StreamingHttpResponse(usage_csv(rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="usage-report.csv"'
        return response
    days = usage_groups(rows, keys=["day"], organization=organization)
    context = {
        **admin.site.each_context(request),
        "title": "Usage report",
        "form": form,
        "params": params,
        "totals": usage_totals(rows),
        "bars": spend_chart(days, params["from"], params["to"]),
        "chart": {"width": CHART_WIDTH, "height": CHART_HEIGHT},
        "tables": [
            ("Organisation", usage_groups(rows, keys=["organization"], organization=organization)),
            (
                "Member",
                usage_groups(rows, keys=["organization", "member"], organization=organization),
            ),
            (
                "Provider and model",
                usage_groups(rows, keys=["provider", "model"], organization=organization),
            ),
        ],
        "query": request.GET.urlencode(),
    }
    return TemplateResponse(request, "admin/providers/usage_report.html", context)
