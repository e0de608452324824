"""A Django ASGI handler without the middleware stack, for the `/v1` gateway.

Programs call `/v1` with a bearer token: no session, cookie, CSRF form, flash message or HTML
page is involved, so the session, CSRF, auth, messages, clickjacking and CSP middlewares have
nothing to do there. They are not free: each `MiddlewareMixin` middleware in front of an async
view runs its request and response hooks through `sync_to_async`, two thread hops apiece, which
measured as most of the gateway's overhead. This handler keeps only what the gateway needs:
the request id and the security headers an API response should carry.
"""

from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponseBase

from config.middleware import RequestIdMiddleware


class _ApiHeaders:
    """`X-Content-Type-Options` and `Referrer-Policy`, as SecurityMiddleware would set them."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = await self.get_response(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


class LeanASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        inner = convert_exception_to_response(self._get_response_async)
        self._middleware_chain = _ApiHeaders(RequestIdMiddleware(inner))
