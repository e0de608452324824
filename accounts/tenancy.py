"""Which organisation a request acts in.

A token is bound to its membership. Otherwise: the `X-Organization: <slug>` header (API
clients), then the portal's session choice, then the only membership. A slug the user does not
belong to is a 404, never a 403: outsiders learn nothing about other organisations.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404

from accounts.models import ApiToken, Membership, User
from config.errors import ApiError

SESSION_KEY = "organization_slug"
HEADER = "HTTP_X_ORGANIZATION"


class OrganizationRequired(ApiError):
    def __init__(self) -> None:
        super().__init__(
            "organization_required",
            "You belong to several organisations: name one with the X-Organization header.",
        )


def membership_resolve(
    *, user: User, token: ApiToken | None = None, slug: str | None = None, fallback_first: bool
) -> Membership:
    if token is not None:
        if slug and slug != token.membership.organization.slug:
            raise Http404("No such organisation.")
        return token.membership
    memberships = Membership.objects.for_user(user)
    if slug:
        found = memberships.filter(organization__slug=slug).first()
        if found is None:
            raise Http404("No such organisation.")
        return found
    first_two = list(memberships.order_by("organization__name")[:2])
    if not first_two:
        raise Http404("You are not a member of any organisation.")
    if len(first_two) > 1 and not fallback_first:
        raise OrganizationRequired()
    return first_two[0]


def request_membership(request: Any, *, fallback_first: bool = False) -> Membership:
    """The membership the request acts through, cached on the request. Portal pages pass
    `fallback_first` so a user who never chose lands in their first organisation."""
    cached = getattr(request, "_gatehouse_membership", None)
    if cached is not None:
        return cached
    token = request.auth if isinstance(getattr(request, "auth", None), ApiToken) else None
    header = request.META.get(HEADER)
    session = getattr(request, "session", None)
    slug = header or (session.get(SESSION_KEY) if session is not None and token is None else None)
    membership = membership_resolve(
        user=request.user, token=token, slug=slug, fallback_first=fallback_first
    )
    request._gatehouse_membership = membership
    return membership
