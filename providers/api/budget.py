"""GET /api/me/budget — what the caller may still spend under each limit that applies to them:
the organisation's, their own, and those of the organisation's credentials."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Membership
from accounts.tenancy import request_membership
from providers.api.limits import current_periods
from providers.models import SpendingLimit

MONEY = {"max_digits": 20, "decimal_places": 10}


class BudgetLineSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    scope = serializers.ChoiceField(choices=SpendingLimit.Scope.choices)
    credential_name = serializers.CharField(allow_null=True)
    period = serializers.ChoiceField(choices=SpendingLimit.Period.choices)
    hard = serializers.BooleanField()
    amount = serializers.DecimalField(**MONEY)
    spent = serializers.DecimalField(**MONEY)
    reserved = serializers.DecimalField(**MONEY, help_text="Held by calls in flight.")
    remaining = serializers.DecimalField(**MONEY)
    percent_used = serializers.DecimalField(max_digits=12, decimal_places=2)
    period_start = serializers.DateTimeField()
    resets_at = serializers.DateTimeField(allow_null=True, help_text="Null: never (total).")


class BudgetSerializer(serializers.Serializer):
    currency = serializers.CharField()
    limits = BudgetLineSerializer(many=True)


def _percent(spent: Decimal, amount: Decimal) -> Decimal:
    if amount <= 0:
        return Decimal(100)
    return (spent * 100 / amount).quantize(Decimal("0.01"))


def budget_for(membership: Membership) -> list[dict[str, Any]]:
    """Each limit applying to `membership`, with its current period's figures."""
    limits = list(SpendingLimit.objects.for_member(membership).select_related("credential"))
    periods = current_periods(limits, membership.organization)
    return [
        {
            "id": limit.pk,
            "name": limit.name,
            "scope": limit.scope,
            "credential_name": limit.credential.name if limit.credential_id else None,
            "period": limit.period,
            "hard": limit.hard,
            "amount": limit.amount,
            "percent_used": _percent(periods[limit.pk]["spent"], limit.amount),
            **periods[limit.pk],
        }
        for limit in limits
    ]


class MyBudget(APIView):
    @extend_schema(responses=BudgetSerializer)
    def get(self, request: Request) -> Response:
        body = {"currency": "USD", "limits": budget_for(request_membership(request))}
        return Response(BudgetSerializer(body).data)


urlpatterns = [path("me/budget", MyBudget.as_view(), name="api-my-budget")]
