"""The heap the server starts with, kept out of the cyclic garbage collector's way.

Everything imported and built before the first request (Django, the apps, the provider SDKs,
pydantic's models: over a hundred thousand objects) lives as long as the process. Python's
collector still walks all of it at every full collection: under 32 concurrent `/v1` calls there
were several a minute, of about 100 ms each: 8% of the server's CPU (timed with `gc.callbacks`,
2026-12-07), and every answer in flight paused for the length of one. `gc.freeze()` moves those
objects (about 123,000) to the permanent generation, which no collection visits; a full
collection then took about 40 ms, and GC's share of the CPU fell to 2-4%. What requests create
is collected as before.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Load what the first requests would (the URL configuration and every view it names, and
    with them the services and SDKs), collect the garbage of start-up, then freeze the rest.
    Returns how many objects were frozen."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports the URL configuration and its views
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
