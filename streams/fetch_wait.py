"""A consumer's fetch wait that grows when the broker cuts fetches short, and shrinks back after.

tansu reads a fetch's partitions one after another and stops when the fetch's wait runs out,
answering the partitions it has not reached yet as empty although their high watermark lies past
the fetch offset (quirk E in README's "Limits of the embedded broker"). Reading a partition costs
time in proportion to its record batches (quirk D), so on a long-lived topic of small batches a
fixed wait of 20 ms starves the partitions at the end of every fetch, and once one partition takes
longer than the wait on its own, the consumer reads nothing at all from it, ever.

A wait cannot simply be set high, because tansu also holds a fetch that finds no data for its whole
wait (quirk C), which sets the latency of a quiet stream. So the wait follows what the broker needs:
a fetch that ran out of time (a partition came back empty while it had records, and the answer took
the whole wait) doubles it, up to a cap; a fetch that came back with data sets it to twice that
fetch's round trip if that is less (the broker read every partition in that time, so twice it is
ample); a fetch that found nothing to read halves it (the broker read no partition, so its round
trip says nothing of the reading cost). A partition left empty by the fetch's byte limit comes back
early, not after the whole wait, and is no reason to wait longer. On a broker that never cuts a fetch
short, Kafka's own among them, the wait stays at the floor.

Usage is one call on a consumer before it starts (`adapt_fetch_wait`); the policy itself is
`FetchWait`, plain Python:

>>> wait = FetchWait(floor_ms=20, cap_ms=500)
>>> wait.observe(starved=True, had_data=True, round_trip_ms=21.0)
40
>>> wait.observe(starved=True, had_data=True, round_trip_ms=41.0)
80
>>> wait.observe(starved=False, had_data=True, round_trip_ms=30.0)
60
>>> wait.observe(starved=False, had_data=False, round_trip_ms=61.0)
30
>>> wait.observe(starved=True, had_data=True, round_trip_ms=5.0)  # byte-limited, not out of time
20
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

#: A starved fetch counts as out of time when its round trip took this share of its wait or more.
OUT_OF_TIME = 0.8


class FetchWait:
    """The wait (ms) for a consumer's next fetch, from what its last fetch came back with."""

    def __init__(self, floor_ms: int, cap_ms: int = 1_000) -> None:
        if not 1 <= floor_ms <= cap_ms:
            raise ValueError(f"need 1 <= floor_ms <= cap_ms, got {floor_ms} and {cap_ms}")
        self.floor_ms = floor_ms
        self.cap_ms = cap_ms
        self._wait = float(floor_ms)
        self.out_of_time = 0  # fetches the broker answered before reading every partition

    @property
    def wait_ms(self) -> int:
        return round(self._wait)

    def observe(self, starved: bool, had_data: bool, round_trip_ms: float) -> int:
        """Take one fetch's outcome; returns the wait for the next fetch.

        `starved`: a partition came back empty although it had records past the fetch offset.
        """
        if starved and round_trip_ms >= OUT_OF_TIME * self.wait_ms:  # the wait the fetch was sent with
            self.out_of_time += 1
            self._wait *= 2.0
        elif had_data:
            self._wait = min(self._wait, 2.0 * round_trip_ms)
        else:
            self._wait *= 0.5
        self._wait = min(float(self.cap_ms), max(float(self.floor_ms), self._wait))
        return self.wait_ms


def fetch_outcome(request: Any, assignment: Any, buffered: dict[TopicPartition, Any],
                  sent_ms: int) -> tuple[bool, bool]:
    """(starved, had data) of a fetch sent at `sent_ms` that aiokafka's fetcher has just taken in.

    A partition came back with data when the fetcher now buffers records for it; it was starved
    when it came back without any while the high watermark the same response reported lies past
    the offset it was fetched from. The fetcher stamps a partition's state when it takes in an
    answer for it, so an older stamp (a failed fetch) or a moved position (an answer the fetcher
    discarded) says nothing about this fetch.
    """
    starved = data = False
    if not assignment.active:
        return starved, data
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
                starved = True
    return starved, data


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
            began = time.monotonic()
            needs_wakeup: bool = await handle(assignment, node_id, request)
            starved, data = fetch_outcome(request, assignment, fetcher._records, sent_ms)
            fetcher._fetch_max_wait_ms = wait.observe(starved, data, 1000 * (time.monotonic() - began))
            return needs_wakeup

        fetcher._proc_fetch_request = take
        fetcher._fetch_max_wait_ms = wait.wait_ms

    consumer.start = start_then_adapt
