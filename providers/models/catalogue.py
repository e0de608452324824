"""What an organisation allows: per-model switches and limits set by its admins."""

from __future__ import annotations

from django.db import models

from accounts.models import Organization
from config.db import TimeStampedModel


class ModelSettingQuerySet(models.QuerySet["ModelSetting"]):
    def for_organization(self, organization: Organization) -> ModelSettingQuerySet:
        return self.filter(organization=organization)


class ModelSetting(TimeStampedModel):
    """An organisation's choice about one model of one provider. Models without a row are
    enabled with the platform's default limits."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="model_settings"
    )
    provider = models.SlugField(max_length=50)
    model = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)
    context_window = models.PositiveIntegerField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)

    objects = ModelSettingQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "provider", "model"], name="modelsetting_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} ({'on' if self.enabled else 'off'})"
