"""Small helpers shared by the portal's views."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import resolve_url
from django.utils.http import url_has_allowed_host_and_scheme

from config.errors import ApiError


def wants_json(request: HttpRequest) -> bool:
    """The page's script asks for JSON; a form posted without script gets a redirect."""
    return "application/json" in request.headers.get("Accept", "")


def done(request: HttpRequest, to: str, text: str = "", **data: Any) -> HttpResponse:
    """The answer to a successful POST: JSON for the script, else a message and a redirect."""
    if wants_json(request):
        return JsonResponse({"ok": True, "message": text, **data})
    if text:
        messages.success(request, text)
    return HttpResponseRedirect(resolve_url(to))


def failed(request: HttpRequest, to: str, error: ApiError | str, status: int = 400) -> HttpResponse:
    """The answer to a refused POST, with the service's own safe message."""
    text = error.message if isinstance(error, ApiError) else error
    code = error.code if isinstance(error, ApiError) else "invalid"
    if wants_json(request):
        return JsonResponse({"ok": False, "code": code, "message": text}, status=status)
    messages.error(request, text)
    return HttpResponseRedirect(resolve_url(to))


def form_errors(form: Any) -> str:
    return " ".join(f"{e}" for errors in form.errors.values() for e in errors)


def safe_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if allowed else resolve_url(fallback)
