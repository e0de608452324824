"""The provider and model picker: the organisation's catalogue, and what a chat has chosen."""

from __future__ import annotations

from dataclasses import dataclass

from accounts.models import Organization
from chats.models import Chat
from config.dbhop import wait_unpooled
from providers.catalogue import ProviderListing, provider_listings


@dataclass(frozen=True)
class PickerProvider:
    name: str
    kind: str
    models: list[str]
    default_model: str
    error: str


@dataclass(frozen=True)
class Picker:
    providers: list[PickerProvider]
    provider: str
    model: str

    def as_json(self) -> dict:
        """For the page's script: which models belong to which provider, and the defaults."""
        return {
            "providers": {
                p.name: {"models": p.models, "default": p.default_model} for p in self.providers
            },
            "provider": self.provider,
            "model": self.model,
        }


def _entry(listing: ProviderListing) -> PickerProvider:
    models = [m["id"] for m in listing.models if m["enabled"]]
    return PickerProvider(
        name=listing.name,
        kind=listing.kind,
        models=models,
        default_model=listing.default_model or (models[0] if models else ""),
        error=listing.error or "",
    )


def picker_for(*, organization: Organization, chat: Chat | None = None) -> Picker:
    """What the chat uses when a message names nothing: its own choice, else the organisation's
    default, else the first provider on offer."""
    listings = wait_unpooled(provider_listings, organization)  # may ask the providers
    providers = [_entry(listing) for listing in listings]
    names = [p.name for p in providers]
    wanted = (chat.default_provider if chat else "") or organization.default_provider
    provider = wanted if wanted in names else (names[0] if names else "")
    entry = next((p for p in providers if p.name == provider), None)
    model = ""
    if entry is not None:
        chosen = chat.default_model if chat and chat.default_provider == provider else ""
        model = chosen if chosen in entry.models else entry.default_model
    return Picker(providers=providers, provider=provider, model=model)
