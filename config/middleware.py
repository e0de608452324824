"""A request id on every request: returned in X-Request-ID, used in error bodies and logs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

_SAFE_ID = re.compile(r"^[A-Za-z0-9._\-]{8,64}$")


def _assign(request: HttpRequest) -> None:
    incoming = request.headers.get("X-Request-ID", "")
    request.request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex


class RequestIdMiddleware:
    # Both sync and async, so async views (the /v1 gateway) pay no thread hop for it.
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        _assign(request)
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        _assign(request)
        response = await self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response
