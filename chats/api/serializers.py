"""Serializers of the chats API: output shapes, and input shapes for DRF validation and the
OpenAPI schema. No logic: writes go through `chats.services`."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from chats.models import Chat, Message, SystemPrompt
from chats.services.chats import SYSTEM_PROMPT_MAX_CHARS
from chats.services.inputs import MAX_CONTENT_CHARS


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    request_id = serializers.CharField()
    fields = serializers.DictField(
        required=False, help_text="Field errors: {field: [{code, message}]}"
    )


class ErrorSerializer(serializers.Serializer):
    """The one error shape of the API."""

    error = ErrorDetailSerializer()


# --- Chats ---------------------------------------------------------------------------------


class ChatSerializer(serializers.ModelSerializer):
    class Meta:
        model = Chat
        fields = [
            "id",
            "title",
            "system_prompt",
            "default_provider",
            "default_model",
            "archived",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ChatWriteSerializer(serializers.Serializer):
    """Create or update a chat. `system_prompt` sets the text; `system_prompt_id` copies a saved
    prompt instead. A new chat with neither starts from the default prompt, if any."""

    title = serializers.CharField(max_length=200, required=False, allow_blank=True)
    system_prompt = serializers.CharField(
        max_length=SYSTEM_PROMPT_MAX_CHARS, required=False, allow_blank=True, trim_whitespace=False
    )
    system_prompt_id = serializers.IntegerField(required=False, min_value=1)
    default_provider = serializers.SlugField(max_length=50, required=False, allow_blank=True)
    default_model = serializers.CharField(max_length=200, required=False, allow_blank=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError(
                {
                    name: serializers.ErrorDetail("Unknown field.", "unknown_field")
                    for name in unknown
                }
            )
        if "system_prompt" in attrs and "system_prompt_id" in attrs:
            raise serializers.ValidationError(
                {
                    "system_prompt_id": serializers.ErrorDetail(
                        "Give system_prompt or system_prompt_id, not both.", "conflict"
                    )
                }
            )
        return attrs


# --- Messages ------------------------------------------------------------------------------


class UsageSerializer(serializers.Serializer):
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    estimated = serializers.BooleanField(source="tokens_estimated")
    cost = serializers.DecimalField(
        max_digits=20,
        decimal_places=10,
        allow_null=True,
        help_text="USD; null when the model's price is unknown.",
    )


class MessageSerializer(serializers.ModelSerializer):
    # A plain string in the schema: an enum named "role" would collide with Membership's.
    role = serializers.CharField(read_only=True, help_text="`user` or `assistant`.")
    usage = UsageSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "role",
            "content",
            "status",
            "provider",
            "model",
            "error_code",
            "finish_reason",
            "request_id",
            "usage",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class MessageCreateSerializer(serializers.Serializer):
    """Documents the body of a message; validation is `chats.services.inputs`, shared with the
    WebSocket. Unknown fields are refused, those that would steer the call (api_key, base_url,
    headers...) with the code `field_not_allowed`."""

    content = serializers.CharField(max_length=MAX_CONTENT_CHARS)
    provider = serializers.CharField(required=False, allow_null=True, max_length=50)
    model = serializers.CharField(required=False, allow_null=True, max_length=200)
    temperature = serializers.FloatField(
        required=False, allow_null=True, help_text="Within the provider's range (e.g. 0 to 2)."
    )
    max_tokens = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="At most the model's output cap."
    )


class LegacyChatRequestSerializer(serializers.Serializer):
    message = serializers.CharField(max_length=MAX_CONTENT_CHARS)
    provider = serializers.CharField(required=False, allow_null=True)
    model = serializers.CharField(required=False, allow_null=True)
    temperature = serializers.FloatField(required=False, allow_null=True)
    max_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1)


class LegacyChatResponseSerializer(serializers.Serializer):
    response = serializers.CharField()


# --- System prompts ------------------------------------------------------------------------


class SystemPromptSerializer(serializers.ModelSerializer):
    shared = serializers.BooleanField(
        default=False, help_text="Shared with the organisation (admins only); fixed at creation."
    )
    owner = serializers.EmailField(source="owner.email", read_only=True, allow_null=True)
    content = serializers.CharField(max_length=SYSTEM_PROMPT_MAX_CHARS, trim_whitespace=False)

    class Meta:
        model = SystemPrompt
        fields = [
            "id",
            "name",
            "content",
            "shared",
            "is_default",
            "owner",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "owner", "created_at", "updated_at"]
