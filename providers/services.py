"""Writes of providers: credentials (create, update, test, rotate) and model switches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction

from accounts.models import Organization
from config.errors import ApiError
from providers import netguard
from providers.adapters import get_adapter
from providers.adapters.base import Endpoint, ProviderError, Timeouts
from providers.catalogue import forget_models
from providers.models import ModelSetting, ProviderCredential
from providers.platform import from_stored

# A live check must answer quickly; an admin is waiting for it.
TEST_TIMEOUTS = Timeouts(connect=5.0, first_token=10.0, chunk_gap=10.0, total=15.0)
KINDS_NEEDING_URL = {ProviderCredential.Kind.OLLAMA, ProviderCredential.Kind.OPENAI_COMPATIBLE}


@dataclass(frozen=True)
class TestResult:
    ok: bool
    code: str
    message: str
    models: int = 0


def _check_base_url(kind: str, base_url: str) -> None:
    if not base_url:
        if kind in KINDS_NEEDING_URL:
            raise ApiError(
                "base_url_required", "This kind needs a base URL.", fields={"base_url": "required"}
            )
        return
    try:
        netguard.check_url(base_url, resolve=True)
    except ProviderError as exc:
        raise ApiError("url_refused", exc.message, fields={"base_url": exc.message}) from None


def credential_create(
    *,
    organization: Organization,
    name: str,
    kind: str,
    api_key: str,
    provider: str = "",
    **fields: Any,
) -> ProviderCredential:
    _check_base_url(kind, fields.get("base_url", ""))
    credential = ProviderCredential(
        organization=organization, name=name, kind=kind, provider=provider or kind, **fields
    )
    credential.set_secret(api_key)
    credential.save()
    return credential


def credential_update(*, credential: ProviderCredential, **fields: Any) -> ProviderCredential:
    """Changes everything but the secret; a new secret goes through `credential_rotate`."""
    kind = fields.get("kind", credential.kind)
    _check_base_url(kind, fields.get("base_url", credential.base_url))
    for name, value in fields.items():
        setattr(credential, name, value)
    credential.save()
    async_to_sync(forget_models)(from_stored(credential))
    return credential


async def aendpoint_test(endpoint: Endpoint) -> TestResult:
    """A cheap live check: list the models with the key (no tokens spent)."""
    try:
        models = await get_adapter(endpoint, timeouts=TEST_TIMEOUTS).list_models()
    except ProviderError as exc:
        return TestResult(ok=False, code=exc.code, message=exc.message)
    return TestResult(
        ok=True, code="ok", message=f"{len(models)} models available.", models=len(models)
    )


def credential_test(*, credential: ProviderCredential) -> TestResult:
    return async_to_sync(aendpoint_test)(from_stored(credential).endpoint())


@dataclass(frozen=True)
class RotationResult:
    rotated: bool
    test: TestResult


def credential_rotate(
    *, credential: ProviderCredential, api_key: str, force: bool = False
) -> RotationResult:
    """Replace the key after a live test with the new one (unless forced), atomically. Calls in
    flight keep the endpoint they were built with, so they finish on the old key."""
    candidate = from_stored(credential).endpoint()
    test = async_to_sync(aendpoint_test)(
        Endpoint(
            kind=candidate.kind, base_url=candidate.base_url, api_key=api_key, label=candidate.label
        )
    )
    if not test.ok and not force:
        return RotationResult(rotated=False, test=test)
    with transaction.atomic():
        locked = ProviderCredential.objects.select_for_update().get(pk=credential.pk)
        locked.rotate_secret(api_key)
        locked.save(
            update_fields=["secret_encrypted", "key_hint", "version", "rotated_at", "updated_at"]
        )
    credential.refresh_from_db()
    return RotationResult(rotated=True, test=test)


def model_setting_set(
    *, organization: Organization, provider: str, model: str, **fields: Any
) -> ModelSetting:
    setting, _ = ModelSetting.objects.update_or_create(
        organization=organization, provider=provider, model=model, defaults=fields
    )
    return setting
