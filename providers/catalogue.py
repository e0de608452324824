"""The model catalogue: which models each credential offers (asked of the provider and cached),
and which of them an organisation allows."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache

from accounts.models import Organization
from providers.adapters import get_adapter
from providers.adapters.base import ModelInfo, ProviderError
from providers.models import ModelSetting
from providers.platform import RouteCredential
from providers.snapshot import ListingFailed, Snapshot, asnapshot

logger = logging.getLogger(__name__)


@dataclass
class CredentialModels:
    credential: RouteCredential
    models: list[ModelInfo]
    error: str | None = None


@dataclass
class ProviderListing:
    """One provider as members see it (the original design's ProviderInfo)."""

    name: str
    kind: str
    enabled: bool
    models: list[dict] = field(default_factory=list)
    default_model: str | None = None
    error: str | None = None


def _cache_key(credential: RouteCredential) -> str:
    return f"models:{credential.cache_key}"


@dataclass
class RouteInputs:
    """Everything routing needs to know about an organisation; model listings are read only for
    the credentials routing looks at (`entries_for`)."""

    credentials: list[RouteCredential]
    switches: dict[tuple[str, str], ModelSetting]
    snapshot: Snapshot


async def route_inputs(organization: Organization) -> RouteInputs:
    """From the organisation's snapshot: no I/O while it is current."""
    snap = await asnapshot(organization)
    return RouteInputs(snap.credentials, snap.switches, snap)


async def _listed(credential: RouteCredential, cached: list | None) -> CredentialModels:
    """The credential's models: `cached`, as read from the shared cache, else asked of the
    provider (and cached). A failure is reported on the entry (and not cached), never raised:
    one broken provider must not break the list."""
    if cached is not None:
        return _from_rows(credential, cached)
    try:
        models = await get_adapter(credential.endpoint()).list_models()
    except ProviderError as exc:
        logger.warning("listing models of %s failed: %s %s", credential.name, exc.code, exc.detail)
        return CredentialModels(credential, [], error=exc.message)
    await cache.aset(_cache_key(credential), _rows(models), settings.GATEHOUSE_MODELS_CACHE_TTL)
    return CredentialModels(credential, models)


async def forget_models(credential: RouteCredential) -> None:
    await cache.adelete(_cache_key(credential))


async def entries_for(
    inputs: RouteInputs, credentials: list[RouteCredential]
) -> list[CredentialModels]:
    """The listings of these credentials, in their order. Each comes from what the snapshot
    remembers, else from the shared cache (all the missing ones in one round trip), else from
    its provider (all at once); the snapshot remembers what it got, a failure included, for
    `LISTING_SECONDS`: a message routed to one provider reads nothing of the others', and a
    listing that fails is not asked again on every message."""
    snap = inputs.snapshot
    entries: dict[str, CredentialModels] = {}
    missing: list[RouteCredential] = []
    for credential in credentials:
        key = _cache_key(credential)
        remembered = snap.listing(key)
        if remembered is None:
            missing.append(credential)
        elif isinstance(remembered, ListingFailed):
            entries[key] = CredentialModels(credential, [], error=remembered.message)
        else:
            entries[key] = _from_rows(credential, remembered)
    if missing:
        found: dict[str, list] = await sync_to_async(cache.get_many)(
            [_cache_key(c) for c in missing]
        )
        for entry in await asyncio.gather(*(_listed(c, found.get(_cache_key(c))) for c in missing)):
            key = _cache_key(entry.credential)
            failed = entry.error is not None
            snap.remember_listing(
                key, ListingFailed(entry.error) if failed else _rows(entry.models)
            )
            entries[key] = entry
    return [entries[_cache_key(c)] for c in credentials]


def _from_rows(credential: RouteCredential, rows: list) -> CredentialModels:
    return CredentialModels(credential, [ModelInfo(*row) for row in rows])


def _rows(models: list[ModelInfo]) -> list[tuple]:
    """A listing as it is cached."""
    return [(m.id, m.context_window, m.max_output_tokens) for m in models]


async def provider_listings(organization: Organization) -> list[ProviderListing]:
    inputs = await route_inputs(organization)
    grouped: dict[str, list[CredentialModels]] = {}
    for entry in await entries_for(inputs, inputs.credentials):
        grouped.setdefault(entry.credential.provider, []).append(entry)
    return [
        _listing(name, entries, inputs.switches, organization) for name, entries in grouped.items()
    ]


def _listing(
    name: str,
    entries: list[CredentialModels],
    switches: dict[tuple[str, str], ModelSetting],
    organization: Organization,
) -> ProviderListing:
    seen: dict[str, dict] = {}
    for entry in entries:
        for model in entry.models:
            setting = switches.get((name, model.id))
            seen.setdefault(
                model.id, {"id": model.id, "enabled": setting.enabled if setting else True}
            )
    errors = [e.error for e in entries if e.error]
    enabled = [m["id"] for m in seen.values() if m["enabled"]]
    return ProviderListing(
        name=name,
        kind=entries[0].credential.kind,
        enabled=bool(enabled),
        models=list(seen.values()),
        default_model=_default_model(name, entries, enabled, organization),
        error=errors[0] if errors and len(errors) == len(entries) else None,
    )


def _default_model(
    name: str, entries: list[CredentialModels], enabled: list[str], organization: Organization
) -> str | None:
    if organization.default_provider == name and organization.default_model in enabled:
        return organization.default_model
    for entry in entries:
        if entry.credential.default_model in enabled:
            return entry.credential.default_model
    return enabled[0] if enabled else None
