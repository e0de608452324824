"""Spending alerts: each threshold of a limit fires once per period.

After settlement moves a counter, every threshold (a percentage of the limit's amount) that the
period's spend has reached and that the counter has not fired yet is claimed with a conditional
UPDATE of the counter's `alert_level` — one threshold at a time, lowest first, so exactly one
settlement claims each — and recorded as an `AlertEvent` (unique per limit, period and
threshold, the last line of defence). This runs in the settlement's transaction: if it rolls
back, nothing fired, and the next settlement on that counter fires the threshold instead.

Once the transaction commits, a background thread (off the request path) emails the
organisation's owners and admins and POSTs the event to the organisation's webhook, if it has
one. The webhook request is signed:

    X-Gatehouse-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed by the secret>

and retried on network errors, 408/425/429 and 5xx answers, with exponential backoff
(`GATEHOUSE_WEBHOOK_BACKOFF` * 2^n seconds, `GATEHOUSE_WEBHOOK_ATTEMPTS` attempts in all).
Every attempt is a `WebhookDelivery` row the organisation's admins can read. The URL passes the
same SSRF guard as provider base URLs, and redirects are not followed. Deliveries still pending
when the process exits are lost (their rows show how far they got).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import connections, transaction
from django.utils import timezone

from accounts.models import Membership
from providers import netguard
from providers.adapters.base import ProviderError
from providers.budget import Charged, money
from providers.models import AlertEvent, CostPolicy, SpendingCounter, WebhookDelivery

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Gatehouse-Signature"
EVENT_TYPE = "spending_limit.threshold_reached"
_RETRY_STATUSES = frozenset({408, 425, 429})


# --- firing ---------------------------------------------------------------------------------


def _reached(charged: Charged) -> list[int]:
    limit = charged.slot.limit
    return [
        threshold
        for threshold in limit.thresholds
        if threshold > charged.alert_level and charged.spent * 100 >= limit.amount * threshold
    ]


def alerts_due(charged: Charged) -> bool:
    """Whether `charged` reached a threshold not alerted yet (no query)."""
    return bool(_reached(charged))


def _claim(counter_id: int, threshold: int) -> bool:
    return bool(
        SpendingCounter.objects.filter(pk=counter_id, alert_level__lt=threshold).update(
            alert_level=threshold
        )
    )


def _record(organization_id: int, charged: Charged, threshold: int) -> AlertEvent:
    event, _ = AlertEvent.objects.get_or_create(
        limit_id=charged.slot.limit.id,
        period_start=charged.slot.start,
        threshold=threshold,
        defaults={
            "organization_id": organization_id,
            "period_end": charged.slot.end,
            "spent": charged.spent,
            "amount": charged.slot.limit.amount,
        },
    )
    return event


def alerts_check(*, organization_id: int, charged: Sequence[Charged]) -> list[AlertEvent]:
    """Fire the thresholds `charged` counters have newly reached. Call inside the settlement's
    transaction; notifications go out after it commits."""
    fired = []
    for counter in charged:
        for threshold in _reached(counter):
            if _claim(counter.counter_id, threshold):
                fired.append(_record(organization_id, counter, threshold))
    if fired:
        ids = [event.pk for event in fired]
        transaction.on_commit(lambda: notify_in_background(event_ids=ids))
    return fired


# --- delivery, off the request path ---------------------------------------------------------

_threads: set[threading.Thread] = set()
_threads_lock = threading.Lock()


def notify_in_background(*, event_ids: Sequence[int]) -> threading.Thread:
    """Email and webhook for each event, in a daemon thread."""
    thread = threading.Thread(
        target=_notify_all, args=(list(event_ids),), name="gatehouse-alerts", daemon=True
    )
    with _threads_lock:
        _threads.add(thread)
    thread.start()
    return thread


def wait_for_deliveries(timeout: float = 30.0) -> None:
    """Block until background deliveries finish (tests, graceful shutdown)."""
    deadline = time.monotonic() + timeout
    while True:
        with _threads_lock:
            pending = [t for t in _threads if t.is_alive()]
            _threads.intersection_update(pending)
        if not pending or time.monotonic() >= deadline:
            return
        pending[0].join(max(0.0, deadline - time.monotonic()))


def _notify_all(event_ids: list[int]) -> None:
    try:
        for event_id in event_ids:
            alert_deliver(event_id=event_id)
    except Exception:
        logger.exception("alert notification failed")
    finally:
        connections.close_all()  # this thread's connections only


def alert_deliver(*, event_id: int) -> None:
    """Send one event's email and webhook (synchronously)."""
    event = AlertEvent.objects.select_related("limit", "organization").get(pk=event_id)
    try:
        _email_admins(event)
    except Exception:
        logger.exception("alert email for event %s failed", event_id)
    policy = CostPolicy.objects.filter(organization_id=event.organization_id).first()
    if policy is not None and policy.webhook_url:
        webhook_deliver(event=event, url=policy.webhook_url, secret=policy.webhook_secret())


# --- email ----------------------------------------------------------------------------------


def _admin_emails(organization_id: int) -> list[str]:
    return list(
        Membership.objects.filter(
            organization_id=organization_id,
            role__in=[Membership.Role.OWNER, Membership.Role.ADMIN],
            user__is_active=True,
        ).values_list("user__email", flat=True)
    )


def _describe(event: AlertEvent) -> str:
    limit = event.limit
    label = f" '{limit.name}'" if limit.name else ""
    kind = "hard" if limit.hard else "soft"
    return f"{limit.get_scope_display().lower()} {limit.period} {kind} limit{label}"


def _email_admins(event: AlertEvent) -> None:
    recipients = _admin_emails(event.organization_id)
    if not recipients:
        return
    subject = f"[Gatehouse] {event.organization.name}: {event.threshold}% of a spending limit"
    body = (
        f"The {_describe(event)} of {event.organization.name} has reached "
        f"{event.threshold}% of its amount: {money(event.spent)} of {money(event.amount)} USD "
        f"spent in the period starting {event.period_start:%Y-%m-%d %H:%M} UTC.\n"
    )
    if event.limit.hard and event.threshold >= 100:
        body += "Calls that could go over the limit are now refused until it resets.\n"
    send_mail(subject, body, None, recipients)


# --- webhook --------------------------------------------------------------------------------


def webhook_body(event: AlertEvent) -> bytes:
    """The JSON body POSTed for an event; the same bytes on every retry."""
    limit = event.limit
    payload: dict[str, Any] = {
        "type": EVENT_TYPE,
        "id": event.pk,
        "organization": event.organization.slug,
        "limit": {
            "id": limit.pk,
            "name": limit.name,
            "scope": limit.scope,
            "period": limit.period,
            "hard": limit.hard,
        },
        "threshold": event.threshold,
        "spent": str(event.spent),
        "amount": str(event.amount),
        "currency": "USD",
        "period_start": event.period_start.isoformat(),
        "period_end": event.period_end.isoformat() if event.period_end else None,
        "created_at": event.created_at.isoformat(),
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return hmac.compare_digest(sign(body, secret), header or "")


def _attempts() -> int:
    return max(1, int(getattr(settings, "GATEHOUSE_WEBHOOK_ATTEMPTS", 5)))


def _backoff(attempt: int) -> float:
    return float(getattr(settings, "GATEHOUSE_WEBHOOK_BACKOFF", 2.0)) * 2 ** (attempt - 1)


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    import httpx

    netguard.check_url(url, resolve=True)
    timeout = float(getattr(settings, "GATEHOUSE_WEBHOOK_TIMEOUT", 5.0))
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        return client.post(url, content=body, headers=headers).status_code


def _attempt(
    event: AlertEvent, url: str, body: bytes, headers: dict[str, str], attempt: int
) -> tuple[bool, bool]:
    """One POST, recorded: (delivered, give up — delivered or refused for good)."""
    delivery = WebhookDelivery(
        organization_id=event.organization_id, event=event, url=url, attempt=attempt
    )
    done = False
    try:
        delivery.status_code = _post(url, body, headers)
    except ProviderError as exc:  # netguard: refused (permanent) or unresolvable (transient)
        delivery.error, done = exc.message, not exc.retryable
    except Exception as exc:  # network errors: worth a retry
        delivery.error = f"{type(exc).__name__}: {exc}"[:500]
    status = delivery.status_code
    if status is not None:
        if 200 <= status < 300:
            delivery.delivered_at, done = timezone.now(), True
        else:
            delivery.error = f"HTTP {status}"
            done = status < 500 and status not in _RETRY_STATUSES
    delivery.save()
    return delivery.delivered_at is not None, done


def webhook_deliver(*, event: AlertEvent, url: str, secret: str) -> bool:
    """POST the event until it is accepted or the attempts run out; True when delivered."""
    body = webhook_body(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Gatehouse-Webhooks/1",
        "X-Gatehouse-Event": EVENT_TYPE,
        "X-Gatehouse-Delivery": str(event.pk),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    for attempt in range(1, _attempts() + 1):
        delivered, done = _attempt(event, url, body, headers, attempt)
        if done:
            return delivered
        if attempt < _attempts():
            time.sleep(_backoff(attempt))
    return False
