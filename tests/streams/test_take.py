"""The adaptive micro-batch sizer (the Faust side is exercised by the integration tests' workers)."""

from __future__ import annotations

import gc
import weakref

from hypothesis import given
from hypothesis import strategies as st

from streams.take import BatchSizer, freeze_heap, release_free_heap, resident_mb


def sizer(memory_mb: float = 0.0, limit_mb: float = 0.0) -> BatchSizer:
    return BatchSizer(min_size=8, max_size=512, min_wait_s=0.01, max_wait_s=0.1, memory_limit_mb=limit_mb,
                      memory=lambda: memory_mb)


@given(st.lists(st.integers(0, 2000), max_size=60))
def test_limits_stay_within_their_bounds(taken: list[int]) -> None:
    s = sizer()
    for n in taken:
        s.observe(n)
        assert 8 <= s.size <= 512 and 0.01 <= s.wait_s <= 0.1


def test_a_backlog_grows_the_batch_to_its_maximum_and_a_quiet_stream_shrinks_it() -> None:
    s = sizer()
    for _ in range(10):
        s.observe(s.size)
    assert (s.size, s.wait_s) == (512, 0.1)
    for _ in range(10):
        s.observe(0)
    assert (s.size, s.wait_s) == (8, 0.01)


def test_a_live_stream_grows_the_batch_but_not_the_wait() -> None:
    """Batches that come back half full but not full (the wait ran out on a live stream) make room
    for more events without waiting longer for them: the wait is what the latency pays."""
    s = sizer()
    s.size, s.wait_s = 64, 0.08
    for _ in range(4):
        s.observe(s.size // 2 + 1)
    assert s.size == 512 and s.wait_s == 0.01
    s.observe(s.size)  # then a full one: events are queued, wait longer
    assert s.wait_s == 0.02


def test_memory_pressure_drops_to_the_smallest_batches() -> None:
    s = sizer(memory_mb=900.0, limit_mb=800.0)
    s.size, s.wait_s = 512, 0.1
    s.observe(512)  # a full batch would grow it, but the process is over its memory limit
    assert (s.size, s.wait_s) == (8, 0.01)
    calm = sizer(memory_mb=700.0, limit_mb=800.0)
    calm.observe(calm.size)
    assert calm.size == 16


def test_resident_memory_of_this_process_is_read() -> None:
    assert 10.0 < resident_mb() < 100_000.0


def test_freed_heap_goes_back_to_the_os() -> None:
    """200 MB of small objects freed around live ones (so free() cannot shrink the heap by itself) stay
    resident in glibc's arenas until the heap is trimmed."""
    held = [bytearray(3000) for _ in range(70_000)]
    pin = held[::500]  # live objects spread through the block
    del held
    before = resident_mb()
    assert release_free_heap()  # glibc on the machines this runs on
    assert resident_mb() < before - 50
    assert len(pin) == 140


def test_frozen_heap_is_skipped_by_collections_and_later_garbage_is_still_collected() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a reference cycle: only the cyclic collector frees it

    gc.unfreeze()
    try:
        before = Node()
        freeze_heap()
        assert gc.get_freeze_count() > 0
        # moved out of the generations a collection walks, into the permanent one
        assert not any(o is before for g in range(3) for o in gc.get_objects(g))
        frozen = gc.get_freeze_count()
        gc.disable()  # no automatic collection between the next two lines
        later = weakref.ref(Node())  # unreachable at once, but for its own cycle
        assert later() is not None
        gc.collect()
        assert later() is None  # created after the freeze: collected as before
        assert gc.get_freeze_count() == frozen  # the frozen generation is left alone
    finally:
        gc.enable()
        gc.unfreeze()
