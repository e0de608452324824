"""Admin for platform staff: chats and messages are read-mostly records (edits would rewrite what
a member said or was answered), system prompts are editable."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from chats.models import Chat, Message, SystemPrompt


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ["role", "status", "provider", "model", "content", "error_code", "created_at"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Chat | None = None) -> bool:
        return False


@admin.register(Chat)
class ChatAdmin(admin.ModelAdmin):
    list_display = ["__str__", "organization", "owner", "archived", "created_at"]
    list_filter = ["archived", "organization"]
    search_fields = ["title", "owner__email", "organization__name"]
    list_select_related = ["organization", "owner"]
    raw_id_fields = ["organization", "owner"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "chat", "role", "status", "provider", "model", "error_code", "created_at"]
    list_filter = ["role", "status", "provider"]
    search_fields = ["request_id", "chat__title"]
    list_select_related = ["chat"]
    readonly_fields = [
        "chat",
        "role",
        "content",
        "status",
        "provider",
        "model",
        "credential",
        "error_code",
        "finish_reason",
        "request_id",
        "usage",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False


@admin.register(SystemPrompt)
class SystemPromptAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "owner", "is_default", "updated_at"]
    list_filter = ["is_default", "organization"]
    search_fields = ["name", "content", "owner__email"]
    list_select_related = ["organization", "owner"]
    raw_id_fields = ["organization", "owner"]
