"""Who the portal's pages act for: the signed-in user's membership, resolved like the API does
(`request_membership`), and the gates for organisation admin pages."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.models import Membership
from accounts.tenancy import SESSION_KEY, request_membership

View = Callable[..., HttpResponse]


def member_of(request: HttpRequest) -> Membership:
    """The membership this request acts through. A session pointing at an organisation the user
    has since left is forgotten instead of locking every page behind a 404."""
    try:
        return request_membership(request, fallback_first=True)
    except Http404:
        if not request.session.pop(SESSION_KEY, None):
            raise
        return request_membership(request, fallback_first=True)


def member_required(view: View) -> View:
    """Signed in and a member of some organisation; `request.membership` is set for the view."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            request.membership = member_of(request)
        except Http404:
            return render(request, "portal/no_org.html", status=403)
        # For the organisation switcher in the page header.
        request.memberships = list(Membership.objects.for_user(request.user))
        return view(request, *args, **kwargs)

    return wrapped


def admin_required(view: View) -> View:
    """Owners and admins of the current organisation. Members get a page that says why (403):
    they are not outsiders, so there is nothing to hide from them."""

    @member_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.membership.is_admin:
            return render(request, "portal/forbidden.html", status=403)
        return view(request, *args, **kwargs)

    return wrapped
