"""THE ADMISSION SEAM: the one place chats talks to `providers.admission` — rate limits and the
budget reservation before a provider call, the usage ledger after it.

`admit` raises `providers.admission.AdmissionRefused`, an `ApiError` (402 `budget_exceeded`,
429 `rate_limited` with Retry-After, 503 `service_unavailable`): REST answers it in the one error
shape, the WebSocket consumer sends it as an error frame. No provider call follows a refusal.
"""

from __future__ import annotations

from collections.abc import Sequence

from accounts.models import Membership
from providers import admission as _admission
from providers.adapters.base import ChatTurn, Usage
from providers.admission import Admission, AdmissionRefused
from providers.calls import Candidate
from providers.models import UsageRecord
from providers.routing import Route

__all__ = ["Admission", "AdmissionRefused", "admit", "release", "settle"]


async def admit(
    *,
    request_id: str,
    membership: Membership,
    route: Route,
    messages: Sequence[ChatTurn],
    max_tokens: int,
) -> Admission:
    """Admit one provider call (reserving its worst-case cost) or raise `AdmissionRefused`."""
    return await _admission.admit(
        request_id=request_id,
        membership=membership,
        route=route,
        messages=list(messages),
        max_tokens=max_tokens,
    )


async def settle(
    *,
    admission: Admission,
    candidate: Candidate | None,
    usage: Usage | None,
    status: str,
    error_code: str,
    latency_ms: int | None,
    ttft_ms: int | None,
    chat_id: int,
) -> UsageRecord:
    """Write the usage record and swap the reservation for the real cost. Exactly once per
    request id: a second call returns the first record. `usage` None: no provider answered."""
    return await _admission.settle(
        admission=admission,
        candidate=candidate,
        usage=usage,
        status=status,
        error_code=error_code,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        chat_id=chat_id,
    )


async def release(*, admission: Admission) -> None:
    """Give back the reservation of a call that never reached a provider. Idempotent."""
    await _admission.release(admission=admission)
