"""The usage ledger (one row per provider call) and admin price overrides."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Membership, Organization, User
from config.db import TimeStampedModel
from providers.models.credentials import ProviderCredential

MONEY = {"max_digits": 20, "decimal_places": 10}
# What the usage reports read of a row, carried in the report index.
REPORT_COLUMNS = [
    "organization",
    "user",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cost",
    "status",
    "price_source",
    "tokens_estimated",
]


class UsageRecordQuerySet(models.QuerySet["UsageRecord"]):
    def for_organization(self, organization: Organization) -> UsageRecordQuerySet:
        return self.filter(organization=organization)

    def for_member(self, membership: Membership) -> UsageRecordQuerySet:
        return self.filter(organization_id=membership.organization_id, user_id=membership.user_id)


class UsageRecord(models.Model):
    """One provider call, written once at settlement (`request_id` is unique, so settling twice
    writes one row). The price used is frozen on the row: a later price edit never rewrites it.
    `cost` is null when no price was known."""

    class Status(models.TextChoices):
        OK = "ok", "OK"
        PARTIAL = "partial", "Partial"
        ERROR = "error", "Error"
        CANCELLED = "cancelled", "Cancelled"

    class PriceSource(models.TextChoices):
        ORGANIZATION = "organization", "Organisation override"
        PLATFORM = "platform", "Platform override"
        CATALOGUE = "catalogue", "genai-prices"
        DEFAULT = "default", "Default price (unpriced model)"
        UNKNOWN = "unknown", "Unknown"
        NONE = "none", "No tokens"

    request_id = models.CharField(max_length=64)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="usage_records"
    )
    user = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="usage_records"
    )
    chat_id = models.BigIntegerField(null=True, blank=True)
    credential = models.ForeignKey(
        ProviderCredential,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="usage_records",
    )
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    tokens_estimated = models.BooleanField(
        default=False, help_text="Counted by Gatehouse because the provider reported none."
    )
    cost = models.DecimalField(**MONEY, null=True, blank=True)
    input_price_per_mtok = models.DecimalField(**MONEY, null=True, blank=True)
    output_price_per_mtok = models.DecimalField(**MONEY, null=True, blank=True)
    price_source = models.CharField(
        max_length=20, choices=PriceSource.choices, default=PriceSource.UNKNOWN
    )
    reserved = models.DecimalField(
        **MONEY, default=Decimal(0), help_text="The worst-case cost reserved at admission."
    )
    status = models.CharField(max_length=10, choices=Status.choices)
    error_code = models.CharField(max_length=50, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = UsageRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["request_id"], name="usagerecord_unique_request")
        ]
        indexes = [
            # The staff report spans every organisation over a date range: covering, so its
            # aggregations are index-only scans on PostgreSQL.
            models.Index(
                fields=["created_at"],
                include=REPORT_COLUMNS,
                name="usage_created_idx",
            ),
            models.Index(fields=["organization", "created_at"], name="usage_org_created_idx"),
            models.Index(
                fields=["organization", "user", "created_at"], name="usage_org_user_created_idx"
            ),
            models.Index(
                fields=["organization", "provider", "model", "created_at"],
                name="usage_org_model_created_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.provider}/{self.model} {self.status}"

    @property
    def unpriced(self) -> bool:
        return self.price_source in (self.PriceSource.UNKNOWN, self.PriceSource.DEFAULT)


class PriceOverrideQuerySet(models.QuerySet["PriceOverride"]):
    def for_organization(self, organization: Organization) -> PriceOverrideQuerySet:
        return self.filter(organization=organization)

    def platform(self) -> PriceOverrideQuerySet:
        return self.filter(organization__isnull=True)


class PriceOverride(TimeStampedModel):
    """A price set by an admin; wins over genai-prices. Without an organisation it applies
    platform-wide; an organisation's own override wins over the platform's. `provider` matches
    either the provider name members pick (e.g. 'team-openai') or a credential kind ('openai')."""

    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="price_overrides",
        help_text="Empty: applies to every organisation.",
    )
    provider = models.SlugField(max_length=50)
    model = models.CharField(max_length=200)
    input_per_mtok = models.DecimalField(
        **MONEY, validators=[MinValueValidator(Decimal(0))], help_text="USD per million tokens."
    )
    output_per_mtok = models.DecimalField(
        **MONEY, validators=[MinValueValidator(Decimal(0))], help_text="USD per million tokens."
    )

    objects = PriceOverrideQuerySet.as_manager()

    class Meta:
        ordering = ["provider", "model"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "provider", "model"],
                condition=Q(organization__isnull=False),
                name="priceoverride_unique_org",
            ),
            models.UniqueConstraint(
                fields=["provider", "model"],
                condition=Q(organization__isnull=True),
                name="priceoverride_unique_platform",
            ),
            models.CheckConstraint(
                condition=Q(input_per_mtok__gte=0, output_per_mtok__gte=0),
                name="priceoverride_not_negative",
            ),
        ]

    def __str__(self) -> str:
        where = self.organization or "platform"
        return f"{self.provider}/{self.model} ({where})"
