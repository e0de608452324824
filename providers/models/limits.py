"""Spending limits, their per-period counters, and the reservations held against them."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from accounts.models import Membership, Organization
from config.db import TimeStampedModel
from providers.models.credentials import ProviderCredential

MONEY = {"max_digits": 20, "decimal_places": 10}


def default_thresholds() -> list[int]:
    return [50, 80, 100]


class SpendingLimitQuerySet(models.QuerySet["SpendingLimit"]):
    def for_organization(self, organization: Organization) -> SpendingLimitQuerySet:
        return self.filter(organization=organization)

    def for_member(
        self, membership: Membership, credential_ids: Iterable[int] | None = None
    ) -> SpendingLimitQuerySet:
        """The limits a member's call is held to: the organisation's, the member's own, and
        those of the credentials given (every credential of the organisation when None)."""
        credentials = Q(scope=SpendingLimit.Scope.CREDENTIAL)
        if credential_ids is not None:
            credentials &= Q(credential_id__in=list(credential_ids))
        return self.filter(organization_id=membership.organization_id).filter(
            Q(scope=SpendingLimit.Scope.ORGANIZATION)
            | Q(scope=SpendingLimit.Scope.MEMBER, membership=membership)
            | credentials
        )


class SpendingLimit(TimeStampedModel):
    """At most `amount` USD per `period` (calendar periods in the organisation's time zone).
    Hard limits refuse calls that could overshoot them; soft ones only alert."""

    class Scope(models.TextChoices):
        ORGANIZATION = "organization", "Organisation"
        MEMBER = "member", "Member"
        CREDENTIAL = "credential", "Credential"

    class Period(models.TextChoices):
        DAY = "day", "Day"
        WEEK = "week", "Week"
        MONTH = "month", "Month"
        TOTAL = "total", "Total"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="spending_limits"
    )
    name = models.CharField(max_length=100, blank=True)
    scope = models.CharField(max_length=20, choices=Scope.choices)
    membership = models.ForeignKey(
        Membership,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="spending_limits",
    )
    credential = models.ForeignKey(
        ProviderCredential,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="spending_limits",
    )
    period = models.CharField(max_length=10, choices=Period.choices)
    amount = models.DecimalField(
        **MONEY, validators=[MinValueValidator(Decimal(0))], help_text="USD per period."
    )
    hard = models.BooleanField(default=True, help_text="Hard limits block; soft ones only alert.")
    alert_thresholds = models.JSONField(
        default=default_thresholds, blank=True, help_text="Percentages of the amount."
    )

    objects = SpendingLimitQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "scope", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(scope="organization", membership__isnull=True, credential__isnull=True)
                    | Q(scope="member", membership__isnull=False, credential__isnull=True)
                    | Q(scope="credential", membership__isnull=True, credential__isnull=False)
                ),
                name="spendinglimit_scope_target",
            ),
            models.CheckConstraint(
                condition=Q(amount__gte=0), name="spendinglimit_amount_not_negative"
            ),
        ]
        indexes = [models.Index(fields=["organization", "scope"], name="spendinglimit_org_idx")]

    def __str__(self) -> str:
        kind = "hard" if self.hard else "soft"
        return f"{self.name or self.get_scope_display()} {self.amount}/{self.period} ({kind})"


class SpendingCounter(models.Model):
    """Spend and outstanding reservations of one limit in one period. A new period gets a new
    row (created on first use), so nothing ever resets counters. `alert_level` is the highest
    alert threshold already fired in this period."""

    limit = models.ForeignKey(SpendingLimit, on_delete=models.CASCADE, related_name="counters")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField(null=True, blank=True)
    spent = models.DecimalField(**MONEY, default=Decimal(0))
    reserved = models.DecimalField(**MONEY, default=Decimal(0))
    alert_level = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["limit", "-period_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["limit", "period_start"], name="spendingcounter_unique_period"
            )
        ]

    def __str__(self) -> str:
        return f"{self.limit_id} from {self.period_start:%Y-%m-%d %H:%M}: {self.spent}"


class Reservation(models.Model):
    """The worst-case cost of one admitted call, held on one counter until the call settles,
    is released, or `expires_at` passes (then `sweep_reservations` gives it back)."""

    request_id = models.CharField(max_length=64)
    counter = models.ForeignKey(
        SpendingCounter, on_delete=models.CASCADE, related_name="reservations"
    )
    amount = models.DecimalField(**MONEY)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["request_id", "counter"], name="reservation_unique_request_counter"
            )
        ]
        indexes = [models.Index(fields=["expires_at"], name="reservation_expires_idx")]

    def __str__(self) -> str:
        return f"{self.request_id}: {self.amount}"
