"""Provider adapters: the registry of kinds and a cache of ready adapters.

A new provider kind is one module implementing `base.Adapter` and one line in `_KINDS`.
An adapter's module, and with it its SDK, is imported the first time its kind is used: the
SDKs cost tens of MiB of memory each (anthropic's ~28, ollama's with httpx ~10), which a
process serving only OpenAI-compatible credentials never pays.

`get_adapter` is what callers use on the request path. Building an adapter builds an SDK client
and its connection pool (milliseconds, and a TLS handshake per new connection), so adapters are
reused per (endpoint, timeouts) within a running event loop. Per loop, because SDK clients and
their pools are bound to the loop they first ran on: using one from another loop fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping

from .base import Adapter, Endpoint, Timeouts

# kind: (module, class, label). The label is here, not only on the class, so that forms and
# model choices need no import of the SDK.
_KINDS: dict[str, tuple[str, str, str]] = {
    "openai": ("openai", "OpenAIAdapter", "OpenAI"),
    "openai_compatible": ("openai_compatible", "OpenAICompatibleAdapter", "OpenAI-compatible"),
    "anthropic": ("anthropic", "AnthropicAdapter", "Anthropic"),
    "ollama": ("ollama", "OllamaAdapter", "Ollama"),
}


class _Registry(Mapping[str, type[Adapter]]):
    """kind -> adapter class, importing the adapter's module on first lookup."""

    def __getitem__(self, kind: str) -> type[Adapter]:
        module, name, _ = _KINDS[kind]
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)

    def __iter__(self) -> Iterator[str]:
        return iter(_KINDS)

    def __len__(self) -> int:
        return len(_KINDS)


ADAPTERS: Mapping[str, type[Adapter]] = _Registry()

#: (kind, label) choices for forms and model fields
KINDS: list[tuple[str, str]] = [(kind, label) for kind, (_, _, label) in _KINDS.items()]

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
