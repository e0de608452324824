"""The staff usage report: sums equal the ledger for every grouping, CSV equals the filter."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.test import Client

from accounts.models import User
from providers.models import UsageRecord


def _row(org, user, *, day: int, cost: str | None, status: str = "ok", model: str = "sim-gpt"):
    return UsageRecord.objects.create(
        request_id=uuid.uuid4().hex,
        organization=org,
        user=user,
        provider="openai",
        model=model,
        input_tokens=100,
        output_tokens=10,
        cost=None if cost is None else Decimal(cost),
        price_source="catalogue" if cost is not None else "unknown",
        status=status,
        created_at=datetime(2026, 3, day, 12, tzinfo=UTC),
    )


@pytest.fixture
def ledger(acme, other, alice, bob, charlie):
    return [
        _row(acme, alice, day=1, cost="1.5"),
        _row(acme, bob, day=1, cost="0.25", status="error"),
        _row(acme, bob, day=2, cost=None, model="sim-gpt-mini"),
        _row(other, charlie, day=2, cost="4"),
        _row(other, charlie, day=9, cost="100"),  # outside the range below
    ]


@pytest.fixture
def staff_client(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("staff@example.com", "staff-password-1"))
    return client


RANGE = "start=2026-03-01&end=2026-03-05"


def test_report_totals_equal_the_ledger(staff_client, ledger) -> None:
    response = staff_client.get(f"/admin/reports/usage/?{RANGE}")
    assert response.status_code == 200
    expected = UsageRecord.objects.filter(created_at__day__lte=5).aggregate(s=Sum("cost"))["s"]
    assert response.context["totals"]["cost"] == expected == Decimal("5.75")
    assert response.context["totals"]["requests"] == 4
    html = response.content.decode()
    assert '<strong id="report-total-cost">5.7500</strong>' in html
    assert "<svg" in html and "<rect" in html


def test_each_grouping_sums_to_the_ledger(staff_client, ledger) -> None:
    tables = dict(staff_client.get(f"/admin/reports/usage/?{RANGE}").context["tables"])
    by_org = {g["organization"]: g for g in tables["Organisation"]}
    assert by_org["acme"]["cost"] == Decimal("1.75")
    assert by_org["acme"]["requests"] == 3
    assert by_org["acme"]["unpriced_requests"] == 1
    assert by_org["acme"]["error_rate"] == pytest.approx(1 / 3)
    assert by_org["other"]["cost"] == Decimal("4")
    members = {(g["organization"], g["email"]): g["requests"] for g in tables["Member"]}
    assert members == {
        ("acme", "alice@example.com"): 1,
        ("acme", "bob@example.com"): 2,
        ("other", "charlie@example.com"): 1,
    }
    models = {g["model"]: g["requests"] for g in tables["Provider and model"]}
    assert models == {"sim-gpt": 3, "sim-gpt-mini": 1}
    for label, groups in tables.items():
        assert sum(g["requests"] for g in groups) == 4, label


def test_organisation_filter_and_csv_match(staff_client, ledger) -> None:
    response = staff_client.get(f"/admin/reports/usage/?{RANGE}&organization=acme&format=csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    expected = {r.request_id for r in ledger[:3]}
    assert {r["request_id"] for r in rows} == expected
    assert sum(Decimal(r["cost"] or 0) for r in rows) == Decimal("1.75")


def test_report_refuses_non_staff(alice, acme, ledger) -> None:
    client = Client()
    client.force_login(alice)
    response = client.get("/admin/reports/usage/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_admin_index_links_the_report(staff_client) -> None:
    assert "/admin/reports/usage/" in staff_client.get("/admin/").content.decode()


def test_report_groups_the_digits_of_large_counts(staff_client, acme, alice) -> None:
    row = _row(acme, alice, day=3, cost="2")
    UsageRecord.objects.filter(pk=row.pk).update(input_tokens=2345678)
    html = staff_client.get(f"/admin/reports/usage/?{RANGE}").content.decode()
    assert "2,345,678 input" in html  # the totals line
    assert "<td>2,345,678</td>" in html  # each grouping's row
