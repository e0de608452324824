"""Rotating a key while a chat streams: the stream finishes, the next call uses the new key."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from providers.calls import CallParams, open_stream
from providers.models import ProviderCredential
from providers.routing import aresolve
from providers.services import credential_rotate


@pytest.mark.django_db(transaction=True)
async def test_a_stream_in_flight_survives_a_rotation(acme_credentials) -> None:
    credential = acme_credentials["openai"]
    organization = await sync_to_async(lambda: credential.organization)()
    route = await aresolve(organization=organization, provider="openai", model="sim-gpt")
    messages = [{"role": "user", "content": "a long answer sim:chunks=20 sim:delay=0.02"}]
    stream = await open_stream(route.candidates, messages, params=CallParams())
    deltas = []
    async for event in stream:
        if isinstance(event, str):
            deltas.append(event)
            if len(deltas) == 3:
                result = await sync_to_async(credential_rotate)(
                    credential=credential, api_key="sim-rotated-mid-stream"
                )
                assert result.rotated
    assert len(deltas) == 20
    stored = await ProviderCredential.objects.aget(pk=credential.pk)
    assert stored.version == 2
    fresh = await aresolve(organization=organization, provider="openai", model="sim-gpt")
    assert fresh.candidates[0].endpoint.api_key == "sim-rotated-mid-stream"
