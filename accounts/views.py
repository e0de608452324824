"""Small pages of accounts: health check and the landing page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from accounts.models import Membership


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@login_required
def home(request: HttpRequest) -> HttpResponse:
    memberships = Membership.objects.for_user(request.user)
    return render(request, "accounts/home.html", {"memberships": memberships})
