"""Alerts fired when spend crosses a limit's thresholds, and their webhook deliveries."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from accounts.models import Organization
from providers.models.limits import SpendingLimit

MONEY = {"max_digits": 20, "decimal_places": 10}


class AlertEventQuerySet(models.QuerySet["AlertEvent"]):
    def for_organization(self, organization: Organization) -> AlertEventQuerySet:
        return self.filter(organization=organization)


class AlertEvent(models.Model):
    """`threshold` percent of a limit was reached in the period starting `period_start`.
    Unique per (limit, period, threshold): each fires once per period."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="alert_events"
    )
    limit = models.ForeignKey(SpendingLimit, on_delete=models.CASCADE, related_name="alerts")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField(null=True, blank=True)
    threshold = models.PositiveSmallIntegerField()
    spent = models.DecimalField(**MONEY)
    amount = models.DecimalField(**MONEY)
    created_at = models.DateTimeField(default=timezone.now)

    objects = AlertEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["limit", "period_start", "threshold"], name="alertevent_unique_threshold"
            )
        ]
        indexes = [models.Index(fields=["organization", "created_at"], name="alertevent_org_idx")]

    def __str__(self) -> str:
        return f"{self.limit} reached {self.threshold}%"


class WebhookDeliveryQuerySet(models.QuerySet["WebhookDelivery"]):
    def for_organization(self, organization: Organization) -> WebhookDeliveryQuerySet:
        return self.filter(organization=organization)


class WebhookDelivery(models.Model):
    """One attempt to POST an alert to the organisation's webhook. `delivered_at` is set on a
    2xx answer; otherwise `status_code` and/or `error` say what went wrong."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    url = models.URLField(max_length=500)
    attempt = models.PositiveSmallIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["organization", "created_at"], name="webhookdelivery_org_idx")
        ]

    def __str__(self) -> str:
        state = "delivered" if self.delivered_at else (self.error or self.status_code)
        return f"event {self.event_id} attempt {self.attempt}: {state}"
