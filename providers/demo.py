"""Demo data: one credential per provider kind, all pointing at the upstream simulator."""

from __future__ import annotations

from collections.abc import Iterator

from accounts.models import Organization
from providers.models import ProviderCredential

DEMO_KEY = "sim-demo-key"  # the simulator accepts any key starting with "sim-"
_DEMO = [
    # name, provider, kind, path, default model
    ("Simulated OpenAI", "openai", "openai", "/openai/v1", "sim-gpt"),
    ("Simulated Anthropic", "anthropic", "anthropic", "/anthropic", "sim-claude"),
    ("Simulated Ollama", "ollama", "ollama", "/ollama", "sim-llama"),
    (
        "Simulated compatible server",
        "compatible",
        "openai_compatible",
        "/openai/v1",
        "sim-gpt-mini",
    ),
]


def demo_credentials_ensure(*, organization: Organization, base_url: str) -> Iterator[str]:
    for name, provider, kind, suffix, model in _DEMO:
        credential = ProviderCredential.objects.filter(organization=organization, name=name).first()
        credential = credential or ProviderCredential(organization=organization, name=name)
        credential.provider, credential.kind, credential.default_model = provider, kind, model
        credential.base_url = base_url.rstrip("/") + suffix
        if not credential.secret_encrypted:
            credential.set_secret(DEMO_KEY)
        credential.save()
        yield f"Credential: {name} -> {credential.base_url} (simulator)"
    if not organization.default_provider:
        organization.default_provider, organization.default_model = "openai", "sim-gpt"
        organization.save(update_fields=["default_provider", "default_model", "updated_at"])
