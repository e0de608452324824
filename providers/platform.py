"""The credentials an organisation can route through: its own, then the platform's.

Platform-wide credentials come from the environment (OPENAI_API_KEY / OPENAI_BASE_URL,
ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL, OLLAMA_BASE_URL), as in the original provider-manager
design, and are offered to every organisation after its own credentials unless the operator
sets GATEHOUSE_PLATFORM_CREDENTIALS=false. They never touch the database.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from django.conf import settings

from accounts.models import Organization
from providers.adapters.base import Endpoint
from providers.models import ProviderCredential

PLATFORM_PRIORITY = 10_000


@dataclass(frozen=True)
class RouteCredential:
    """A credential as routing sees it, whether stored or from the environment."""

    id: int | None
    name: str
    provider: str
    kind: str
    base_url: str
    priority: int
    default_model: str
    version: int
    _secret: str | None = field(default=None, repr=False)
    _stored: ProviderCredential | None = field(default=None, repr=False)
    default_temperature: float | None = None
    default_max_tokens: int | None = None

    @property
    def cache_key(self) -> str:
        return f"cred:{self.id}:{self.version}" if self.id else f"platform:{self.provider}"

    def endpoint(self) -> Endpoint:
        return self._endpoint

    @functools.cached_property
    def _endpoint(self) -> Endpoint:
        # Decrypted once per snapshot of the organisation's settings (a rotated key or changed
        # credential makes a new snapshot), not on every call: Fernet costs ~0.1 ms a time.
        secret = self._secret if self._stored is None else self._stored.secret()
        return Endpoint(
            kind=self.kind,
            base_url=self.base_url or None,
            api_key=secret or "",
            default_temperature=self.default_temperature,
            default_max_tokens=self.default_max_tokens,
            label=self.name,
        )


def from_stored(credential: ProviderCredential) -> RouteCredential:
    return RouteCredential(
        id=credential.pk,
        name=credential.name,
        provider=credential.provider,
        kind=credential.kind,
        base_url=credential.base_url,
        priority=credential.priority,
        default_model=credential.default_model,
        version=credential.version,
        _stored=credential,
        default_temperature=credential.default_temperature,
        default_max_tokens=credential.default_max_tokens,
    )


def platform_credentials() -> list[RouteCredential]:
    if not settings.GATEHOUSE_PLATFORM_CREDENTIALS:
        return []
    found = []
    specs = [
        ("openai", settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL),
        ("anthropic", settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL),
    ]
    for kind, key, base_url in specs:
        if key:
            found.append(_platform(kind, key, base_url))
    if settings.OLLAMA_BASE_URL:
        found.append(_platform("ollama", "", settings.OLLAMA_BASE_URL))
    return found


def _platform(kind: str, key: str, base_url: str) -> RouteCredential:
    return RouteCredential(
        id=None,
        name=f"platform {kind}",
        provider=kind,
        kind=kind,
        base_url=base_url,
        priority=PLATFORM_PRIORITY,
        default_model="",
        version=1,
        _secret=key,
    )


def own_credentials(organization: Organization) -> list[RouteCredential]:
    """The organisation's usable credentials, by priority."""
    stored = ProviderCredential.objects.for_organization(organization).usable()
    return [from_stored(c) for c in stored]


def credentials_for(organization: Organization) -> list[RouteCredential]:
    """Usable credentials, by priority: the organisation's own first, then the platform's."""
    return [*own_credentials(organization), *platform_credentials()]
