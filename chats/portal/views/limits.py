"""Organisation admin: spending limits (with how much of each is used now) and the alerts
they fired."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from accounts.audit import audit_record
from accounts.models import AuditEvent
from chats.portal.access import admin_required
from chats.portal.budget import usd
from chats.portal.common import done
from chats.portal.forms import LimitForm, LimitSettingsForm
from providers import budget
from providers.models import AlertEvent, SpendingLimit

Action = AuditEvent.Action


def _limits(request: HttpRequest) -> QuerySet[SpendingLimit]:
    return SpendingLimit.objects.for_organization(request.membership.organization).select_related(
        "membership__user", "credential"
    )


def _public(limit: SpendingLimit) -> dict[str, Any]:
    return {
        "name": limit.name,
        "scope": limit.scope,
        "membership": limit.membership_id,
        "credential": limit.credential_id,
        "period": limit.period,
        "amount": str(limit.amount),
        "hard": limit.hard,
        "alert_thresholds": limit.alert_thresholds,
    }


def _with_usage(request: HttpRequest, limits: list[SpendingLimit]) -> list[dict[str, Any]]:
    """Each limit with what is spent and reserved in its current period."""
    refs = [budget.LimitRef.of(limit) for limit in limits]
    slots = budget.slots_for(refs, now=timezone.now(), tz=request.membership.organization.timezone)
    counters = budget.counters_for(slots)
    by_id = {slot.limit.id: slot for slot in slots}
    rows = []
    for limit in limits:
        slot = by_id[limit.pk]
        counter = counters.get(slot.key)
        spent = counter.spent if counter else Decimal(0)
        reserved = counter.reserved if counter else Decimal(0)
        used = spent + reserved
        percent = 100 if limit.amount <= 0 else min(100, round(used / limit.amount * 100))
        rows.append(
            {
                "limit": limit,
                "spent": usd(spent),
                "reserved": usd(reserved) if reserved else "",
                "amount": usd(limit.amount),
                "percent": percent,
                "resets_at": slot.end,
            }
        )
    return rows


def _create(request: HttpRequest, form: LimitForm) -> SpendingLimit | None:
    data = form.cleaned_data
    try:
        limit = budget.spending_limit_create(
            organization=request.membership.organization,
            name=data["name"],
            scope=data["scope"],
            period=data["period"],
            amount=data["amount"],
            hard=data["hard"],
            alert_thresholds=data["alert_thresholds"],
            **form.target_fields(),
        )
    except ValidationError as exc:
        form.add_error(None, exc)
        return None
    audit_record(
        action=Action.LIMIT_CREATED,
        organization=limit.organization,
        request=request,
        target=limit,
        after=_public(limit),
    )
    return limit


@require_http_methods(["GET", "POST"])
@admin_required
def limit_list(request: HttpRequest) -> HttpResponse:
    organization = request.membership.organization
    form = LimitForm(request.POST or None, organization=organization)
    if request.method == "POST" and form.is_valid() and _create(request, form) is not None:
        return done(request, "portal:limits", "Spending limit added.")
    alerts = AlertEvent.objects.for_organization(organization).select_related("limit")[:50]
    context = {
        "form": form,
        "limits": _with_usage(request, list(_limits(request))),
        "alerts": alerts,
        "timezone": organization.timezone,
    }
    status = 400 if form.errors else 200
    return render(request, "portal/org/limits.html", context, status=status)


@require_http_methods(["GET", "POST"])
@admin_required
def limit_edit(request: HttpRequest, limit_id: int) -> HttpResponse:
    """Change a limit's amount, period, kind, name or thresholds. Its counters stay: what was
    spent this period still counts, where deleting the limit and adding it again would start
    from zero."""
    limit = get_object_or_404(_limits(request), pk=limit_id)
    form = LimitSettingsForm.for_limit(limit, request.POST or None)
    if request.method == "POST" and form.is_valid():
        before = _public(limit)
        try:
            budget.spending_limit_update(limit=limit, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            audit_record(
                action=Action.LIMIT_CHANGED,
                organization=limit.organization,
                request=request,
                target=limit,
                before=before,
                after=_public(limit),
            )
            return done(request, "portal:limits", "Spending limit saved.")
        limit.refresh_from_db()  # the page shows the limit as it is, not as submitted
    timezone_name = request.membership.organization.timezone
    context = {"form": form, "row": _with_usage(request, [limit])[0], "timezone": timezone_name}
    status = 400 if form.errors else 200
    return render(request, "portal/org/limit_edit.html", context, status=status)


@require_POST
@admin_required
def limit_delete(request: HttpRequest, limit_id: int) -> HttpResponse:
    limit = get_object_or_404(_limits(request), pk=limit_id)
    audit_record(
        action=Action.LIMIT_DELETED,
        organization=limit.organization,
        request=request,
        target=limit,
        before=_public(limit),
    )
    budget.spending_limit_delete(limit=limit)
    return done(request, "portal:limits", "Spending limit deleted.")
