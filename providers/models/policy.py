"""An organisation's cost policy: unpriced models, rate limits, and where alerts are sent."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models

from accounts.models import Organization
from config.db import TimeStampedModel
from providers import crypto

MONEY = {"max_digits": 20, "decimal_places": 10}


class CostPolicyQuerySet(models.QuerySet["CostPolicy"]):
    def for_organization(self, organization: Organization) -> CostPolicyQuerySet:
        return self.filter(organization=organization)


class CostPolicy(TimeStampedModel):
    """One per organisation, created on first edit; an organisation without one gets the
    defaults below (unpriced models blocked under hard limits, no rate limits, no webhook).

    Rate limits live here rather than on the credential: `credential_rate_limits` maps a
    credential id (as a string, JSON keys are strings) to `{"requests_per_minute": n,
    "tokens_per_minute": n}`; either key may be left out."""

    class Unpriced(models.TextChoices):
        BLOCK = "block", "Block under hard limits"
        DEFAULT_PRICE = "default_price", "Charge the default price"

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="cost_policy"
    )
    unpriced_policy = models.CharField(
        max_length=20, choices=Unpriced.choices, default=Unpriced.BLOCK
    )
    default_input_per_mtok = models.DecimalField(
        **MONEY, default=Decimal(0), validators=[MinValueValidator(Decimal(0))]
    )
    default_output_per_mtok = models.DecimalField(
        **MONEY, default=Decimal(0), validators=[MinValueValidator(Decimal(0))]
    )
    org_requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    org_tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    member_requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Applies to each member separately."
    )
    member_tokens_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Applies to each member separately."
    )
    credential_rate_limits = models.JSONField(default=dict, blank=True)
    webhook_url = models.URLField(max_length=500, blank=True)
    webhook_secret_encrypted = models.TextField(blank=True, editable=False)

    objects = CostPolicyQuerySet.as_manager()

    class Meta:
        verbose_name = "cost policy"
        verbose_name_plural = "cost policies"

    def __str__(self) -> str:
        return f"Cost policy of {self.organization}"

    def set_webhook_secret(self, secret: str) -> None:
        self.webhook_secret_encrypted = crypto.encrypt(secret) if secret else ""

    def webhook_secret(self) -> str:
        """The plaintext signing secret, for signing only. Never log or return it."""
        if not self.webhook_secret_encrypted:
            return ""
        return crypto.decrypt(self.webhook_secret_encrypted)
