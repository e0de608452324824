"""Chats, their messages, and reusable system prompts."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from accounts.models import Membership, Organization, User
from config.db import TimeStampedModel


class ChatQuerySet(models.QuerySet["Chat"]):
    def for_member(self, membership: Membership) -> ChatQuerySet:
        """Chats are private to their owner within one organisation: admins do not see them."""
        return self.filter(organization_id=membership.organization_id, owner_id=membership.user_id)


class Chat(TimeStampedModel):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="chats")
    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="chats")
    title = models.CharField(max_length=200, blank=True)
    system_prompt = models.TextField(blank=True)
    default_provider = models.SlugField(max_length=50, blank=True)
    default_model = models.CharField(max_length=200, blank=True)
    archived = models.BooleanField(default=False)

    objects = ChatQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["organization", "owner", "archived", "-created_at"],
                name="chat_member_recent_idx",
            )
        ]

    def __str__(self) -> str:
        return self.title or f"Chat {self.pk}"


class Message(TimeStampedModel):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        COMPLETE = "complete", "Complete"
        STREAMING = "streaming", "Streaming"
        PARTIAL = "partial", "Partial"
        ERROR = "error", "Error"
        CANCELLED = "cancelled", "Cancelled"

    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETE)
    provider = models.SlugField(max_length=50, blank=True)
    model = models.CharField(max_length=200, blank=True)
    # Null for platform credentials (from the environment) and once a credential is deleted.
    credential = models.ForeignKey(
        "providers.ProviderCredential",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    error_code = models.CharField(max_length=50, blank=True)
    finish_reason = models.CharField(max_length=30, blank=True)
    # The provider call's request id (its usage record's key), set when the answer starts; the
    # usage record itself is linked when the call is settled.
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    usage = models.ForeignKey(
        "providers.UsageRecord",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["chat", "id"], name="message_chat_order_idx")]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} ({self.status})"


class SystemPromptQuerySet(models.QuerySet["SystemPrompt"]):
    def for_member(self, membership: Membership) -> SystemPromptQuerySet:
        """The member's own prompts and those shared with the organisation."""
        return self.filter(organization_id=membership.organization_id).filter(
            Q(owner__isnull=True) | Q(owner_id=membership.user_id)
        )


class SystemPrompt(TimeStampedModel):
    """A reusable system prompt: personal (`owner` set) or shared with the organisation
    (`owner` empty; only organisation admins write those). A default prompt seeds new chats:
    the member's own default first, then the organisation's."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="system_prompts"
    )
    owner = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.CASCADE, related_name="system_prompts"
    )
    name = models.CharField(max_length=100)
    content = models.TextField()
    is_default = models.BooleanField(default=False)

    objects = SystemPromptQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "owner", "name"],
                condition=Q(owner__isnull=False),
                name="systemprompt_personal_name_unique",
            ),
            models.UniqueConstraint(
                fields=["organization", "name"],
                condition=Q(owner__isnull=True),
                name="systemprompt_shared_name_unique",
            ),
            models.UniqueConstraint(
                fields=["organization", "owner"],
                condition=Q(owner__isnull=False, is_default=True),
                name="systemprompt_personal_default_unique",
            ),
            models.UniqueConstraint(
                fields=["organization"],
                condition=Q(owner__isnull=True, is_default=True),
                name="systemprompt_shared_default_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def shared(self) -> bool:
        return self.owner_id is None


class ChatPresence(models.Model):
    """Per-chat state every process shares: the one-answer-at-a-time lock, and how many sockets
    watch the chat. A row of its own, written only by `chats.services.presence`'s statements,
    so that saving a Chat (the admin saves every field) never writes over a lock taken since."""

    chat = models.OneToOneField(
        Chat, on_delete=models.CASCADE, primary_key=True, related_name="presence"
    )
    # The answer holding the lock: its request id and the channel that generates it.
    lock_owner = models.CharField(max_length=255, blank=True)
    # A lock left by a crashed process frees itself then.
    lock_until = models.DateTimeField(null=True)
    watchers = models.PositiveIntegerField(default=0)
    # A count left high by a crashed process is forgotten then (it only costs needless sends).
    watchers_until = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"presence of chat {self.chat_id}"
