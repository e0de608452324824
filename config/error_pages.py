"""What an unknown address or an unhandled failure answers, outside the views that answer their
own: API clients get their API's error shape (`/api/` and the original design's routes: ours;
`/v1/`: OpenAI's), people get a portal page. Django's defaults are HTML for everyone."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import get_template

from config.errors import INTERNAL_ERROR, INTERNAL_MESSAGE, error_body, request_id_of
from providers.gateway.wire import WireError

# The original design's routes answer in our shape too (`/providers`, `/chat/{id}`).
_API_PREFIXES = ("/api/", "/providers", "/chat/")
_GATEWAY_PREFIX = "/v1/"


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    message = f"Nothing answers at {request.path}."
    api = _api_response(request, 404, "not_found", message)
    if api is not None:
        return api
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    api = _api_response(request, 500, INTERNAL_ERROR, INTERNAL_MESSAGE)
    if api is not None:
        return api
    # No context processors: the page must render whatever state the failure left behind.
    return HttpResponse(get_template("500.html").render(), status=500)


def _api_response(
    request: HttpRequest, status: int, code: str, message: str
) -> HttpResponse | None:
    path = request.path
    if path.startswith(_GATEWAY_PREFIX):
        body = WireError(status, code, message).body()
    elif path.startswith(_API_PREFIXES):
        body = error_body(code, message, request_id_of(request))
    else:
        return None
    response = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    response["X-Request-ID"] = request_id_of(request)
    return response
