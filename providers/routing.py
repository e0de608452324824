"""Routing: a requested (or default) provider and model → an ordered list of candidates.

Candidates are the usable credentials of the provider that offer the model, by priority (the
organisation's own before the platform's); the calls layer falls back along them. With no
provider named, every credential offering the model is a candidate; with neither named, the
organisation's default provider (then DEFAULT_PROVIDER, then the first by priority) and its
default model are used.
"""

from __future__ import annotations

from dataclasses import dataclass

from asgiref.sync import async_to_sync
from django.conf import settings

from accounts.models import Organization
from providers.adapters import ADAPTERS
from providers.adapters.base import Adapter
from providers.calls import Candidate
from providers.catalogue import CredentialModels, entries_for, route_inputs
from providers.models import ModelSetting
from providers.platform import RouteCredential


@dataclass(frozen=True)
class ModelLimits:
    context_window: int
    max_output_tokens: int
    temperature_range: tuple[float, float]


@dataclass(frozen=True)
class Route:
    provider: str
    model: str
    candidates: list[Candidate]
    limits: ModelLimits


class RouteError(Exception):
    """The request names something that cannot be routed; `field` is the request field to blame."""

    def __init__(self, code: str, message: str, field: str) -> None:
        self.code = code
        self.message = message
        self.field = field
        super().__init__(message)


def _pick_provider(organization: Organization, names: list[str]) -> str:
    for preferred in (organization.default_provider, settings.DEFAULT_PROVIDER):
        if preferred and preferred in names:
            return preferred
    if not names:
        raise RouteError(
            "no_provider", "No provider is configured for this organisation.", "provider"
        )
    return names[0]


def _same_model(listed: str, asked: str) -> bool:
    # Ollama names carry a tag and treat a bare name as `:latest` (`llama3` is `llama3:latest`).
    return listed == asked or listed == f"{asked}:latest"


def _offers(entry: CredentialModels, model: str) -> bool:
    # A credential whose listing failed may still serve the model; the call will tell.
    return entry.error is not None or any(_same_model(m.id, model) for m in entry.models)


def _default_model(
    organization: Organization, provider: str, entries: list[CredentialModels]
) -> str:
    if organization.default_provider == provider and organization.default_model:
        return organization.default_model
    for entry in entries:
        if entry.credential.default_model:
            return entry.credential.default_model
    for entry in entries:
        if entry.models:
            return entry.models[0].id
    raise RouteError("unknown_model", f"Provider {provider!r} lists no models.", "model")


def _limits(
    entries: list[CredentialModels], model: str, setting: ModelSetting | None
) -> ModelLimits:
    info = next((m for e in entries for m in e.models if _same_model(m.id, model)), None)
    adapter: type[Adapter] = ADAPTERS[entries[0].credential.kind]
    return ModelLimits(
        context_window=(setting and setting.context_window)
        or (info and info.context_window)
        or settings.GATEHOUSE_DEFAULT_CONTEXT_WINDOW,
        max_output_tokens=(setting and setting.max_output_tokens)
        or (info and info.max_output_tokens)
        or settings.GATEHOUSE_DEFAULT_MAX_OUTPUT_TOKENS,
        temperature_range=adapter.temperature_range,
    )


def _candidate(credential: RouteCredential, model: str) -> Candidate:
    return Candidate(
        provider=credential.provider,
        model=model,
        endpoint=credential.endpoint(),
        credential_id=credential.id,
        breaker_key=f"{credential.cache_key}:{model}",
    )


async def aresolve(*, organization: Organization, provider: str | None, model: str | None) -> Route:
    inputs = await route_inputs(organization)
    credentials = inputs.credentials
    names = list(dict.fromkeys(c.provider for c in credentials))
    if provider and provider not in names:
        raise RouteError("unknown_provider", f"Unknown provider {provider!r}.", "provider")
    if not provider and not model:
        provider = _pick_provider(organization, names)
    pool = [c for c in credentials if not provider or c.provider == provider]
    entries = await entries_for(inputs, pool)
    model = model or _default_model(organization, provider or "", entries)
    offering = [e for e in entries if _offers(e, model)]
    if not offering:
        where = f" at provider {provider!r}" if provider else ""
        raise RouteError("unknown_model", f"Unknown model {model!r}{where}.", "model")
    provider = provider or offering[0].credential.provider
    offering = [e for e in offering if e.credential.provider == provider]
    setting = inputs.switches.get((provider, model))
    if setting is not None and not setting.enabled:
        raise RouteError("model_disabled", f"Model {model!r} is disabled here.", "model")
    return Route(
        provider=provider,
        model=model,
        candidates=[_candidate(e.credential, model) for e in offering],
        limits=_limits(offering, model, setting),
    )


def resolve(*, organization: Organization, provider: str | None, model: str | None) -> Route:
    return async_to_sync(aresolve)(organization=organization, provider=provider, model=model)
