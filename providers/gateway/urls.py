"""The OpenAI-compatible endpoints, under /v1/ like OpenAI's own (no trailing slashes: the
SDKs append paths to a base URL ending in /v1)."""

from __future__ import annotations

from django.urls import path

from providers.gateway import views

app_name = "gateway"

urlpatterns = [
    path("v1/chat/completions", views.chat_completions, name="chat-completions"),
    path("v1/models", views.list_models, name="models"),
    # Model ids contain a slash (provider/model).
    path("v1/models/<path:model>", views.retrieve_model, name="model"),
]
