"""Provider adapters: the registry of kinds and a cache of ready adapters.

A new provider kind is one module implementing `base.Adapter` and one line in `ADAPTERS`.

`get_adapter` is what callers use on the request path. Building an adapter builds an SDK client
and its connection pool (milliseconds, and a TLS handshake per new connection), so adapters are
reused per (endpoint, timeouts) within a running event loop. Per loop, because SDK clients and
their pools are bound to the loop they first ran on: using one from another loop fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import weakref
from collections import OrderedDict

from .anthropic import AnthropicAdapter
from .base import Adapter, Endpoint, Timeouts
from .ollama import OllamaAdapter
from .openai import OpenAIAdapter
from .openai_compatible import OpenAICompatibleAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    OpenAIAdapter.kind: OpenAIAdapter,
    OpenAICompatibleAdapter.kind: OpenAICompatibleAdapter,
    AnthropicAdapter.kind: AnthropicAdapter,
    OllamaAdapter.kind: OllamaAdapter,
}

#: (kind, label) choices for forms and model fields
KINDS: list[tuple[str, str]] = [(kind, cls.label or kind) for kind, cls in ADAPTERS.items()]

#: adapters kept per event loop; the least recently used beyond this are closed
MAX_ADAPTERS_PER_LOOP = 256
# An evicted adapter may still serve a call that fetched it just before: close it only once
# any such call must be over (its own total timeout), plus a margin.
_EVICTION_GRACE = 5.0

_DEFAULT_TIMEOUTS = Timeouts()

_CacheKey = tuple[str, str | None, str, float | None, int | None, str, Timeouts]
_cache: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, OrderedDict[_CacheKey, Adapter]] = (
    weakref.WeakKeyDictionary()
)
# Loops may run in several threads (an ASGI server's, a test's, a management command's).
_cache_lock = threading.Lock()


def get_adapter(endpoint: Endpoint, *, timeouts: Timeouts | None = None) -> Adapter:
    """The adapter for `endpoint`, reused within the running event loop. Without a running
    loop a fresh adapter is returned (the caller owns it and should `aclose()` it)."""
    cls = adapter_class(endpoint.kind)
    timeouts = timeouts or _DEFAULT_TIMEOUTS
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return cls(endpoint, timeouts=timeouts)
    key = _cache_key(endpoint, timeouts)
    with _cache_lock:
        adapters = _cache.get(loop)
        if adapters is None:
            adapters = _cache[loop] = OrderedDict()
    # Only this loop's thread touches its own OrderedDict.
    adapter = adapters.get(key)
    if adapter is not None:
        adapters.move_to_end(key)
        return adapter
    adapter = adapters[key] = cls(endpoint, timeouts=timeouts)
    while len(adapters) > MAX_ADAPTERS_PER_LOOP:
        _, evicted = adapters.popitem(last=False)
        loop.call_later(evicted.timeouts.total + _EVICTION_GRACE, _close_later, evicted)
    return adapter


def adapter_class(kind: str) -> type[Adapter]:
    try:
        return ADAPTERS[kind]
    except KeyError:
        raise ValueError(f"unknown provider kind {kind!r}") from None


async def close_adapters() -> None:
    """Close and forget the running loop's adapters (shutdown, tests)."""
    loop = asyncio.get_running_loop()
    with _cache_lock:
        adapters = _cache.pop(loop, None)
    for adapter in (adapters or {}).values():
        await adapter.aclose()


def _cache_key(endpoint: Endpoint, timeouts: Timeouts) -> _CacheKey:
    # Everything that shapes the adapter's behaviour; the key itself only as a fingerprint so
    # that the cache's keys do not hold plaintext secrets.
    fingerprint = hashlib.sha256(endpoint.api_key.encode()).hexdigest()
    return (
        endpoint.kind,
        endpoint.base_url,
        fingerprint,
        endpoint.default_temperature,
        endpoint.default_max_tokens,
        endpoint.label,
        timeouts,
    )


def _close_later(adapter: Adapter) -> None:
    task = asyncio.ensure_future(adapter.aclose())
    _closing.add(task)  # a strong reference until done, as asyncio only keeps a weak one
    task.add_done_callback(_closing.discard)


_closing: set[asyncio.Future[None]] = set()

__all__ = [
    "ADAPTERS",
    "KINDS",
    "Adapter",
    "Endpoint",
    "Timeouts",
    "adapter_class",
    "close_adapters",
    "get_adapter",
]
