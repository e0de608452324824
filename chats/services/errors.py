"""The errors of the chats services. All are `ApiError`s, so REST answers them in the one error
shape and the WebSocket consumer turns them into error frames with the same code."""

from __future__ import annotations

from typing import Any

from rest_framework import status

from config.errors import INTERNAL_ERROR, ApiError


class ChatNotFound(ApiError):
    """Also what outsiders get for a chat that exists: they learn nothing about it."""

    def __init__(self) -> None:
        super().__init__("not_found", "No such chat.", status_code=status.HTTP_404_NOT_FOUND)


class AccessRevoked(ApiError):
    """The caller's membership or token is gone since the socket opened."""

    def __init__(self) -> None:
        super().__init__(
            "access_revoked",
            "Your access to this organisation has ended.",
            status_code=status.HTTP_403_FORBIDDEN,
        )


class ChatBusy(ApiError):
    def __init__(self) -> None:
        super().__init__(
            "busy",
            "An answer is already being generated in this chat; wait for it or cancel it.",
            status_code=status.HTTP_409_CONFLICT,
        )


class NotGenerating(ApiError):
    """A cancel with no answer being generated in the chat (already finished, or never begun)."""

    def __init__(self) -> None:
        super().__init__(
            "not_generating",
            "No answer is being generated in this chat.",
            status_code=status.HTTP_409_CONFLICT,
        )


class ChatDeleted(ApiError):
    """Sent on the sockets of a chat that was just deleted, before they are closed."""

    def __init__(self) -> None:
        super().__init__("chat_deleted", "This chat was deleted.", status_code=status.HTTP_410_GONE)


class MessageFailed(ApiError):
    """Something unexpected stopped a message before its answer began (a database error, say):
    nothing was stored, no reservation or lock is left, and the details are in the server log."""

    def __init__(self) -> None:
        super().__init__(
            INTERNAL_ERROR,
            "The message could not be sent. Try again.",
            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )


class InputError(ApiError):
    """Invalid input, with field errors in the shape DRF's validation errors have
    (`{field: [{"code", "message"}]}`). The top-level code is the field error's own code when a
    single field is at fault, so WebSocket clients can switch on it; `invalid` when several are."""

    def __init__(self, errors: dict[str, tuple[str, str]]) -> None:
        fields: dict[str, Any] = {
            name: [{"code": code, "message": message}] for name, (code, message) in errors.items()
        }
        if len(errors) == 1:
            ((code, message),) = errors.values()
        else:
            code, message = "invalid", "The request is invalid; see fields."
        super().__init__(code, message, fields=fields)

    @classmethod
    def one(cls, field: str, code: str, message: str) -> InputError:
        return cls({field: (code, message)})


class ProviderFailed(ApiError):
    """A provider call failed (or its answer could not be saved: `internal_error`); the
    assistant message was saved with status `error` when it could be."""

    def __init__(
        self, code: str, message: str, *, message_id: int, retry_after: float | None = None
    ) -> None:
        headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
        super().__init__(
            code, message, status_code=_PROVIDER_STATUS.get(code, 502), headers=headers
        )
        self.message_id = message_id


# Transient upstream trouble is a 503 (try again), a timeout a 504; the rest — a rejected key, an
# unknown model at the provider, a broken stream — is a bad gateway.
_PROVIDER_STATUS = {
    "rate_limited": status.HTTP_503_SERVICE_UNAVAILABLE,
    "overloaded": status.HTTP_503_SERVICE_UNAVAILABLE,
    "upstream_unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
    "timeout": status.HTTP_504_GATEWAY_TIMEOUT,
    "internal_error": status.HTTP_500_INTERNAL_SERVER_ERROR,
}
