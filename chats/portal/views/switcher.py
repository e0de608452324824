"""The organisation switcher, for users in several organisations."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.views.decorators.http import require_POST

from accounts.tenancy import SESSION_KEY, membership_resolve


@require_POST
@login_required
def org_switch(request: HttpRequest) -> HttpResponse:
    """Remember the organisation in the session. A slug the user does not belong to is a 404
    (from `membership_resolve`), like everywhere else."""
    membership = membership_resolve(
        user=request.user, slug=request.POST.get("organization", ""), fallback_first=True
    )
    request.session[SESSION_KEY] = membership.organization.slug
    # Pages of the previous organisation (its chats, its settings) are 404s in this one.
    return HttpResponseRedirect("/")
