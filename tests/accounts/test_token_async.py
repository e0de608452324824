"""`atoken_authenticate`, what the gateway and the WebSocket handshake use: the same answers in
thread hops and (PostgreSQL) on the event loop's own connection (config.apg)."""

from __future__ import annotations

import asyncio
import contextvars
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.models import ApiToken, Membership
from accounts.tokens import TokenError, atoken_authenticate, token_issue, token_revoke

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_path")]


@pytest.fixture
def issued(alice_membership):
    return token_issue(membership=alice_membership, name="async")


async def test_a_valid_token_comes_with_its_membership_user_and_organisation(
    issued, alice_membership
) -> None:
    token = await atoken_authenticate(issued.secret)
    assert token.pk == issued.token.pk
    membership = token.membership
    assert membership.pk == alice_membership.pk
    # Loaded with the token: reading them costs no query on the event loop.
    assert Membership.organization.is_cached(membership) and Membership.user.is_cached(membership)
    assert membership.organization.pk == alice_membership.organization_id
    assert membership.user.pk == alice_membership.user_id


async def test_the_first_use_records_last_used_once_a_minute(issued) -> None:
    await atoken_authenticate(issued.secret)
    first = (await ApiToken.objects.aget(pk=issued.token.pk)).last_used_at
    assert first is not None
    await atoken_authenticate(issued.secret)
    assert (await ApiToken.objects.aget(pk=issued.token.pk)).last_used_at == first


@pytest.mark.parametrize(
    ("spoil", "code"),
    [
        (lambda t, s: s[:-2] + ("AA" if s[-2:] != "AA" else "BB"), "token_invalid"),
        (lambda t, s: s.replace(t.prefix, "zzzzzzzzzz"), "token_invalid"),
        (lambda t, s: "gh_nonsense", "token_malformed"),
    ],
)
async def test_a_wrong_token_is_refused_with_its_code(issued, spoil, code) -> None:
    with pytest.raises(TokenError) as refused:
        await atoken_authenticate(spoil(issued.token, issued.secret))
    assert refused.value.code == code


async def test_revoked_expired_and_inactive_are_refused(issued, alice) -> None:
    await sync_to_async(token_revoke)(token=issued.token)
    with pytest.raises(TokenError) as refused:
        await atoken_authenticate(issued.secret)
    assert refused.value.code == "token_revoked"

    fresh = await sync_to_async(token_issue)(
        membership=issued.token.membership, name="late", expires_at=timezone.now()
    )
    await ApiToken.objects.filter(pk=fresh.token.pk).aupdate(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(TokenError) as refused:
        await atoken_authenticate(fresh.secret)
    assert refused.value.code == "token_expired"

    other = await sync_to_async(token_issue)(membership=issued.token.membership, name="user off")
    alice.is_active = False
    await alice.asave()
    with pytest.raises(TokenError) as refused:
        await atoken_authenticate(other.secret)
    assert refused.value.code == "token_invalid"


async def test_requests_in_fresh_tasks_build_no_database_wrapper(issued, monkeypatch) -> None:
    """Each request runs in a task of its own. Reading `django.db.connection` there found no
    wrapper (an asgiref Local per context) and built a new one per request."""
    from django.db import connections

    await atoken_authenticate(issued.secret)  # the process's first use may build what it needs
    built: list[str] = []
    create = connections.create_connection

    def counting(alias: str):
        built.append(alias)
        return create(alias)

    monkeypatch.setattr(connections, "create_connection", counting)
    for _ in range(3):
        # As the server starts each request: a task in a context of its own, not the test's.
        fresh = contextvars.Context()
        token = await asyncio.create_task(atoken_authenticate(issued.secret), context=fresh)
        assert token.pk == issued.token.pk
    assert built == []
