"""An organisation's provider settings, kept in process memory while they stay current.

Routing, admission and settlement read the same settings on every call: the organisation's
credentials and model switches, its spending limits and cost policy, and the price overrides
that apply. Reading them took five queries per call; they change a few times a day.

Every request reads the organisation row anyway (joined to the token or membership that
authenticates it). `Organization.settings_version` on that row says whether the copy held here
is current: every change to those settings bumps it in the change's own transaction (the save
and delete signals wired in `providers.apps`), so each process sees a change from its next
request on. A copy is used only for a row whose version is not newer than the copy's.

Model listings asked of providers live in Django's cache (shared by processes, with a TTL); a
snapshot also remembers them for `LISTING_SECONDS`, which saves that round trip as well, and
remembers a listing that failed for as long (the credential stays a candidate meanwhile). A
snapshot is rebuilt — listings forgotten — whenever a credential changes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F, Q

from accounts.models import Membership, Organization
from config.dbhop import db_hop
from providers.budget import LimitRef
from providers.models import CostPolicy, ModelSetting, PriceOverride, SpendingLimit, UsageRecord
from providers.platform import RouteCredential, own_credentials, platform_credentials
from providers.prices import Price

ZERO = Decimal(0)
Scope = SpendingLimit.Scope
#: how long a snapshot trusts a model listing it read from the shared cache or its provider,
#: or remembers that asking the provider failed
LISTING_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class ListingFailed:
    """A provider's model listing failed: the credential may still serve a model (the call will
    tell), and asking again on every message would add a failing request to each."""

    message: str


@dataclass(frozen=True, slots=True)
class Policy:
    """The parts of `CostPolicy` admission needs; the defaults for an organisation without one."""

    unpriced: str = CostPolicy.Unpriced.BLOCK
    default_input_per_mtok: Decimal = ZERO
    default_output_per_mtok: Decimal = ZERO
    org_rpm: int | None = None
    org_tpm: int | None = None
    member_rpm: int | None = None
    member_tpm: int | None = None
    credential_rates: dict[str, Any] = field(default_factory=dict)

    def fallback_price(self) -> Price | None:
        """What an unpriced model is charged at: the default price, or None (unknown)."""
        if self.unpriced != CostPolicy.Unpriced.DEFAULT_PRICE:
            return None
        return Price(
            self.default_input_per_mtok,
            self.default_output_per_mtok,
            UsageRecord.PriceSource.DEFAULT,
        )

    @property
    def has_rate_limits(self) -> bool:
        # `is not None`: a limit of 0 is a limit (nothing passes).
        rates = (self.org_rpm, self.org_tpm, self.member_rpm, self.member_tpm)
        return any(rate is not None for rate in rates) or bool(self.credential_rates)


@dataclass(slots=True)
class Snapshot:
    version: int
    born: Any  # the organisation's created_at: a reused primary key is another organisation
    own: list[RouteCredential]
    switches: dict[tuple[str, str], ModelSetting]
    policy: Policy
    limits: tuple[LimitRef, ...]
    overrides: tuple[PriceOverride, ...]
    _listings: dict[str, tuple[float, list | ListingFailed]] = field(default_factory=dict)

    @property
    def credentials(self) -> list[RouteCredential]:
        """Usable credentials, by priority: the organisation's own, then the platform's (from
        settings, read now)."""
        return [*self.own, *platform_credentials()]

    def limits_for(self, membership: Membership, credential_ids: Sequence[int]) -> tuple:
        """Every limit (hard and soft) a call of this member through these credentials is
        held to."""
        return tuple(
            limit
            for limit in self.limits
            if limit.scope == Scope.ORGANIZATION
            or (limit.scope == Scope.MEMBER and limit.membership_id == membership.pk)
            or (limit.scope == Scope.CREDENTIAL and limit.credential_id in credential_ids)
        )

    def listing(self, key: str) -> list | ListingFailed | None:
        remembered = self._listings.get(key)
        if remembered is None or remembered[0] < time.monotonic():
            return None
        return remembered[1]

    def remember_listing(self, key: str, rows: list | ListingFailed) -> None:
        self._listings[key] = (time.monotonic() + LISTING_SECONDS, rows)


_POLICY_COLUMNS = {
    "unpriced": "unpriced_policy",
    "default_input_per_mtok": "default_input_per_mtok",
    "default_output_per_mtok": "default_output_per_mtok",
    "org_rpm": "org_requests_per_minute",
    "org_tpm": "org_tokens_per_minute",
    "member_rpm": "member_requests_per_minute",
    "member_tpm": "member_tokens_per_minute",
    "credential_rates": "credential_rate_limits",
}

_snapshots: dict[int, Snapshot] = {}


def _policy(organization_id: int) -> Policy:
    row = (
        CostPolicy.objects.filter(organization_id=organization_id)
        .values(*_POLICY_COLUMNS.values())
        .first()
    )
    if row is None:
        return Policy()
    values = {name: row[column] for name, column in _POLICY_COLUMNS.items()}
    values["credential_rates"] = values["credential_rates"] or {}
    return Policy(**values)


def _build(organization: Organization) -> Snapshot:
    org_id = organization.pk
    limits = SpendingLimit.objects.filter(organization_id=org_id).order_by("id")
    overrides = PriceOverride.objects.filter(
        Q(organization_id=org_id) | Q(organization__isnull=True)
    )
    switches = ModelSetting.objects.filter(organization_id=org_id)
    return Snapshot(
        version=organization.settings_version,
        born=organization.created_at,
        own=own_credentials(organization),
        switches={(s.provider, s.model): s for s in switches},
        policy=_policy(org_id),
        limits=tuple(LimitRef.of(limit) for limit in limits),
        overrides=tuple(overrides),
    )


def current(organization: Organization) -> Snapshot | None:
    """The snapshot held for `organization` if it is current for this row; no I/O."""
    held = _snapshots.get(organization.pk)
    if (
        held is not None
        and held.version >= organization.settings_version
        and held.born == organization.created_at
    ):
        return held
    return None


def snapshot(organization: Organization) -> Snapshot:
    """The current snapshot, read from the database when the one held is stale (sync)."""
    held = current(organization)
    if held is None:
        # Labelled with the version read before the settings: never newer than its content.
        held = _snapshots[organization.pk] = _build(organization)
    return held


async def asnapshot(organization: Organization) -> Snapshot:
    return current(organization) or await db_hop(snapshot, organization)


def bump(organization_id: int | None) -> None:
    """Mark an organisation's settings changed (every organisation's, for `None`: a platform-wide
    price override). Runs in the caller's transaction: the new version and the change it
    announces commit together."""
    organizations = Organization.objects.all()
    if organization_id is not None:
        organizations = organizations.filter(pk=organization_id)
    organizations.update(settings_version=F("settings_version") + 1)
    # This process forgets its copy at once (and again at commit, in case a request rebuilt it
    # from the old rows meanwhile), so that even a caller holding an Organization read before
    # the change sees it. Other processes go by the version.
    _forget(organization_id)
    transaction.on_commit(lambda: _forget(organization_id))


def _forget(organization_id: int | None) -> None:
    if organization_id is None:
        _snapshots.clear()
    else:
        _snapshots.pop(organization_id, None)


def bump_on_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Save/delete signal receiver for the models a snapshot holds."""
    bump(getattr(instance, "organization_id", None))


def forget_all() -> None:
    """Drop every snapshot held by this process (tests that rewrite the database under it)."""
    _snapshots.clear()
