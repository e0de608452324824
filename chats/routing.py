"""WebSocket routes."""

from __future__ import annotations

from django.urls import path

from chats.consumers import ChatConsumer

websocket_urlpatterns: list = [
    path("ws/chats/<int:chat_id>/", ChatConsumer.as_asgi()),
]
