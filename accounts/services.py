"""Writes of accounts: organisations and memberships."""

from __future__ import annotations

from django.db import transaction

from accounts.models import Membership, Organization, User


@transaction.atomic
def organization_create(
    *, name: str, slug: str, owner: User, timezone: str = "UTC"
) -> Organization:
    organization = Organization(name=name, slug=slug, timezone=timezone)
    organization.full_clean()
    organization.save()
    Membership.objects.create(user=owner, organization=organization, role=Membership.Role.OWNER)
    return organization


def membership_set(*, organization: Organization, user: User, role: str) -> Membership:
    membership, _ = Membership.objects.update_or_create(
        organization=organization, user=user, defaults={"role": role}
    )
    return membership
