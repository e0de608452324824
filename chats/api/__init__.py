"""The chats REST API: `urlpatterns` (under /api/) and `legacy_urlpatterns` (at the root)."""

from chats.api.urls import legacy_urlpatterns, urlpatterns

__all__ = ["legacy_urlpatterns", "urlpatterns"]
