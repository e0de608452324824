"""Cost controls for organisation admins: spending limits, alerts, webhook deliveries and the
organisation's cost policy (unpriced models, rate limits, webhook). Members get 403, outsiders
404 (another organisation's limit is simply not found)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.audit import audit_record
from accounts.models import AuditEvent, Membership, Organization
from accounts.permissions import IsOrgAdmin
from accounts.tenancy import request_membership
from providers import budget, netguard
from providers.adapters.base import ProviderError
from providers.budget import LimitRef
from providers.models import (
    AlertEvent,
    CostPolicy,
    ProviderCredential,
    SpendingLimit,
    WebhookDelivery,
)

MONEY = {"max_digits": 20, "decimal_places": 10, "min_value": Decimal(0)}
ADMINS_ONLY = [IsAuthenticated, IsOrgAdmin]
Scope = SpendingLimit.Scope


def _org(request: Request) -> Organization:
    return request_membership(request).organization


def _invalid(exc: DjangoValidationError) -> serializers.ValidationError:
    return serializers.ValidationError(
        exc.message_dict if hasattr(exc, "error_dict") else exc.messages
    )


# --- limits ---------------------------------------------------------------------------------


class CurrentPeriodSerializer(serializers.Serializer):
    period_start = serializers.DateTimeField()
    resets_at = serializers.DateTimeField(allow_null=True)
    spent = serializers.DecimalField(max_digits=20, decimal_places=10)
    reserved = serializers.DecimalField(max_digits=20, decimal_places=10)
    remaining = serializers.DecimalField(max_digits=20, decimal_places=10)


def current_periods(
    limits: Iterable[SpendingLimit], organization: Organization
) -> dict[int, dict[str, Any]]:
    """Spend, reservations and room left of each limit in its current period, by limit id."""
    slots = budget.slots_for(
        [LimitRef.of(limit) for limit in limits], now=timezone.now(), tz=organization.timezone
    )
    counters = budget.counters_for(slots)
    found = {}
    for slot in slots:
        counter = counters.get(slot.key)
        spent = counter.spent if counter else Decimal(0)
        reserved = counter.reserved if counter else Decimal(0)
        found[slot.limit.id] = {
            "period_start": slot.start,
            "resets_at": slot.end,
            "spent": spent,
            "reserved": reserved,
            "remaining": max(Decimal(0), slot.limit.amount - spent - reserved),
        }
    return found


class OrgScopedPrimaryKey(serializers.PrimaryKeyRelatedField):
    """A membership or credential of the caller's organisation; any other does not exist."""

    def get_queryset(self) -> QuerySet:
        return self.queryset.filter(organization=_org(self.context["request"]))


class LimitSerializer(serializers.ModelSerializer):
    membership = OrgScopedPrimaryKey(
        queryset=Membership.objects.all(), required=False, allow_null=True
    )
    member_email = serializers.EmailField(
        source="membership.user.email", read_only=True, allow_null=True, default=None
    )
    credential = OrgScopedPrimaryKey(
        queryset=ProviderCredential.objects.all(), required=False, allow_null=True
    )
    credential_name = serializers.CharField(
        source="credential.name", read_only=True, allow_null=True, default=None
    )
    amount = serializers.DecimalField(**MONEY, help_text="USD per period.")
    alert_thresholds = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=1000),
        max_length=10,
        required=False,
        help_text="Percentages of the amount at which admins are alerted (default 50, 80, 100).",
    )
    current = serializers.SerializerMethodField()

    class Meta:
        model = SpendingLimit
        fields = [
            "id",
            "name",
            "scope",
            "membership",
            "member_email",
            "credential",
            "credential_name",
            "period",
            "amount",
            "hard",
            "alert_thresholds",
            "current",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    @extend_schema_field(CurrentPeriodSerializer)
    def get_current(self, limit: SpendingLimit) -> dict[str, Any]:
        """The limit's current period. Lists pass them all in the context (one query); a
        single limit reads its own."""
        periods = self.context.get("periods")
        if periods is None or limit.pk not in periods:
            periods = current_periods([limit], limit.organization)
        return CurrentPeriodSerializer(periods[limit.pk]).data

    def validate_alert_thresholds(self, value: list[int]) -> list[int]:
        return sorted(set(value))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        scope = attrs.get("scope")
        membership, credential = attrs.get("membership"), attrs.get("credential")
        errors = {}
        if scope == Scope.MEMBER and membership is None:
            errors["membership"] = "A member limit needs a membership."
        if scope == Scope.CREDENTIAL and credential is None:
            errors["credential"] = "A credential limit needs a credential."
        if scope != Scope.MEMBER and membership is not None:
            errors["membership"] = "Only member limits name a membership."
        if scope != Scope.CREDENTIAL and credential is not None:
            errors["credential"] = "Only credential limits name a credential."
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class LimitUpdateSerializer(LimitSerializer):
    """Scope and target are fixed once a limit exists: its counters belong to them."""

    class Meta(LimitSerializer.Meta):
        read_only_fields = ["scope", "membership", "credential", "created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return attrs


def _limits_of(organization: Organization) -> QuerySet[SpendingLimit]:
    return SpendingLimit.objects.for_organization(organization).select_related(
        "organization", "membership__user", "credential"
    )


class LimitList(generics.ListCreateAPIView):
    """Spending limits of the organisation, with each one's current period."""

    permission_classes = ADMINS_ONLY
    serializer_class = LimitSerializer

    def get_queryset(self) -> QuerySet[SpendingLimit]:
        return _limits_of(_org(self.request))

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        context = self.get_serializer_context() | {"periods": current_periods(page, _org(request))}
        return self.get_paginated_response(LimitSerializer(page, many=True, context=context).data)

    def perform_create(self, serializer: LimitSerializer) -> None:
        try:
            serializer.instance = budget.spending_limit_create(
                organization=_org(self.request), **serializer.validated_data
            )
        except DjangoValidationError as exc:
            raise _invalid(exc) from None
        _audit(self.request, AuditEvent.Action.LIMIT_CREATED, serializer.instance, after=True)


class LimitDetail(generics.RetrieveUpdateDestroyAPIView):
    permission_classes = ADMINS_ONLY
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[SpendingLimit]:
        return _limits_of(_org(self.request))

    def get_serializer_class(self) -> type[LimitSerializer]:
        if self.request.method in ("PUT", "PATCH"):
            return LimitUpdateSerializer
        return LimitSerializer

    def perform_update(self, serializer: LimitUpdateSerializer) -> None:
        before = _described(serializer.instance)
        try:
            serializer.instance = budget.spending_limit_update(
                limit=serializer.instance, **serializer.validated_data
            )
        except DjangoValidationError as exc:
            raise _invalid(exc) from None
        _audit(
            self.request, AuditEvent.Action.LIMIT_CHANGED, serializer.instance, before, after=True
        )

    def perform_destroy(self, instance: SpendingLimit) -> None:
        _audit(self.request, AuditEvent.Action.LIMIT_DELETED, instance, _described(instance))
        budget.spending_limit_delete(limit=instance)


def _described(limit: SpendingLimit) -> dict[str, Any]:
    fields = ["name", "scope", "period", "amount", "hard", "alert_thresholds"]
    return {name: str(getattr(limit, name)) for name in fields} | {
        "membership": limit.membership_id,
        "credential": limit.credential_id,
    }


def _audit(
    request: Request,
    action: str,
    limit: SpendingLimit,
    before: dict[str, Any] | None = None,
    *,
    after: bool = False,
) -> None:
    audit_record(
        action=action,
        organization=limit.organization,
        request=request,
        target=limit,
        before=before,
        after=_described(limit) if after else None,
    )


# --- alerts and webhook deliveries ----------------------------------------------------------


class AlertEventSerializer(serializers.ModelSerializer):
    limit_name = serializers.CharField(source="limit.name", read_only=True)
    scope = serializers.CharField(source="limit.scope", read_only=True)
    period = serializers.CharField(source="limit.period", read_only=True)

    class Meta:
        model = AlertEvent
        fields = [
            "id",
            "limit",
            "limit_name",
            "scope",
            "period",
            "period_start",
            "period_end",
            "threshold",
            "spent",
            "amount",
            "created_at",
        ]


class AlertList(generics.ListAPIView):
    """Alerts fired in the organisation, newest first (`?limit=<id>` for one limit's)."""

    permission_classes = ADMINS_ONLY
    serializer_class = AlertEventSerializer

    def get_queryset(self) -> QuerySet[AlertEvent]:
        events = AlertEvent.objects.for_organization(_org(self.request)).select_related("limit")
        limit_id = self.request.query_params.get("limit", "")
        return events.filter(limit_id=int(limit_id)) if limit_id.isdigit() else events


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "url",
            "attempt",
            "status_code",
            "delivered_at",
            "error",
            "created_at",
        ]


class WebhookDeliveryList(generics.ListAPIView):
    """Every attempt to deliver an alert to the organisation's webhook, newest first."""

    permission_classes = ADMINS_ONLY
    serializer_class = WebhookDeliverySerializer

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        return WebhookDelivery.objects.for_organization(_org(self.request))


# --- cost policy ----------------------------------------------------------------------------


class RateLimitSerializer(serializers.Serializer):
    requests_per_minute = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    tokens_per_minute = serializers.IntegerField(min_value=1, required=False, allow_null=True)


class CostPolicySerializer(serializers.ModelSerializer):
    default_input_per_mtok = serializers.DecimalField(**MONEY, required=False)
    default_output_per_mtok = serializers.DecimalField(**MONEY, required=False)
    credential_rate_limits = serializers.DictField(
        child=RateLimitSerializer(),
        required=False,
        help_text="Per credential id: requests and tokens per minute.",
    )
    webhook_secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Write-only. Set with the URL; generated (and shown once) if left out.",
    )
    has_webhook_secret = serializers.SerializerMethodField()

    class Meta:
        model = CostPolicy
        fields = [
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
            "has_webhook_secret",
        ]

    def get_has_webhook_secret(self, policy: CostPolicy) -> bool:
        return bool(policy.webhook_secret_encrypted)

    def validate_credential_rate_limits(self, value: dict[str, Any]) -> dict[str, Any]:
        organization = _org(self.context["request"])
        ids = [key for key in value if key.isdigit()]
        known = set(
            ProviderCredential.objects.for_organization(organization)
            .filter(pk__in=ids)
            .values_list("pk", flat=True)
        )
        unknown = [key for key in value if not key.isdigit() or int(key) not in known]
        if unknown:
            raise serializers.ValidationError(f"Unknown credential ids: {', '.join(unknown)}.")
        return {key: {k: v for k, v in rates.items() if v} for key, rates in value.items()}

    def validate_webhook_url(self, value: str) -> str:
        if value:
            try:
                netguard.check_url(value)
            except ProviderError as exc:
                raise serializers.ValidationError(exc.message) from None
        return value


class IssuedSecretSerializer(CostPolicySerializer):
    webhook_secret = serializers.CharField(read_only=True, help_text="Shown once; store it now.")


def cost_policy_update(
    *, organization: Organization, webhook_secret: str | None = None, **fields: Any
) -> tuple[CostPolicy, str]:
    """Update (creating it if needed) the organisation's policy. A webhook URL without a
    secret gets a generated one; the second value is that secret (else ""), to show once."""
    policy = CostPolicy.objects.filter(organization=organization).first()
    policy = policy or CostPolicy(organization=organization)
    for name, value in fields.items():
        setattr(policy, name, value)
    issued = ""
    if webhook_secret:
        policy.set_webhook_secret(webhook_secret)
    elif policy.webhook_url and not policy.webhook_secret_encrypted:
        issued = secrets.token_urlsafe(32)
        policy.set_webhook_secret(issued)
    policy.full_clean()
    policy.save()
    return policy, issued


class CostPolicyView(APIView):
    """The organisation's cost policy: how unpriced models are treated, rate limits, webhook."""

    permission_classes = ADMINS_ONLY

    @extend_schema(responses=CostPolicySerializer)
    def get(self, request: Request) -> Response:
        organization = _org(request)
        policy = CostPolicy.objects.filter(organization=organization).first()
        policy = policy or CostPolicy(organization=organization)
        return Response(CostPolicySerializer(policy, context={"request": request}).data)

    @extend_schema(request=CostPolicySerializer, responses=IssuedSecretSerializer)
    def patch(self, request: Request) -> Response:
        serializer = CostPolicySerializer(
            data=request.data, partial=True, context={"request": request}
        )
        serializer.is_valid(raise_exception=True)
        try:
            policy, issued = cost_policy_update(
                organization=_org(request), **serializer.validated_data
            )
        except DjangoValidationError as exc:
            raise _invalid(exc) from None
        body = CostPolicySerializer(policy, context={"request": request}).data
        if issued:
            body["webhook_secret"] = issued
        return Response(body, status=status.HTTP_200_OK)


urlpatterns = [
    path("limits", LimitList.as_view(), name="api-limits"),
    path("limits/<int:pk>", LimitDetail.as_view(), name="api-limit"),
    path("alerts", AlertList.as_view(), name="api-alerts"),
    path("webhook-deliveries", WebhookDeliveryList.as_view(), name="api-webhook-deliveries"),
    path("cost-policy", CostPolicyView.as_view(), name="api-cost-policy"),
]
