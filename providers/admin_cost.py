"""Django admin for cost controls (imported by providers/admin.py).

The ledger, counters, reservations, alert events and webhook deliveries are records of what
happened: read-only here. Money moves only through `providers.budget`, never by hand. Limits,
price overrides and cost policies are edited freely; a webhook secret is write-only.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse

from providers import netguard
from providers.adapters.base import ProviderError
from providers.budget import money
from providers.models import (
    AlertEvent,
    CostPolicy,
    PriceOverride,
    Reservation,
    SpendingCounter,
    SpendingLimit,
    UsageRecord,
    WebhookDelivery,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Inspect, filter and search; never add, change or delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- ledger ---------------------------------------------------------------------------------


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "organization",
        "user",
        "provider",
        "model",
        "input_tokens",
        "output_tokens",
        "tokens_estimated",
        "cost",
        "price_source",
        "status",
        "latency_ms",
    ]
    list_filter = ["status", "price_source", "tokens_estimated", "provider", "organization"]
    search_fields = ["request_id", "model", "provider", "user__email", "organization__slug"]
    date_hierarchy = "created_at"
    raw_id_fields = ["organization", "user", "credential"]
    list_select_related = ["organization", "user"]
    ordering = ["-created_at"]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        """Totals of the filtered rows above the list (as the changelist's subtitle)."""
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            response.context_data["subtitle"] = usage_summary(changelist.queryset)
        return response


def usage_summary(rows: QuerySet[UsageRecord]) -> str:
    totals = rows.aggregate(
        calls=Count("id"),
        input_tokens=Sum("input_tokens"),
        output_tokens=Sum("output_tokens"),
        total_cost=Sum("cost"),
        unpriced=Count("id", filter=Q(cost__isnull=True)),
    )
    cost = money(totals["total_cost"]) if totals["total_cost"] is not None else "0"
    return (
        f"Totals: {totals['calls']} calls, {totals['input_tokens'] or 0} input and "
        f"{totals['output_tokens'] or 0} output tokens, {cost} USD"
        f" ({totals['unpriced']} calls of unknown cost)"
    )


@admin.register(PriceOverride)
class PriceOverrideAdmin(admin.ModelAdmin):
    list_display = ["provider", "model", "organization", "input_per_mtok", "output_per_mtok"]
    list_filter = ["provider", ("organization", admin.EmptyFieldListFilter)]
    search_fields = ["provider", "model", "organization__name", "organization__slug"]
    raw_id_fields = ["organization"]


# --- limits ---------------------------------------------------------------------------------


class CounterInline(ReadOnlyInline):
    model = SpendingCounter
    fields = ["period_start", "period_end", "spent", "reserved", "alert_level"]
    readonly_fields = fields
    ordering = ["-period_start"]
    max_num = 0


@admin.register(SpendingLimit)
class SpendingLimitAdmin(admin.ModelAdmin):
    list_display = ["__str__", "organization", "scope", "period", "amount", "hard", "created_at"]
    list_filter = ["scope", "period", "hard", "organization"]
    search_fields = ["name", "organization__name", "organization__slug"]
    raw_id_fields = ["organization", "membership", "credential"]
    inlines = [CounterInline]


@admin.register(SpendingCounter)
class SpendingCounterAdmin(ReadOnlyAdmin):
    list_display = ["limit", "period_start", "period_end", "spent", "reserved", "alert_level"]
    list_filter = ["limit__period", "limit__organization"]
    search_fields = ["limit__name", "limit__organization__slug"]
    raw_id_fields = ["limit"]
    list_select_related = ["limit"]


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    """Reservations outstanding: calls in flight, or dead calls awaiting the sweeper."""

    list_display = ["request_id", "counter", "amount", "created_at", "expires_at"]
    search_fields = ["request_id"]
    raw_id_fields = ["counter"]
    date_hierarchy = "expires_at"


# --- alerts ---------------------------------------------------------------------------------


class DeliveryInline(ReadOnlyInline):
    model = WebhookDelivery
    fields = ["attempt", "url", "status_code", "delivered_at", "error", "created_at"]
    readonly_fields = fields


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "organization", "limit", "threshold", "spent", "amount"]
    list_filter = ["threshold", "organization"]
    search_fields = ["limit__name", "organization__name", "organization__slug"]
    raw_id_fields = ["organization", "limit"]
    inlines = [DeliveryInline]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "organization", "event", "attempt", "status_code", "delivered_at"]
    list_filter = [("delivered_at", admin.EmptyFieldListFilter), "organization"]
    search_fields = ["url", "error", "organization__slug"]
    raw_id_fields = ["organization", "event"]


# --- policy ---------------------------------------------------------------------------------


class CostPolicyForm(forms.ModelForm):
    webhook_url = forms.URLField(required=False, max_length=500, assume_scheme="https")
    webhook_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave empty to keep the current secret.",
    )

    class Meta:
        model = CostPolicy
        fields = [
            "organization",
            "unpriced_policy",
            "default_input_per_mtok",
            "default_output_per_mtok",
            "org_requests_per_minute",
            "org_tokens_per_minute",
            "member_requests_per_minute",
            "member_tokens_per_minute",
            "credential_rate_limits",
            "webhook_url",
            "webhook_secret",
        ]

    def clean_webhook_url(self) -> str:
        url = self.cleaned_data.get("webhook_url", "")
        if url:
            try:
                netguard.check_url(url)
            except ProviderError as exc:
                raise forms.ValidationError(exc.message) from None
        return url

    def clean_credential_rate_limits(self) -> dict[str, Any]:
        value = self.cleaned_data.get("credential_rate_limits") or {}
        allowed = {"requests_per_minute", "tokens_per_minute"}
        for key, rates in value.items():
            if not str(key).isdigit() or not isinstance(rates, dict) or set(rates) - allowed:
                raise forms.ValidationError(
                    'Use {"<credential id>": {"requests_per_minute": n, "tokens_per_minute": n}}.'
                )
        return value

    def save(self, commit: bool = True) -> CostPolicy:
        policy = super().save(commit=False)
        if self.cleaned_data.get("webhook_secret"):
            policy.set_webhook_secret(self.cleaned_data["webhook_secret"])
        if commit:
            policy.save()
        return policy


@admin.register(CostPolicy)
class CostPolicyAdmin(admin.ModelAdmin):
    form = CostPolicyForm
    list_display = [
        "organization",
        "unpriced_policy",
        "org_requests_per_minute",
        "org_tokens_per_minute",
        "member_requests_per_minute",
        "webhook_url",
    ]
    list_filter = ["unpriced_policy"]
    search_fields = ["organization__name", "organization__slug", "webhook_url"]
    raw_id_fields = ["organization"]
