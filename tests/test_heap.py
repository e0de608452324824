"""config.heap: what start-up built is frozen out of the collector's reach; garbage made later
is still collected."""

from __future__ import annotations

import gc
import weakref

from config import heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_start_up_objects_are_frozen_and_later_garbage_still_collected() -> None:
    built_at_start = _Node()
    try:
        frozen = heap.freeze_startup_objects()
        # Not compared with gc.get_freeze_count() afterwards: frozen objects that die (their last
        # reference dropped) leave the permanent generation, so the count only falls.
        assert frozen > 10_000
        assert not any(o is built_at_start for o in gc.get_objects()), "not frozen"
        later = _Node()
        gone = weakref.ref(later)
        del later
        gc.collect()
        assert gone() is None, "garbage made after the freeze was not collected"
    finally:
        gc.unfreeze()
