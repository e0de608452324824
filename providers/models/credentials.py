"""Provider credentials: an organisation's keys, encrypted at rest, write-only everywhere."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from accounts.models import Organization
from config.db import TimeStampedModel
from providers import crypto


class CredentialQuerySet(models.QuerySet["ProviderCredential"]):
    def for_organization(self, organization: Organization) -> CredentialQuerySet:
        return self.filter(organization=organization)

    def usable(self) -> CredentialQuerySet:
        return self.filter(enabled=True).order_by("priority", "id")


#: the fields people may set on a credential (the secret goes through set_secret / rotation)
EDITABLE_FIELDS = [
    "name",
    "provider",
    "kind",
    "base_url",
    "priority",
    "enabled",
    "default_model",
    "default_temperature",
    "default_max_tokens",
]


class ProviderCredential(TimeStampedModel):
    """One key for one provider endpoint. Credentials of an organisation that share a
    `provider` name are one route: tried by `priority` (lowest first), each a fallback for the
    ones before it."""

    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible"
        ANTHROPIC = "anthropic", "Anthropic"
        OLLAMA = "ollama", "Ollama"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="credentials"
    )
    name = models.CharField(max_length=100, help_text="A label for people, e.g. 'OpenAI team key'.")
    provider = models.SlugField(
        max_length=50, help_text="The name members pick, e.g. 'openai'; shared names fall back."
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    base_url = models.URLField(max_length=300, blank=True)
    secret_encrypted = models.TextField(editable=False)
    key_hint = models.CharField(max_length=20, editable=False)
    version = models.PositiveIntegerField(default=1, editable=False)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    priority = models.PositiveIntegerField(default=100)
    enabled = models.BooleanField(default=True)
    default_model = models.CharField(max_length=200, blank=True)
    default_temperature = models.FloatField(null=True, blank=True)
    default_max_tokens = models.PositiveIntegerField(null=True, blank=True)

    objects = CredentialQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "priority", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="credential_unique_name_per_org"
            )
        ]
        indexes = [
            models.Index(fields=["organization", "provider"], name="credential_org_provider_idx")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider}, {self.key_hint})"

    def set_secret(self, secret: str) -> None:
        self.secret_encrypted = crypto.encrypt(secret)
        self.key_hint = crypto.mask(secret)

    def rotate_secret(self, secret: str) -> None:
        self.set_secret(secret)
        self.version += 1
        self.rotated_at = timezone.now()

    def secret(self) -> str:
        """The plaintext key, for the adapter only. Never log or return it."""
        return crypto.decrypt(self.secret_encrypted)
