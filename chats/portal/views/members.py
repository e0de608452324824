"""Organisation admin: members and roles (invite by email, change role, remove)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts import members as member_services
from accounts.models import Membership
from chats.portal.access import admin_required
from chats.portal.common import done, failed, form_errors
from chats.portal.forms import InviteForm, RoleForm
from config.errors import ApiError


def _members(request: HttpRequest) -> QuerySet[Membership]:
    return Membership.objects.filter(organization=request.membership.organization).select_related(
        "user"
    )


@require_http_methods(["GET", "POST"])
@admin_required
def member_list(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            invited = member_services.member_invite(
                actor=request.membership,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                request=request,
            )
        except ApiError as exc:
            form.add_error(None, exc.message)
        else:
            return done(request, "portal:members", f"{invited.user.email} was added.")
    context = {
        "form": form,
        "members": _members(request).order_by("user__email"),
        "roles": Membership.Role.choices,
        "is_owner": request.membership.role == Membership.Role.OWNER,
    }
    return render(request, "portal/org/members.html", context, status=400 if form.errors else 200)


@require_POST
@admin_required
def member_role(request: HttpRequest, member_id: int) -> HttpResponse:
    membership = get_object_or_404(_members(request), pk=member_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        return failed(request, "portal:members", form_errors(form))
    try:
        member_services.member_set_role(
            actor=request.membership,
            membership=membership,
            role=form.cleaned_data["role"],
            request=request,
        )
    except ApiError as exc:
        return failed(request, "portal:members", exc, status=exc.status_code)
    text = f"{membership.user.email} is now {membership.get_role_display().lower()}."
    return done(request, "portal:members", text)


@require_POST
@admin_required
def member_remove(request: HttpRequest, member_id: int) -> HttpResponse:
    membership = get_object_or_404(_members(request), pk=member_id)
    email = membership.user.email
    try:
        member_services.member_remove(
            actor=request.membership, membership=membership, request=request
        )
    except ApiError as exc:
        return failed(request, "portal:members", exc, status=exc.status_code)
    return done(request, "portal:members", f"{email} was removed.")
