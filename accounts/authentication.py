"""DRF authentication with personal API tokens (`Authorization: Bearer <token>`)."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.tokens import TokenError, bearer_from_header, token_authenticate


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        raw = bearer_from_header(header)
        if raw is None:
            if header and header.split(" ", 1)[0].lower() == "bearer":
                raise exceptions.AuthenticationFailed("The API token is missing.", "token_missing")
            return None
        try:
            token = token_authenticate(raw)
        except TokenError as exc:
            raise exceptions.AuthenticationFailed(exc.message, exc.code) from None
        return token.membership.user, token

    def authenticate_header(self, request: Request) -> str:
        # A WWW-Authenticate header makes DRF answer 401 rather than 403.
        return self.keyword
