"""config.heap: what start-up built is frozen out of the collector's reach; garbage made later
is still collected."""

from __future__ import annotations

import gc
import weakref

from django.urls import get_resolver

from config import heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_start_up_objects_are_frozen_and_later_garbage_still_collected() -> None:
    try:
        frozen = heap.freeze_startup_objects()
        assert frozen == gc.get_freeze_count() > 10_000
        tracked = {id(o) for o in gc.get_objects()}
        # The URL configuration (loaded by the freeze) is out of the collector's walk.
        assert id(get_resolver().url_patterns) not in tracked
        node = _Node()
        gone = weakref.ref(node)
        del node
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
