"""The model catalogue: which models each credential offers (asked of the provider and cached),
and which of them an organisation allows."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache

from accounts.models import Organization
from providers.adapters import get_adapter
from providers.adapters.base import ModelInfo, ProviderError
from providers.models import ModelSetting
from providers.platform import RouteCredential
from providers.snapshot import asnapshot

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
    """Everything routing needs to know about an organisation."""

    credentials: list[RouteCredential]
    switches: dict[tuple[str, str], ModelSetting]
    cached_models: dict[str, list]


async def route_inputs(organization: Organization) -> RouteInputs:
    """From the organisation's snapshot (no I/O while it is current) and the model listings it
    remembers; listings it does not are read from the shared cache in one round trip."""
    snap = await asnapshot(organization)
    credentials = snap.credentials
    cached: dict[str, list] = {}
    missing = []
    for credential in credentials:
        key = _cache_key(credential)
        rows = snap.listing(key)
        if rows is None:
            missing.append(key)
        else:
            cached[key] = rows
    if missing:
        found = await cache.aget_many(missing)
        for key, rows in found.items():
            snap.remember_listing(key, rows)
        cached.update(found)
    return RouteInputs(credentials, snap.switches, cached)


async def models_of(credential: RouteCredential, cached: list | None = None) -> CredentialModels:
    """The credential's models, from the cache (`cached`, when the caller already read it) or
    the provider. A failure is reported on the entry (and not cached), never raised: one broken
    provider must not break the list."""
    key = _cache_key(credential)
    if cached is None:
        cached = await cache.aget(key)
    if cached is not None:
        return CredentialModels(credential, [ModelInfo(*row) for row in cached])
    try:
        models = await get_adapter(credential.endpoint()).list_models()
    except ProviderError as exc:
        logger.warning("listing models of %s failed: %s %s", credential.name, exc.code, exc.detail)
        return CredentialModels(credential, [], error=exc.message)
    rows = [(m.id, m.context_window, m.max_output_tokens) for m in models]
    await cache.aset(key, rows, settings.GATEHOUSE_MODELS_CACHE_TTL)
    return CredentialModels(credential, models)


async def forget_models(credential: RouteCredential) -> None:
    await cache.adelete(_cache_key(credential))


async def entries_for(
    inputs: RouteInputs, credentials: list[RouteCredential]
) -> list[CredentialModels]:
    return [await models_of(c, inputs.cached_models.get(_cache_key(c))) for c in credentials]


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
