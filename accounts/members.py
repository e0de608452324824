"""Members of an organisation: invite, change role, remove — with the owner rules."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.audit import audit_record
from accounts.models import AuditEvent, Membership, User
from config.errors import ApiError

Role = Membership.Role


def _require_owner_for(actor: Membership, *roles: str) -> None:
    if Role.OWNER in roles and actor.role != Role.OWNER:
        raise ApiError("owner_required", "Only owners grant or remove ownership.", status_code=403)


def _keep_an_owner(membership: Membership) -> None:
    owners = Membership.objects.filter(organization=membership.organization, role=Role.OWNER)
    if membership.role == Role.OWNER and owners.count() == 1:
        raise ApiError(
            "last_owner", "An organisation must keep at least one owner.", status_code=409
        )


def _invite_email(user: User, request: Any) -> None:
    """A set-your-password link (Django's reset token), since the invitee has no password yet."""
    context = {
        "user": user,
        "uid": urlsafe_base64_encode(force_bytes(user.pk)),
        "token": default_token_generator.make_token(user),
        "protocol": "https" if request is not None and request.is_secure() else "http",
        "domain": request.get_host() if request is not None else "localhost",
    }
    send_mail(
        render_to_string("accounts/invite_subject.txt", context).strip(),
        render_to_string("accounts/invite_email.txt", context),
        None,
        [user.email],
    )


@transaction.atomic
def member_invite(*, actor: Membership, email: str, role: str, request: Any = None) -> Membership:
    _require_owner_for(actor, role)
    organization = actor.organization
    user = User.objects.filter(email__iexact=email).first()
    created = user is None
    if created:
        user = User.objects.create_user(email, password=None)
    if Membership.objects.filter(organization=organization, user=user).exists():
        raise ApiError("already_member", f"{email} is already a member.", status_code=409)
    membership = Membership.objects.create(organization=organization, user=user, role=role)
    audit_record(
        action=AuditEvent.Action.MEMBER_ADDED,
        organization=organization,
        request=request,
        target=membership,
        after={"email": user.email, "role": role},
    )
    if created:
        transaction.on_commit(lambda: _invite_email(user, request))
    return membership


@transaction.atomic
def member_set_role(
    *, actor: Membership, membership: Membership, role: str, request: Any = None
) -> Membership:
    _require_owner_for(actor, role, membership.role)
    if role != Role.OWNER:
        _keep_an_owner(membership)
    before = membership.role
    membership.role = role
    membership.save(update_fields=["role", "updated_at"])
    audit_record(
        action=AuditEvent.Action.MEMBER_ROLE_CHANGED,
        organization=membership.organization,
        request=request,
        target=membership,
        before={"role": before},
        after={"role": role},
    )
    return membership


@transaction.atomic
def member_remove(*, actor: Membership, membership: Membership, request: Any = None) -> None:
    _require_owner_for(actor, membership.role)
    _keep_an_owner(membership)
    audit_record(
        action=AuditEvent.Action.MEMBER_REMOVED,
        organization=membership.organization,
        request=request,
        target=membership,
        before={"email": membership.user.email, "role": membership.role},
    )
    membership.delete()
