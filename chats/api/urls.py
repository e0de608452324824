"""Routes of the chats API (mounted under /api/) and the original design's alias (at the root)."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from chats.api import views

router = SimpleRouter(trailing_slash=False)
router.register("chats", views.ChatViewSet, basename="chat")
router.register("system-prompts", views.SystemPromptViewSet, basename="system-prompt")

urlpatterns = [
    path("chats/<int:chat_id>/messages", views.ChatMessageList.as_view(), name="chat-messages"),
    *router.urls,
]

# POST /chat/{chat_id} {message, ...} → {"response": "..."}; also with a trailing slash, since a
# redirect would drop a POST body (that spelling is left out of the schema).
legacy_urlpatterns = [
    path("chat/<int:chat_id>", views.LegacyChat.as_view(), name="legacy-chat"),
    path("chat/<int:chat_id>/", views.LegacyChatSlash.as_view(), name="legacy-chat-slash"),
]
