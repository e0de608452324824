"""Writing the audit log. Callers describe a change; this module scrubs and stores it."""

from __future__ import annotations

from typing import Any

from django.db import models

from accounts.models import ApiToken, AuditEvent, Organization, User
from config.logredact import redact

_SECRET_WORDS = ("secret", "api_key", "password", "token", "key_encrypted", "hash")


def scrub(data: Any) -> Any:
    """Drop fields whose name says secret and mask values that look like one."""
    if isinstance(data, dict):
        return {
            k: scrub(v)
            for k, v in data.items()
            if not any(word in str(k).lower() for word in _SECRET_WORDS)
        }
    if isinstance(data, list | tuple):
        return [scrub(v) for v in data]
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, int | float | bool) or data is None:
        return data
    return redact(str(data))


def _client_ip(request: Any) -> str | None:
    meta = getattr(request, "META", {})
    return meta.get("REMOTE_ADDR") or None


def audit_record(
    *,
    action: str,
    organization: Organization | None,
    request: Any = None,
    user: User | None = None,
    target: models.Model | None = None,
    before: dict | None = None,
    after: dict | None = None,
    extra: dict | None = None,
) -> AuditEvent:
    token = getattr(request, "auth", None) if request is not None else None
    token = token if isinstance(token, ApiToken) else None
    actor = user or (getattr(request, "user", None) if request is not None else None)
    actor = actor if isinstance(actor, User) else None
    summary = {
        key: scrub(value)
        for key, value in (("before", before), ("after", after), ("extra", extra))
        if value
    }
    label = actor.email if actor else "system"
    if token is not None:
        label = f"{label} (token {token.prefix}…)"
    return AuditEvent.objects.create(
        organization=organization,
        actor_user=actor,
        actor_token=token,
        actor_label=label,
        action=action,
        target_type=target._meta.label if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=str(target)[:200] if target is not None else "",
        summary=summary,
        ip_address=_client_ip(request),
    )


def record_staff_login(sender: Any, request: Any, user: User, **kwargs: Any) -> None:
    """Platform staff reach every organisation, so their sign-ins are on the record."""
    if user.is_staff:
        audit_record(
            action=AuditEvent.Action.STAFF_LOGIN, organization=None, request=request, user=user
        )
