"""An organisation's settings held in process memory (providers.snapshot): a change is seen by
the next call, whether it was made in this process or — announced only by the version on the
organisation row — in another one."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from accounts.models import Membership, Organization
from providers import admission as admissions
from providers import snapshot
from providers.admission import AdmissionRefused
from providers.models import PriceOverride, SpendingLimit
from tests.providers.test_admission import limit, rid, route

pytestmark = pytest.mark.django_db(transaction=True)


def fresh(membership: Membership) -> Membership:
    """The membership and organisation as a new request reads them."""
    return Membership.objects.select_related("organization").get(pk=membership.pk)


def admit(membership: Membership, max_tokens: int = 10) -> admissions.Admission:
    return admissions.admit_sync(rid(), membership, route(), 100, max_tokens)


def test_a_limit_created_here_applies_to_the_next_call(acme, bob_membership) -> None:
    PriceOverride.objects.create(
        provider="openai", model="gpt-4o", input_per_mtok=1_000_000, output_per_mtok=1_000_000
    )
    admit(fresh(bob_membership))  # the snapshot now holds "no limits"
    limit(acme, "50")
    with pytest.raises(AdmissionRefused) as refused:
        admit(fresh(bob_membership), max_tokens=100)  # worst case 200 USD
    assert refused.value.code == "budget_exceeded"


def test_a_stale_organization_row_in_this_process_still_sees_a_change(acme, bob_membership) -> None:
    member = fresh(bob_membership)  # read before the change, as an open socket holds it
    admit(member)
    limit(acme, "0")
    PriceOverride.objects.create(
        provider="openai", model="gpt-4o", input_per_mtok=1, output_per_mtok=1
    )
    with pytest.raises(AdmissionRefused):
        admit(member)


def test_a_change_made_by_another_process_is_seen_through_the_version(acme, bob_membership) -> None:
    PriceOverride.objects.create(
        provider="openai", model="gpt-4o", input_per_mtok=1, output_per_mtok=1
    )
    admit(fresh(bob_membership))
    held = snapshot.current(fresh(bob_membership).organization)
    assert held is not None and held.limits == ()
    # Another process inserts a limit and bumps the version; this process's signals never ran.
    table = SpendingLimit._meta.db_table
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (created_at, updated_at, organization_id, name, scope, period,"  # noqa: S608
            " amount, hard, alert_thresholds) VALUES (%s, %s, %s, '', 'organization', 'month',"
            " %s, %s, %s)",
            [now, now, acme.pk, Decimal("0"), True, "[]"],
        )
    Organization.objects.filter(pk=acme.pk).update(settings_version=F("settings_version") + 1)
    member = fresh(bob_membership)
    assert snapshot.current(member.organization) is None
    with pytest.raises(AdmissionRefused):
        admit(member)


def test_a_platform_price_override_bumps_every_organization(acme, other) -> None:
    before = dict(Organization.objects.values_list("pk", "settings_version"))
    PriceOverride.objects.create(
        provider="openai", model="gpt-4o", input_per_mtok=1, output_per_mtok=1
    )
    after = dict(Organization.objects.values_list("pk", "settings_version"))
    assert after[acme.pk] > before[acme.pk] and after[other.pk] > before[other.pk]


def test_an_organization_reusing_a_primary_key_gets_no_copy_of_another(acme) -> None:
    snapshot.snapshot(acme)
    impostor = Organization(pk=acme.pk, name="x", slug="x", settings_version=acme.settings_version)
    impostor.created_at = timezone.now()
    assert snapshot.current(impostor) is None
