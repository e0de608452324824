"""Personal API tokens: issue, revoke, authenticate.

A token reads `gh_<prefix>_<secret>`: the prefix finds the row, the secret is checked against
its SHA-256 in constant time. The same check serves DRF, the WebSocket middleware and the
OpenAI-compatible endpoint.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Model
from django.utils import timezone

from accounts.models import ApiToken, AuditEvent, Membership, Organization, User
from config import apg
from config.db import offline
from config.dbhop import db_hop

TOKEN_RE = re.compile(r"^gh_([a-z0-9]{10})_([A-Za-z0-9_\-]{20,100})$")
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
# Writing last_used_at on every request would put a database write on the hot path.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenError(Exception):
    """Why a presented token was refused; `code` is stable, `message` safe to show."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # the full token string, shown once and never stored


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_issue(
    *, membership: Membership, name: str, expires_at: datetime | None = None
) -> IssuedToken:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(10))
    secret = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        membership=membership,
        name=name,
        prefix=prefix,
        secret_hash=_hash(secret),
        expires_at=expires_at,
    )
    return IssuedToken(token=token, secret=f"gh_{prefix}_{secret}")


def token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def _parse(raw: str) -> tuple[str, str]:
    match = TOKEN_RE.match(raw.strip())
    if match is None:
        raise TokenError("token_malformed", "The API token is malformed.")
    return match.group(1), match.group(2)


def _check(token: ApiToken | None, secret: str) -> ApiToken:
    if token is None or not hmac.compare_digest(token.secret_hash, _hash(secret)):
        raise TokenError("token_invalid", "The API token is not valid.")
    if token.revoked_at is not None:
        raise TokenError("token_revoked", "The API token has been revoked.")
    if token.is_expired:
        raise TokenError("token_expired", "The API token has expired.")
    if not token.membership.user.is_active:
        raise TokenError("token_invalid", "The API token is not valid.")
    return token


def _stale(token: ApiToken, now: datetime) -> bool:
    return token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION


# --- the lookup: on the path of every API call ---------------------------------------------
# One precompiled join of the token, its membership, user and organisation, rows turned into
# model instances with the fields' own converters. The ORM equivalent
# (`select_related(...).first()`) spent most of its time compiling the query: it measured as the
# largest single cost of a gateway call.

_JOINED: tuple[tuple[type[Model], str], ...] = (
    (ApiToken, "t"),
    (Membership, "m"),
    (User, "u"),
    (Organization, "o"),
)


@functools.cache
def _lookup_plan() -> tuple[str, list[tuple[type[Model], list[Any], list[list[Any]]]]]:
    columns, plan = [], []
    database = offline()
    for model, alias in _JOINED:
        fields = list(model._meta.concrete_fields)
        columns += [f'{alias}."{f.column}"' for f in fields]
        converters = [
            database.ops.get_db_converters(f.get_col(model._meta.db_table))
            + f.get_db_converters(database)
            for f in fields
        ]
        plan.append((model, fields, converters))
    table = {model: model._meta.db_table for model, _ in _JOINED}
    sql = (
        f"SELECT {', '.join(columns)} FROM {table[ApiToken]} t"  # noqa: S608 - no user input
        f" JOIN {table[Membership]} m ON m.id = t.membership_id"
        f" JOIN {table[User]} u ON u.id = m.user_id"
        f" JOIN {table[Organization]} o ON o.id = m.organization_id"
        " WHERE t.prefix = %s"
    )
    return sql, plan


def _instances(row: tuple[Any, ...]) -> list[Model]:
    _, plan = _lookup_plan()
    database = offline()
    found, start = [], 0
    for model, fields, converters in plan:
        values = list(row[start : start + len(fields)])
        for i, (field, chain) in enumerate(zip(fields, converters, strict=True)):
            for convert in chain:
                values[i] = convert(values[i], field.get_col(model._meta.db_table), database)
        found.append(model.from_db(DEFAULT_DB_ALIAS, [f.attname for f in fields], values))
        start += len(fields)
    return found


def _assembled(row: tuple[Any, ...] | None) -> ApiToken | None:
    if row is None:
        return None
    token, membership, user, organization = _instances(row)
    membership.user, membership.organization = user, organization
    token.membership = membership
    return token


def _lookup(prefix: str) -> ApiToken | None:
    sql, _ = _lookup_plan()
    with connection.cursor() as cursor:
        cursor.execute(sql, [prefix])
        return _assembled(cursor.fetchone())


def _touch(token: ApiToken, now: datetime) -> None:
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now


def token_authenticate(raw: str) -> ApiToken:
    prefix, secret = _parse(raw)
    token = _check(_lookup(prefix), secret)
    now = timezone.now()
    if _stale(token, now):
        _touch(token, now)
    return token


async def atoken_authenticate(raw: str) -> ApiToken:
    """`token_authenticate` from async code: the lookup on the event loop's own connection where
    there is one (`config.apg`), else in a thread hop; the last-used write, at most once a minute,
    in a hop."""
    if not apg.enabled():
        return await db_hop(token_authenticate, raw)
    prefix, secret = _parse(raw)
    sql, _ = _lookup_plan()
    token = _check(_assembled(await apg.fetchone(sql, [prefix])), secret)
    now = timezone.now()
    if _stale(token, now):
        await db_hop(_touch, token, now)
    return token


def bearer_from_header(value: str | None) -> str | None:
    """The token in an `Authorization: Bearer <token>` header, or None when there is none."""
    if not value:
        return None
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip()


def member_token_issue(
    *, membership: Membership, name: str, expires_at: datetime | None = None, request: Any = None
) -> IssuedToken:
    """A member issues a token for themself (API or portal): issued and put on the record."""
    from accounts.audit import audit_record

    issued = token_issue(membership=membership, name=name, expires_at=expires_at)
    audit_record(
        action=AuditEvent.Action.TOKEN_ISSUED,
        organization=membership.organization,
        request=request,
        target=issued.token,
        after={"name": issued.token.name, "owner": membership.user.email},
    )
    return issued


def member_token_revoke(*, token: ApiToken, request: Any = None) -> ApiToken:
    """A member (or an admin of the organisation) revokes a token, on the record once."""
    from accounts.audit import audit_record

    if token.revoked_at is None:
        audit_record(
            action=AuditEvent.Action.TOKEN_REVOKED,
            organization=token.membership.organization,
            request=request,
            target=token,
            before={"name": token.name, "owner": token.membership.user.email},
        )
    return token_revoke(token=token)
