"""One error shape for the whole API: {"error": {"code", "message", "request_id"}}."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

logger = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"
INTERNAL_MESSAGE = (
    "Something went wrong on our side. Try again; if it persists, quote the request id."
)


class ApiError(exceptions.APIException):
    """An error with a stable code, raised by services and views alike."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status_code: int = status.HTTP_400_BAD_REQUEST,
        fields: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail=message, code=code)
        self.code = code
        self.message = message
        self.status_code = status_code
        self.fields = fields
        self.headers = headers or {}


def request_id_of(request: Any) -> str:
    rid = getattr(request, "request_id", None)
    if rid is None:
        rid = uuid.uuid4().hex
        if request is not None:
            request.request_id = rid
    return rid


def error_body(code: str, message: str, request_id: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "request_id": request_id, **extra}}


def _code_and_message(exc: exceptions.APIException) -> tuple[str, str, dict[str, Any] | None]:
    if isinstance(exc, ApiError):
        return exc.code, exc.message, exc.fields
    if isinstance(exc, exceptions.ValidationError):
        return "invalid", "The request is invalid; see fields.", _flatten(exc.detail)
    detail = exc.detail
    code = getattr(detail, "code", None) or exc.default_code
    return str(code), str(detail), None


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return {"code": getattr(detail, "code", "invalid"), "message": str(detail)}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    request = context.get("request")
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return _internal_error(exc, request)
    code, message, fields = _code_and_message(exc)
    extra: dict[str, Any] = {"fields": fields} if fields else {}
    response.data = error_body(code, message, request_id_of(request), **extra)
    for name, value in getattr(exc, "headers", {}).items():
        response[name] = value
    response["X-Request-ID"] = request_id_of(request)
    return response


def _internal_error(exc: Exception, request: Any) -> Response:
    """A bug or an outage (a database gone, say): the API's one error shape, not Django's HTML
    page, and the traceback in the log under the request id the client is given."""
    request_id = request_id_of(request)
    logger.error("request %s failed", request_id, exc_info=exc)
    set_rollback()
    response = Response(
        error_body(INTERNAL_ERROR, INTERNAL_MESSAGE, request_id),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
    response["X-Request-ID"] = request_id
    return response
