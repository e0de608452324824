"""Personal API tokens: create (the secret is shown once), list, revoke."""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from accounts.api import tokens_visible_to
from accounts.models import Membership
from accounts.tokens import IssuedToken, member_token_issue, member_token_revoke
from chats.portal.access import member_required
from chats.portal.common import done
from chats.portal.forms import TokenForm


def _issue(request: HttpRequest, membership: Membership, form: TokenForm) -> IssuedToken:
    days = form.cleaned_data["expires_in"]
    expires_at = timezone.now() + timedelta(days=int(days)) if days else None
    return member_token_issue(
        membership=membership,
        name=form.cleaned_data["name"],
        expires_at=expires_at,
        request=request,
    )


@require_http_methods(["GET", "POST"])
@member_required
def token_list(request: HttpRequest) -> HttpResponse:
    membership = request.membership
    form = TokenForm(request.POST or None)
    issued = None
    if request.method == "POST" and form.is_valid():
        issued = _issue(request, membership, form)
        form = TokenForm()
    context = {
        "form": form,
        "issued": issued,
        "tokens": tokens_visible_to(membership),
        "sees_all": membership.is_admin,
    }
    response = render(request, "portal/tokens/list.html", context)
    if issued is not None:
        # The secret is in this page only: never cached, never shown again.
        response["Cache-Control"] = "no-store"
    return response


@require_POST
@member_required
def token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    membership = request.membership
    token = get_object_or_404(tokens_visible_to(membership), pk=token_id)
    member_token_revoke(token=token, request=request)
    return done(request, "portal:tokens", f"Token “{token.name}” revoked.")
