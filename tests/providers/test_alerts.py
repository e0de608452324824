"""Alerts: each threshold fires once per period; email to admins; a signed, retried webhook
delivered to a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail

from providers import alerts, budget
from providers.adapters.base import Endpoint, Usage
from providers.admission import admit, settle
from providers.alerts import alerts_check, sign, verify, webhook_body, webhook_deliver
from providers.budget import LimitRef
from providers.calls import Candidate
from providers.models import (
    AlertEvent,
    CostPolicy,
    PriceOverride,
    SpendingLimit,
    WebhookDelivery,
)
from providers.routing import ModelLimits, Route

SECRET = "whsec-test-0123456789"


def make_limit(organization, amount="10", **fields) -> SpendingLimit:
    fields.setdefault("scope", "organization")
    fields.setdefault("period", "month")
    return SpendingLimit.objects.create(organization=organization, amount=Decimal(amount), **fields)


def spend(limit: SpendingLimit, cost: str, *, now: datetime | None = None) -> list[AlertEvent]:
    """Settle a call of `cost` on `limit` and run the alert check, as settlement does."""
    slots = budget.slots_for([LimitRef.of(limit)], now=now or datetime.now(tz=UTC), tz="UTC")
    charged = budget.settle(request_id=uuid.uuid4().hex, slots=slots, cost=Decimal(cost))
    return alerts_check(organization_id=limit.organization_id, charged=charged)


@pytest.mark.django_db
def test_each_threshold_fires_once_per_period(acme) -> None:
    limit = make_limit(acme, "10")
    assert spend(limit, "4") == []
    assert [e.threshold for e in spend(limit, "1")] == [50]
    assert spend(limit, "1") == []
    assert [e.threshold for e in spend(limit, "4")] == [80, 100]
    assert spend(limit, "5") == []
    assert AlertEvent.objects.filter(limit=limit).count() == 3


@pytest.mark.django_db
def test_one_big_call_fires_every_threshold_it_crosses(acme) -> None:
    limit = make_limit(acme, "10", alert_thresholds=[100, 25, 50])
    events = spend(limit, "30")
    assert [e.threshold for e in events] == [25, 50, 100]
    assert events[-1].spent == 30 and events[-1].amount == 10


@pytest.mark.django_db
def test_thresholds_fire_again_in_the_next_period(acme) -> None:
    limit = make_limit(acme, "10", period="day")
    today = datetime(2025, 5, 1, 12, tzinfo=UTC)
    assert [e.threshold for e in spend(limit, "6", now=today)] == [50]
    assert [e.threshold for e in spend(limit, "6", now=today + timedelta(days=1))] == [50]
    starts = AlertEvent.objects.values_list("period_start", flat=True)
    assert len(set(starts)) == 2


@pytest.mark.django_db
def test_soft_limits_alert_too_and_no_thresholds_means_no_alerts(acme) -> None:
    soft = make_limit(acme, "1", hard=False)
    quiet = make_limit(acme, "1", alert_thresholds=[])
    assert [e.threshold for e in spend(soft, "2")] == [50, 80, 100]
    assert spend(quiet, "2") == []


@pytest.mark.django_db
def test_an_alert_is_recorded_once_even_if_claimed_twice(acme) -> None:
    limit = make_limit(acme, "10")
    spend(limit, "6")
    counter = limit.counters.get()
    counter.alert_level = 0  # as if a second settlement raced past the claim
    counter.save()
    spend(limit, "0.5")
    assert AlertEvent.objects.filter(limit=limit, threshold=50).count() == 1


# --- webhook --------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on loopback that answers with the next of `statuses` (then 200)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/gatehouse"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    settings.GATEHOUSE_PROVIDER_ALLOWED_HOSTS = []  # loopback allowed
    settings.GATEHOUSE_WEBHOOK_BACKOFF = 0.01
    settings.GATEHOUSE_WEBHOOK_ATTEMPTS = 4
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def event(acme) -> AlertEvent:
    return spend(make_limit(acme, "10", name="Team"), "9")[0]


@pytest.mark.django_db
def test_webhook_signature_verifies_with_the_shared_secret(event, receiver) -> None:
    assert webhook_deliver(event=event, url=receiver.url, secret=SECRET)
    (request,) = receiver.requests
    header = request["headers"]["X-Gatehouse-Signature"]
    assert header.startswith("sha256=")
    assert verify(request["body"], SECRET, header)
    assert not verify(request["body"], "another-secret", header)
    assert not verify(request["body"] + b" ", SECRET, header)
    payload = json.loads(request["body"])
    assert payload["type"] == "spending_limit.threshold_reached"
    assert (payload["organization"], payload["threshold"]) == ("acme", 50)
    assert payload["limit"]["name"] == "Team" and payload["spent"] == "9.0000000000"


@pytest.mark.django_db
def test_a_receiver_can_check_the_signature_with_hmac_alone(event) -> None:
    import hashlib
    import hmac

    body = webhook_body(event)
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sign(body, SECRET) == expected


@pytest.mark.django_db
def test_webhook_is_retried_with_backoff_and_every_attempt_is_visible(event, receiver) -> None:
    receiver.statuses = [500, 503]
    assert webhook_deliver(event=event, url=receiver.url, secret=SECRET)
    attempts = list(
        WebhookDelivery.objects.order_by("attempt").values_list("attempt", "status_code")
    )
    assert attempts == [(1, 500), (2, 503), (3, 200)]
    assert WebhookDelivery.objects.get(attempt=3).delivered_at is not None
    bodies = {r["body"] for r in receiver.requests}
    assert len(bodies) == 1  # the same bytes every time, so receivers can de-duplicate


@pytest.mark.django_db
def test_webhook_gives_up_after_the_last_attempt(event, receiver) -> None:
    receiver.statuses = [500] * 10
    assert not webhook_deliver(event=event, url=receiver.url, secret=SECRET)
    assert WebhookDelivery.objects.count() == 4
    assert not WebhookDelivery.objects.filter(delivered_at__isnull=False).exists()


@pytest.mark.django_db
def test_a_client_error_is_not_retried(event, receiver) -> None:
    receiver.statuses = [410]
    assert not webhook_deliver(event=event, url=receiver.url, secret=SECRET)
    assert list(WebhookDelivery.objects.values_list("status_code", "error")) == [(410, "HTTP 410")]


@pytest.mark.django_db
def test_metadata_addresses_are_refused_without_a_request(event, receiver) -> None:
    assert not webhook_deliver(event=event, url="http://169.254.169.254/latest", secret=SECRET)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status_code is None and "refused" in delivery.error


# --- end to end: settlement → alert → email and webhook, off the request path ---------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("db_path")  # the settlement's statements in threads, or on the loop
async def test_settlement_crossing_a_threshold_emails_admins_and_calls_the_webhook(
    acme, bob_membership, receiver
) -> None:
    from asgiref.sync import sync_to_async

    from accounts.models import Membership

    policy = CostPolicy(organization=acme, webhook_url=receiver.url)
    policy.set_webhook_secret(SECRET)
    await policy.asave()
    await PriceOverride.objects.acreate(
        organization=acme, provider="sim", model="m", input_per_mtok=0, output_per_mtok=1000
    )
    await sync_to_async(make_limit)(acme, "1", name="Monthly")
    membership = await Membership.objects.select_related("organization").aget(pk=bob_membership.pk)
    candidate = Candidate("sim", "m", Endpoint("openai", None, "k"), None, "k")
    route = Route("sim", "m", [candidate], ModelLimits(1000, 1000, (0, 2)))
    admission = await admit(
        request_id="r-1", membership=membership, route=route, messages=[], max_tokens=600
    )
    await settle(
        admission=admission,
        candidate=candidate,
        usage=Usage(0, 550),  # 0.55 of 1.00: crosses 50 %
        status="ok",
        latency_ms=1,
        ttft_ms=1,
    )
    await sync_to_async(alerts.wait_for_deliveries)(10)

    (message,) = mail.outbox
    assert message.to == ["alice@example.com"]  # the owner; bob is a plain member
    assert "50%" in message.subject and "Monthly" in message.body
    (request,) = receiver.requests
    assert verify(request["body"], SECRET, request["headers"]["X-Gatehouse-Signature"])
    assert await WebhookDelivery.objects.filter(delivered_at__isnull=False).acount() == 1
