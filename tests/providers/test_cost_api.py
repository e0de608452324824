"""REST endpoints of cost controls: limits, alerts, webhook deliveries and cost policy (admins),
usage (members: their own; admins: the organisation), and each member's budget."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from providers.models import (
    AlertEvent,
    CostPolicy,
    ProviderCredential,
    SpendingCounter,
    SpendingLimit,
    UsageRecord,
    WebhookDelivery,
)
from providers.periods import period_bounds

pytestmark = pytest.mark.django_db


def make_limit(organization, amount="10", **fields) -> SpendingLimit:
    fields.setdefault("scope", "organization")
    fields.setdefault("period", "month")
    return SpendingLimit.objects.create(organization=organization, amount=Decimal(amount), **fields)


def credential(organization, name="team key") -> ProviderCredential:
    stored = ProviderCredential(
        organization=organization, name=name, provider="openai", kind="openai"
    )
    stored.set_secret("sk-test-0000000000")
    stored.save()
    return stored


def ledger(organization, user, *, at, cost="0.01", **fields) -> UsageRecord:
    fields.setdefault("provider", "openai")
    fields.setdefault("model", "gpt-4o")
    fields.setdefault("status", "ok")
    fields.setdefault("price_source", UsageRecord.PriceSource.CATALOGUE)
    return UsageRecord.objects.create(
        request_id=uuid.uuid4().hex,
        organization=organization,
        user=user,
        input_tokens=100,
        output_tokens=10,
        cost=None if cost is None else Decimal(cost),
        created_at=at,
        **fields,
    )


# --- limits ---------------------------------------------------------------------------------


def test_admin_creates_and_lists_limits_with_their_current_period(
    alice_api, acme, bob_membership
) -> None:
    created = alice_api.post(
        "/api/limits",
        {"name": "Team", "scope": "organization", "period": "month", "amount": "100", "hard": True},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["alert_thresholds"] == [50, 80, 100]
    member = alice_api.post(
        "/api/limits",
        {
            "scope": "member",
            "membership": bob_membership.pk,
            "period": "day",
            "amount": "5.5",
            "hard": False,
            "alert_thresholds": [90, 50, 50],
        },
        format="json",
    )
    assert member.status_code == 201, member.json()
    assert member.json()["member_email"] == "bob@example.com"
    assert member.json()["alert_thresholds"] == [50, 90]
    limit = SpendingLimit.objects.get(pk=created.json()["id"])
    start, _ = period_bounds("month", datetime.now(tz=UTC), acme.timezone)
    SpendingCounter.objects.create(
        limit=limit, period_start=start, spent=Decimal(30), reserved=Decimal(5)
    )
    listed = alice_api.get("/api/limits").json()["results"]
    team = next(row for row in listed if row["id"] == limit.pk)
    assert team["current"]["spent"] == "30.0000000000"
    assert team["current"]["remaining"] == "65.0000000000"
    assert team["current"]["resets_at"] is not None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": "member"}, "membership"),
        ({"scope": "credential"}, "credential"),
        ({"scope": "organization", "amount": "-1"}, "amount"),
        ({"scope": "organization", "alert_thresholds": [0]}, "alert_thresholds"),
        ({"scope": "organization", "period": "year"}, "period"),
    ],
)
def test_invalid_limits_are_refused_by_field(alice_api, acme, body, field) -> None:
    response = alice_api.post(
        "/api/limits", {"period": "day", "amount": "1", **body}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert field in response.json()["error"]["fields"]


def test_a_limit_cannot_target_another_organisations_member_or_key(alice_api, acme, other) -> None:
    from accounts.models import Membership

    theirs = Membership.objects.get(organization=other)
    response = alice_api.post(
        "/api/limits",
        {"scope": "member", "membership": theirs.pk, "period": "day", "amount": "1"},
        format="json",
    )
    assert response.status_code == 400
    assert "membership" in response.json()["error"]["fields"]
    key = credential(other)
    response = alice_api.post(
        "/api/limits",
        {"scope": "credential", "credential": key.pk, "period": "day", "amount": "1"},
        format="json",
    )
    assert "credential" in response.json()["error"]["fields"]


def test_admin_updates_amount_but_not_the_scope_and_deletes(
    alice_api, acme, bob_membership
) -> None:
    limit = make_limit(acme, "10")
    response = alice_api.patch(
        f"/api/limits/{limit.pk}", {"amount": "20", "scope": "member", "hard": False}, format="json"
    )
    assert response.status_code == 200, response.json()
    limit.refresh_from_db()
    assert (limit.amount, limit.scope, limit.hard) == (20, "organization", False)
    assert alice_api.get(f"/api/limits/{limit.pk}").json()["current"]["spent"] == "0.0000000000"
    assert alice_api.delete(f"/api/limits/{limit.pk}").status_code == 204
    assert not SpendingLimit.objects.exists()


@pytest.mark.parametrize(
    "url", ["/api/limits", "/api/alerts", "/api/webhook-deliveries", "/api/cost-policy"]
)
def test_members_cannot_use_admin_endpoints(bob_api, acme, url) -> None:
    response = bob_api.get(url)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_required"


def test_members_cannot_create_limits(bob_api, acme) -> None:
    response = bob_api.post(
        "/api/limits", {"scope": "organization", "period": "day", "amount": "1"}, format="json"
    )
    assert response.status_code == 403
    assert not SpendingLimit.objects.exists()


def test_outsiders_get_404_for_another_organisations_limit(charlie_api, acme) -> None:
    limit = make_limit(acme)
    assert charlie_api.get("/api/limits").json()["results"] == []
    assert charlie_api.get(f"/api/limits/{limit.pk}").status_code == 404
    assert (
        charlie_api.patch(f"/api/limits/{limit.pk}", {"amount": "1"}, format="json").status_code
        == 404
    )
    assert charlie_api.delete(f"/api/limits/{limit.pk}").status_code == 404
    assert charlie_api.get("/api/limits", HTTP_X_ORGANIZATION="acme").status_code == 404
    assert SpendingLimit.objects.get().amount == 10


# --- alerts, deliveries, policy -------------------------------------------------------------


def test_admins_see_their_organisations_alerts_and_deliveries_only(
    alice_api, charlie_api, acme
) -> None:
    limit = make_limit(acme, "10", name="Team")
    event = AlertEvent.objects.create(
        organization=acme,
        limit=limit,
        period_start=datetime(2025, 1, 1, tzinfo=UTC),
        threshold=80,
        spent=Decimal(8),
        amount=Decimal(10),
    )
    WebhookDelivery.objects.create(
        organization=acme,
        event=event,
        url="https://hooks.example.com/x",
        attempt=1,
        status_code=500,
        error="HTTP 500",
    )
    alerts = alice_api.get("/api/alerts").json()["results"]
    assert [(a["limit_name"], a["threshold"]) for a in alerts] == [("Team", 80)]
    assert alice_api.get(f"/api/alerts?limit={limit.pk + 1}").json()["results"] == []
    deliveries = alice_api.get("/api/webhook-deliveries").json()["results"]
    assert [(d["attempt"], d["status_code"]) for d in deliveries] == [(1, 500)]
    assert charlie_api.get("/api/alerts").json()["results"] == []
    assert charlie_api.get("/api/webhook-deliveries").json()["results"] == []


def test_cost_policy_defaults_and_updates(alice_api, acme) -> None:
    policy = alice_api.get("/api/cost-policy").json()
    assert policy["unpriced_policy"] == "block" and policy["has_webhook_secret"] is False
    key = credential(acme)
    response = alice_api.patch(
        "/api/cost-policy",
        {
            "unpriced_policy": "default_price",
            "default_input_per_mtok": "1.5",
            "member_requests_per_minute": 30,
            "credential_rate_limits": {str(key.pk): {"tokens_per_minute": 10000}},
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    stored = CostPolicy.objects.get(organization=acme)
    assert stored.unpriced_policy == "default_price" and stored.default_input_per_mtok == Decimal(
        "1.5"
    )
    assert stored.credential_rate_limits == {str(key.pk): {"tokens_per_minute": 10000}}


def test_webhook_secret_is_generated_once_and_never_shown_again(alice_api, acme) -> None:
    response = alice_api.patch(
        "/api/cost-policy", {"webhook_url": "https://hooks.example.com/gh"}, format="json"
    )
    secret = response.json()["webhook_secret"]
    assert len(secret) >= 32
    assert CostPolicy.objects.get(organization=acme).webhook_secret() == secret
    again = alice_api.get("/api/cost-policy").json()
    assert "webhook_secret" not in again and again["has_webhook_secret"] is True
    chosen = alice_api.patch(
        "/api/cost-policy", {"webhook_secret": "mine-0123456789"}, format="json"
    )
    assert "webhook_secret" not in chosen.json()
    assert CostPolicy.objects.get(organization=acme).webhook_secret() == "mine-0123456789"


@pytest.mark.parametrize(
    "body",
    [
        {"webhook_url": "http://169.254.169.254/latest/meta-data"},
        {"credential_rate_limits": {"999999": {"requests_per_minute": 1}}},
        {"unpriced_policy": "maybe"},
    ],
)
def test_invalid_cost_policy_is_refused(alice_api, acme, body) -> None:
    response = alice_api.patch("/api/cost-policy", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_credential_rate_limits_cannot_name_another_organisations_key(
    alice_api, acme, other
) -> None:
    theirs = credential(other)
    body = {"credential_rate_limits": {str(theirs.pk): {"requests_per_minute": 1}}}
    assert alice_api.patch("/api/cost-policy", body, format="json").status_code == 400


# --- usage ----------------------------------------------------------------------------------


@pytest.fixture
def rows(acme, other, alice, bob, charlie):
    """Acme in Paris: alice and bob's calls on 14 and 15 June; Other's call the same day."""
    acme.timezone = "Europe/Paris"
    acme.save()
    return {
        "alice": ledger(acme, alice, at=datetime(2025, 6, 14, 9, tzinfo=UTC), cost="0.50"),
        "bob_late": ledger(
            acme,
            bob,
            at=datetime(2025, 6, 14, 22, 30, tzinfo=UTC),
            cost="0.25",
            model="gpt-4o-mini",
        ),
        "bob_unpriced": ledger(
            acme,
            bob,
            at=datetime(2025, 6, 15, 8, tzinfo=UTC),
            cost=None,
            provider="ollama",
            model="=cmd|calc",
            price_source=UsageRecord.PriceSource.UNKNOWN,
            status="partial",
        ),
        "charlie": ledger(other, charlie, at=datetime(2025, 6, 14, 9, tzinfo=UTC), cost="9"),
    }


def ids(response) -> set[str]:
    return {row["request_id"] for row in response.json()["results"]}


def test_members_see_only_their_own_usage(bob_api, rows) -> None:
    response = bob_api.get("/api/usage")
    assert ids(response) == {rows["bob_late"].request_id, rows["bob_unpriced"].request_id}
    totals = response.json()["totals"]
    assert totals == {
        "requests": 2,
        "input_tokens": 200,
        "output_tokens": 20,
        "cost": "0.2500000000",
        "unpriced_requests": 1,
        "estimated_requests": 0,
        "error_requests": 0,
    }
    # Asking for someone else's rows finds nothing rather than leaking them.
    assert ids(bob_api.get(f"/api/usage?member={rows['alice'].user_id}")) == set()


def test_admins_see_the_whole_organisation_and_nothing_else(alice_api, charlie_api, rows) -> None:
    assert ids(alice_api.get("/api/usage")) == {
        rows[k].request_id for k in ("alice", "bob_late", "bob_unpriced")
    }
    assert ids(charlie_api.get("/api/usage")) == {rows["charlie"].request_id}
    assert charlie_api.get("/api/usage", HTTP_X_ORGANIZATION="acme").status_code == 404


def test_usage_filters(alice_api, rows) -> None:
    # 22:30 UTC on 14 June is 15 June in Paris.
    assert ids(alice_api.get("/api/usage?from=2025-06-15")) == {
        rows["bob_late"].request_id,
        rows["bob_unpriced"].request_id,
    }
    assert ids(alice_api.get("/api/usage?to=2025-06-14")) == {rows["alice"].request_id}
    assert ids(
        alice_api.get("/api/usage?from=2025-06-14T10:00:00%2B00:00&to=2025-06-15T08:00:00Z")
    ) == {rows["bob_late"].request_id}
    assert ids(alice_api.get(f"/api/usage?member={rows['alice'].user_id}")) == {
        rows["alice"].request_id
    }
    assert ids(alice_api.get("/api/usage?provider=ollama")) == {rows["bob_unpriced"].request_id}
    assert ids(alice_api.get("/api/usage?model=gpt-4o-mini")) == {rows["bob_late"].request_id}
    assert ids(alice_api.get("/api/usage?status=partial")) == {rows["bob_unpriced"].request_id}


def test_usage_grouped_by_local_day_with_totals(alice_api, rows) -> None:
    body = alice_api.get("/api/usage?group_by=day").json()
    assert [(g["day"], g["requests"], g["cost"]) for g in body["groups"]] == [
        ("2025-06-14", 1, "0.5000000000"),
        ("2025-06-15", 2, "0.2500000000"),
    ]
    assert body["totals"]["requests"] == 3 and body["totals"]["cost"] == "0.7500000000"


def test_usage_grouped_by_member_and_by_model(alice_api, rows) -> None:
    members = alice_api.get("/api/usage?group_by=member").json()["groups"]
    assert sorted((g["email"], g["requests"]) for g in members) == [
        ("alice@example.com", 1),
        ("bob@example.com", 2),
    ]
    models = alice_api.get(
        "/api/usage?group_by=provider,model&member=" + str(rows["bob_late"].user_id)
    ).json()
    assert [(g["provider"], g["model"], g["unpriced_requests"]) for g in models["groups"]] == [
        ("ollama", "=cmd|calc", 1),
        ("openai", "gpt-4o-mini", 0),
    ]


def test_unknown_grouping_is_a_400_in_the_error_shape(alice_api, rows) -> None:
    response = alice_api.get("/api/usage?group_by=colour")
    assert response.status_code == 400
    assert "group_by" in response.json()["error"]["fields"]


def test_csv_exports_exactly_the_filtered_rows(alice_api, rows) -> None:
    response = alice_api.get("/api/usage?format=csv&from=2025-06-15")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    content = b"".join(response.streaming_content).decode()
    table = list(csv.DictReader(io.StringIO(content)))
    assert [r["request_id"] for r in table] == [
        rows["bob_late"].request_id,
        rows["bob_unpriced"].request_id,
    ]
    unpriced = table[1]
    assert unpriced["cost"] == "" and unpriced["price_source"] == "unknown"
    assert unpriced["model"] == "'=cmd|calc"  # never a spreadsheet formula
    assert table[0]["member_email"] == "bob@example.com"


def test_members_csv_holds_only_their_rows(bob_api, rows) -> None:
    content = b"".join(bob_api.get("/api/usage?format=csv").streaming_content).decode()
    assert len(list(csv.DictReader(io.StringIO(content)))) == 2


def test_usage_stays_readable_when_redis_is_down(alice_api, rows, settings) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert alice_api.get("/api/usage").status_code == 200


# --- my budget ------------------------------------------------------------------------------


def test_members_see_the_limits_that_apply_to_them(
    bob_api, acme, bob_membership, alice_membership
) -> None:
    org = make_limit(acme, "100", name="Team")
    mine = make_limit(acme, "4", scope="member", membership=bob_membership, period="day")
    make_limit(acme, "1", scope="member", membership=alice_membership)
    key_limit = make_limit(acme, "50", scope="credential", credential=credential(acme), hard=False)
    start, _ = period_bounds("day", datetime.now(tz=UTC), acme.timezone)
    SpendingCounter.objects.create(
        limit=mine, period_start=start, spent=Decimal(1), reserved=Decimal("0.5")
    )
    lines = {line["id"]: line for line in bob_api.get("/api/me/budget").json()["limits"]}
    assert set(lines) == {org.pk, mine.pk, key_limit.pk}
    assert lines[mine.pk]["remaining"] == "2.5000000000"
    assert lines[mine.pk]["percent_used"] == "25.00"
    assert lines[org.pk]["remaining"] == "100.0000000000"
    assert lines[key_limit.pk]["credential_name"] == "team key"


def test_outsiders_see_none_of_another_organisations_budget(charlie_api, acme) -> None:
    make_limit(acme)
    assert charlie_api.get("/api/me/budget").json()["limits"] == []
    assert charlie_api.get("/api/me/budget", HTTP_X_ORGANIZATION="acme").status_code == 404


# --- Django admin ---------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, db, settings):
    import types

    from django.contrib import admin
    from django.urls import path

    import config.urls
    import providers.admin_cost  # noqa: F401 - registers the classes (providers/admin.py imports it)
    from accounts.models import User

    # The admin's URLs are computed when the URLconf loads: build them again now that the
    # cost-control classes are surely registered.
    urlconf = types.ModuleType("cost_admin_urls")
    urlconf.urlpatterns = [path("admin/", admin.site.urls), *config.urls.urlpatterns]
    settings.ROOT_URLCONF = urlconf

    staff = User.objects.create_superuser("staff@example.com", "staff-password-1")
    client.force_login(staff)
    return client


def test_usage_changelist_shows_totals_of_the_filtered_rows(staff_client, rows) -> None:
    page = staff_client.get("/admin/providers/usagerecord/?provider__exact=openai")
    assert page.status_code == 200
    assert "Totals: 3 calls" in page.content.decode()  # Acme's two and Other's one
    everything = staff_client.get("/admin/providers/usagerecord/").content.decode()
    assert "4 calls" in everything and "1 calls of unknown cost" in everything


def test_the_ledger_is_read_only_in_the_admin(staff_client, rows) -> None:
    record = rows["alice"]
    assert staff_client.get("/admin/providers/usagerecord/add/").status_code == 403
    view = staff_client.get(f"/admin/providers/usagerecord/{record.pk}/change/")
    assert view.status_code == 200
    staff_client.post(f"/admin/providers/usagerecord/{record.pk}/change/", {"cost": "0"})
    record.refresh_from_db()
    assert record.cost == Decimal("0.5")


def test_limit_admin_shows_its_counters(staff_client, acme) -> None:
    limit = make_limit(acme, "10", name="Team")
    SpendingCounter.objects.create(
        limit=limit, period_start=datetime(2025, 1, 1, tzinfo=UTC), spent=Decimal(3)
    )
    page = staff_client.get(f"/admin/providers/spendinglimit/{limit.pk}/change/")
    assert page.status_code == 200 and "3.0000000000" in page.content.decode()


def test_cost_policy_admin_keeps_the_webhook_secret_write_only(staff_client, acme) -> None:
    form = {
        "organization": acme.pk,
        "unpriced_policy": "block",
        "default_input_per_mtok": "0",
        "default_output_per_mtok": "0",
        "credential_rate_limits": "{}",
        "webhook_url": "https://hooks.example.com/gh",
        "webhook_secret": "admin-chosen-secret",
    }
    response = staff_client.post("/admin/providers/costpolicy/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = CostPolicy.objects.get(organization=acme)
    assert policy.webhook_secret() == "admin-chosen-secret"
    page = staff_client.get(f"/admin/providers/costpolicy/{policy.pk}/change/").content.decode()
    assert "admin-chosen-secret" not in page
