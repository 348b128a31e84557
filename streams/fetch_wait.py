"""A consumer's fetch wait that grows when the broker cuts fetches short, and shrinks back after.

tansu reads a fetch's partitions one after another and stops when the fetch's wait runs out,
answering the partitions it has not reached yet as empty although their high watermark lies past
the fetch offset (quirk E in README's "Limits of the embedded broker"). Reading a partition costs
time in proportion to its record batches (quirk D), so on a long-lived topic of small batches a
fixed wait of 20 ms starves the partitions at the end of every fetch, and once one partition takes
longer than the wait on its own, the consumer reads nothing at all from it, ever.

A wait cannot simply be set high, because tansu also holds a fetch that finds no data for its whole
wait (quirk C), which sets the latency of a quiet stream. So the wait adapts, as TCP's congestion
window does to loss: a fetch cut short doubles it (up to a cap); a complete fetch with data lets it
decay slowly back to the configured floor; a fetch that found nothing to read halves it (the
broker read no partition, so its reading cost says nothing). On a broker that never cuts a fetch
short, Kafka's own among them, the wait stays at the floor.

Usage is one call on a consumer before it starts (`adapt_fetch_wait`); the policy itself is
`FetchWait`, plain Python:

>>> wait = FetchWait(floor_ms=20, cap_ms=500)
>>> wait.observe(cut_short=True, had_data=True)
40
>>> wait.observe(cut_short=True, had_data=True)
80
>>> wait.observe(cut_short=False, had_data=False)
40
>>> [wait.observe(cut_short=False, had_data=True) for _ in range(3)]
[39, 38, 38]
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

#: How far a complete fetch with data lets the wait decay: halves in about 35 fetches (a second or
#: two of steady traffic), so a broker near the edge cuts one fetch in that many, not every other.
DECAY = 0.98


class FetchWait:
    """The wait (ms) for a consumer's next fetch, from what its last fetch came back with."""

    def __init__(self, floor_ms: int, cap_ms: int = 2_000) -> None:
        if not 1 <= floor_ms <= cap_ms:
            raise ValueError(f"need 1 <= floor_ms <= cap_ms, got {floor_ms} and {cap_ms}")
        self.floor_ms = floor_ms
        self.cap_ms = cap_ms
        self._wait = float(floor_ms)
        self.cut_short = 0  # fetches the broker answered before reading every partition

    @property
    def wait_ms(self) -> int:
        return round(self._wait)

    def observe(self, cut_short: bool, had_data: bool) -> int:
        """Take one fetch's outcome; returns the wait for the next fetch."""
        if cut_short:
            self.cut_short += 1
            self._wait *= 2.0
        elif had_data:
            self._wait *= DECAY
        else:
            self._wait *= 0.5
        self._wait = min(float(self.cap_ms), max(float(self.floor_ms), self._wait))
        return self.wait_ms


def fetch_outcome(request: Any, assignment: Any, buffered: dict[TopicPartition, Any],
                  sent_ms: int) -> tuple[bool, bool]:
    """(cut short, had data) of a fetch sent at `sent_ms` that aiokafka's fetcher has just taken in.

    A partition came back with data when the fetcher now buffers records for it; it was cut short
    when it came back without any while the high watermark the same response reported lies past
    the offset it was fetched from. The fetcher stamps a partition's state when it takes in an
    answer for it, so an older stamp (a failed fetch) or a moved position (an answer the fetcher
    discarded) says nothing about this fetch.
    """
    cut = data = False
    if not assignment.active:
        return cut, data
    for topic, partitions in request.topics:
        for partition, offset, *_ in partitions:
            tp = TopicPartition(topic, partition)
            if tp in buffered:
                data = True
                continue
            state = assignment.state_value(tp)
            if (state is not None and state.timestamp is not None and state.timestamp >= sent_ms
                    and state.has_valid_position and state.position == offset
                    and state.highwater is not None and state.highwater > offset):
                cut = True
    return cut, data


def adapt_fetch_wait(consumer: AIOKafkaConsumer, wait: FetchWait) -> None:
    """Make `consumer` (not yet started) fetch with `wait`'s adaptive wait.

    aiokafka builds its fetcher in `start()` and reads the fetcher's `_fetch_max_wait_ms` for every
    request it builds, so the hook wraps `start` to wrap the new fetcher's handler of a response.
    These are aiokafka internals (0.14, pinned in pyproject.toml): tests/streams/test_fetch_wait.py
    fails if they move.
    """
    consumer._fetch_max_wait_ms = wait.wait_ms
    start: Callable[[], Awaitable[None]] = consumer.start

    async def start_then_adapt() -> None:
        await start()
        fetcher = consumer._fetcher
        handle = fetcher._proc_fetch_request

        async def take(assignment: Any, node_id: int, request: Any) -> bool:
            sent_ms = int(1000 * time.time())  # the fetcher's own stamp, in its units
            needs_wakeup: bool = await handle(assignment, node_id, request)
            cut, data = fetch_outcome(request, assignment, fetcher._records, sent_ms)
            fetcher._fetch_max_wait_ms = wait.observe(cut, data)
            return needs_wakeup

        fetcher._proc_fetch_request = take
        fetcher._fetch_max_wait_ms = wait.wait_ms

    consumer.start = start_then_adapt
