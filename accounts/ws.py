"""The WebSocket authentication stack: the same bearer tokens as the REST API, or the session.

Browsers always send an Origin on a WebSocket handshake, and it must be one of ALLOWED_HOSTS
(cross-site WebSocket hijacking rides on the session cookie). Programs send no Origin and
authenticate with a bearer token, which a foreign page cannot attach, so a missing Origin is
accepted.
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import OriginValidator
from django.conf import settings

from accounts.tokens import TokenError, atoken_authenticate, bearer_from_header


class BrowserOriginValidator(OriginValidator):
    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        return super().valid_origin(parsed_origin)


class TokenAuthMiddleware:
    """Puts the bearer token's user and token in the scope. A bad token is remembered as
    `token_error` so the consumer can refuse with a clear code."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers", []))
        raw = bearer_from_header(headers.get(b"authorization", b"").decode("latin-1") or None)
        if raw is not None:
            scope = dict(scope)
            try:
                token = await atoken_authenticate(raw)
            except TokenError as exc:
                scope["token_error"] = exc.code
            else:
                scope["user"] = token.membership.user
                scope["api_token"] = token
        return await self.app(scope, receive, send)


def websocket_stack(inner: Any) -> Any:
    """Origin check, then session auth, then token auth (a token wins over a cookie)."""
    allowed = settings.ALLOWED_HOSTS
    return BrowserOriginValidator(AuthMiddlewareStack(TokenAuthMiddleware(inner)), allowed)
