"""Adaptive micro-batches from a Faust stream: small when idle (latency), large under backlog (throughput).

Faust's `Stream.take_events(max_, within)` fixes both the batch size and the wait for one generator. A
fixed small batch wastes a backlog: each batch pays per-batch costs (a compiled step call, an await
on the broker's acks) and a micro-batch of 30 observations pays them 30 times as often as one of 900.
A fixed large wait adds that wait to every message when the stream is quiet.

`adaptive_take_events` keeps Faust's mechanics (a processor fills a buffer while the stream is drained
passively; events are acked only after the caller has handled the batch, so a crash can repeat a batch
but never lose one) and reads its limits from a `BatchSizer` before every batch. The sizer doubles the
batch size while batches come back at least half full (Faust hands events over in bursts, so a batch
under backlog rarely fills to the last event) and halves it when one comes back under a quarter full
(the stream has caught up), within [min, max]. The wait doubles only after a batch that filled to its
limit (a backlog: events are queued, a longer wait gathers more of them) and halves after any other
(the wait ran out: the stream is live, and waiting longer only adds latency; at half load this took
the p99 publish-to-prediction latency from about 165 to 120 ms in back-to-back runs). Under memory
pressure (the process's resident set above a limit) it drops to the minimum, so a worker holding many
series does not also hold a huge batch.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from faust.types import EventT

from models.config import StreamsConfig


def resident_mb(pid: int | None = None) -> float:
    """A process's resident set in MiB, this one's by default (Linux /proc; 0 where unavailable)."""
    try:
        with open(f"/proc/{pid or os.getpid()}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def freeze_heap() -> None:
    """Collect once, then move every object now alive into the cyclic collector's permanent generation
    (`gc.freeze`), where its full passes no longer traverse them.

    A worker starts with a large heap that lives as long as it does (JAX and XLA, the compiled steps,
    Faust's services) and that every full (generation 2) collection walks again without freeing
    anything: on the 2-core machine, with 1,000 series at half the drain rate, those passes took
    140-440 ms each, collected 0-318 objects, and stalled the stream for as long each time (6-16 ms
    once frozen). Objects created afterwards are collected as before.
    """
    gc.collect()
    gc.freeze()


def release_free_heap() -> bool:
    """Hand the C heap's free pages back to the OS (glibc `malloc_trim`); False where unavailable.

    Compiling the step's buckets leaves XLA's freed compiler memory in glibc's arenas: about 230 of
    810 MB resident after a warm-up on the 2-core machine, which the worker would otherwise carry for
    its whole life (and the memory back-off would count).
    """
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


class HeapTrimmer:
    """`release_free_heap` at most once per `interval_s`, or whenever the stream is quiet: called after
    every micro-batch, a trim each time was 3.5% of a worker's samples in a 1,000-series drain
    (py-spy), while what it hands back builds up over seconds, not batches. A quiet stream (a batch
    that came back small) has time to spare, and it is the state a worker's memory is read in.

    >>> clock = iter([0.0, 0.2, 0.5, 1.1]).__next__
    >>> trim = HeapTrimmer(1.0, clock)
    >>> trim(), trim(), trim(quiet=True), trim()  # whether a trim was due
    (True, False, True, False)
    """

    def __init__(self, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: float | None = None

    def __call__(self, quiet: bool = False) -> bool:
        """Trim if `quiet` or if the last trim is at least `interval_s` ago; returns whether it was due (a
        trim outside glibc does nothing)."""
        now = self._clock()
        if not quiet and self._last is not None and now - self._last < self.interval_s:
            return False
        self._last = now
        release_free_heap()
        return True


@functools.cache
def _libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018  # absent outside glibc
        return libc
    except (OSError, AttributeError):
        return None


@dataclass
class BatchSizer:
    """The next micro-batch's size limit and wait, from how full the last ones came back.

    >>> s = BatchSizer(min_size=10, max_size=80, min_wait_s=0.01, max_wait_s=0.08, memory_limit_mb=0)
    >>> s.size, s.wait_s
    (10, 0.01)
    >>> for _ in range(5):
    ...     s.observe(s.size)  # full batches: a backlog
    >>> s.size, s.wait_s
    (80, 0.08)
    >>> s.observe(30)  # between a quarter and half full: the size stays, the wait ran out: it halves
    >>> s.size, s.wait_s
    (80, 0.04)
    >>> s.observe(50)  # over half full but not full: more room, no longer wait
    >>> s.size, s.wait_s
    (80, 0.02)
    >>> s.observe(3)  # under a quarter full: caught up
    >>> s.size, s.wait_s
    (40, 0.01)
    """

    min_size: int
    max_size: int
    min_wait_s: float
    max_wait_s: float
    memory_limit_mb: float
    memory: Callable[[], float] = resident_mb
    size: int = 0
    wait_s: float = 0.0

    def __post_init__(self) -> None:
        self.size = self.min_size
        self.wait_s = self.min_wait_s

    def observe(self, taken: int) -> None:
        """Adapt to a batch of `taken` events that was handed out under the current limits."""
        if self.memory_limit_mb > 0 and self.memory() > self.memory_limit_mb:
            self.size, self.wait_s = self.min_size, self.min_wait_s
        else:
            full = taken >= self.size
            if 2 * taken >= self.size:
                self.size = min(self.size * 2, self.max_size)
            elif taken < self.size // 4:
                self.size = max(self.size // 2, self.min_size)
            if full:
                self.wait_s = min(self.wait_s * 2, self.max_wait_s)
            else:
                self.wait_s = max(self.wait_s / 2, self.min_wait_s)


def batch_sizer(streams: StreamsConfig) -> BatchSizer:
    """The sizer for a worker's agent, from the `streams` config section."""
    return BatchSizer(min_size=streams.min_batch, max_size=streams.max_batch,
                      min_wait_s=max(streams.batch_within_ms, 1) / 1000.0,
                      max_wait_s=max(streams.batch_within_max_ms, 1) / 1000.0,
                      memory_limit_mb=streams.memory_limit_mb)


async def adaptive_take_events(stream: Any, sizer: BatchSizer) -> AsyncIterator[Sequence[EventT]]:
    """Yield lists of events: as soon as `sizer.size` are buffered, or `sizer.wait_s` after the last
    batch was handled with at least one buffered. Events are acked after the caller's loop body returns.

    Written after `faust.Stream.take_events` (faust-streaming 0.15), whose private hooks it uses in the
    same way (`add_processor`, `_enable_passive`, `wait_for_stopped`, `ack`); only the limits move.
    """
    events: list[EventT] = []
    full = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future[None] | None = None
    enable_acks = stream.enable_acks

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming
        if consuming is not None:
            try:
                await consuming
            finally:
                consuming = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("adaptive_take_events: no current event")
        events.append(event)
        if len(events) >= sizer.size:
            full.set()
            consumed.clear()
            await stream.wait(consumed)
        return value

    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(stream.channel.__aiter__())
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(full, timeout=sizer.wait_s)
            if not events:
                continue
            consuming = stream.loop.create_future()
            batch = list(events)
            try:
                yield batch
            finally:
                events.clear()
                for event in batch:
                    await stream.ack(event)
                sizer.observe(len(batch))
                if consuming is not None and not consuming.done():
                    consuming.set_result(None)
                full.clear()
                consumed.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)
