"""Editing a spending limit in the portal: its counters stay, so what was spent this period still
counts — the way to raise a budget without handing out the period's spend a second time."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import AuditEvent, Membership, Organization, User
from providers import budget
from providers.models import SpendingCounter, SpendingLimit

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(client: Client, alice: User, acme: Organization) -> Client:
    client.force_login(alice)
    return client


@pytest.fixture
def team_budget(acme: Organization) -> SpendingLimit:
    """$10 a month for the organisation, $7 of it spent this month."""
    limit = budget.spending_limit_create(
        organization=acme, scope="organization", period="month", amount=Decimal(10),
        hard=True, name="Team budget", alert_thresholds=[50, 80, 100],
    )  # fmt: skip
    (slot,) = budget.slots_for([budget.LimitRef.of(limit)], now=timezone.now(), tz=acme.timezone)
    SpendingCounter.objects.create(
        limit=limit, period_start=slot.start, period_end=slot.end, spent=Decimal(7)
    )
    return limit


def test_the_edit_page_shows_the_limit_as_it_is(alice_client: Client, team_budget) -> None:
    page = alice_client.get(f"/org/limits/{team_budget.pk}/").content.decode()
    assert 'value="Team budget"' in page and 'name="amount" value="10"' in page
    assert 'value="50, 80, 100"' in page
    assert "$7.00 spent" in page and "(70%)" in page
    listing = alice_client.get("/org/limits/").content.decode()
    assert f'href="/org/limits/{team_budget.pk}/"' in listing  # the list links to it


def test_raising_a_budget_keeps_what_was_spent_this_period(
    alice_client: Client, team_budget: SpendingLimit
) -> None:
    response = alice_client.post(
        f"/org/limits/{team_budget.pk}/",
        {"name": "Team budget", "period": "month", "amount": "20", "hard": "on",
         "alert_thresholds": "80, 100", "scope": "member"},
    )  # fmt: skip
    assert response.status_code == 302
    team_budget.refresh_from_db()
    assert team_budget.amount == Decimal(20) and team_budget.alert_thresholds == [80, 100]
    assert team_budget.scope == "organization"  # scope and target are not editable
    assert SpendingCounter.objects.get(limit=team_budget).spent == Decimal(7)
    listing = alice_client.get("/org/limits/").content.decode()
    assert "$7.00 spent" in listing and "(35%)" in listing
    event = AuditEvent.objects.get(action=AuditEvent.Action.LIMIT_CHANGED)
    change = event.summary
    assert Decimal(change["before"]["amount"]) == 10 and Decimal(change["after"]["amount"]) == 20


def test_a_bad_amount_is_refused_and_nothing_changes(
    alice_client: Client, team_budget: SpendingLimit
) -> None:
    response = alice_client.post(
        f"/org/limits/{team_budget.pk}/",
        {"name": "x", "period": "day", "amount": "-1", "alert_thresholds": "50"},
    )
    assert response.status_code == 400
    assert "greater than or equal to 0" in response.content.decode()
    team_budget.refresh_from_db()
    assert (team_budget.amount, team_budget.period) == (Decimal(10), "month")


def test_members_and_other_organisations_cannot_edit_it(
    team_budget: SpendingLimit, bob: User, charlie: User, other: Organization
) -> None:
    bob_client, charlie_client = Client(), Client()
    bob_client.force_login(bob)
    charlie_client.force_login(charlie)
    assert Membership.objects.filter(user=charlie, organization=other).exists()
    body = {"period": "month", "amount": "1000", "alert_thresholds": ""}
    assert bob_client.post(f"/org/limits/{team_budget.pk}/", body).status_code == 403
    assert charlie_client.post(f"/org/limits/{team_budget.pk}/", body).status_code == 404
    team_budget.refresh_from_db()
    assert team_budget.amount == Decimal(10)
