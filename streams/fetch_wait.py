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
nearly all of its wait: `OUT_OF_TIME`) doubles it, up to a cap; a fetch that came back with data sets it to twice that
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
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult
from aiokafka.structs import TopicPartition

#: A starved fetch counts as out of time when its round trip took this share of its wait or more.
OUT_OF_TIME = 0.8
#: The longest wait unless the floor is longer: reading a partition of a million batches (quirk D).
CAP_MS = 1_000


class FetchWait:
    """The wait (ms) for a consumer's next fetch, from what its last fetch came back with."""

    def __init__(self, floor_ms: int, cap_ms: int | None = None) -> None:
        if cap_ms is None:
            cap_ms = max(CAP_MS, floor_ms)
        if not 1 <= floor_ms <= cap_ms:
            raise ValueError(f"need 1 <= floor_ms <= cap_ms, got {floor_ms} and {cap_ms}")
        self.floor_ms = floor_ms
        self.cap_ms = cap_ms
        self._wait = float(floor_ms)
        self.out_of_time = 0  # fetches the broker answered before reading every partition

    @property
    def wait_ms(self) -> int:
        return round(self._wait)

    def observe(self, starved: bool, had_data: bool, round_trip_ms: float, sent_wait_ms: int | None = None) -> int:
        """Take one fetch's outcome; returns the wait for the next fetch.

        `starved`: a partition came back empty although it had records past the fetch offset.
        `sent_wait_ms`: the wait that fetch carried (default: the current one).
        """
        sent = self.wait_ms if sent_wait_ms is None else sent_wait_ms
        if starved and round_trip_ms >= OUT_OF_TIME * sent:
            self.out_of_time += 1
            self._wait *= 2.0
        elif had_data:
            self._wait = min(self._wait, 2.0 * round_trip_ms)
        else:
            self._wait *= 0.5
        self._wait = min(float(self.cap_ms), max(float(self.floor_ms), self._wait))
        return self.wait_ms


def fetch_outcome(request: Any, assignment: Any, buffered: dict[TopicPartition, Any],
                  stamps_before: dict[TopicPartition, int | None], read_committed: bool) -> tuple[bool, bool, bool]:
    """(answered, starved, had data) of a fetch that aiokafka's fetcher has just taken in.

    The fetcher stamps a partition's state when it takes in an answer for it, so a partition whose
    stamp did not move since before the fetch was not answered by it (a failed or cancelled fetch, a
    discarded answer): such a fetch says nothing. A partition came back with data when the fetcher now
    buffers records for it (not an error); it was starved when it came back without any although the
    end the same answer reported (the high watermark, or the last stable offset when reading committed
    records) lies past the offset it was fetched from, at the consumer's unchanged position.
    """
    answered = starved = data = False
    if not assignment.active:
        return answered, starved, data
    for tp, offset in _fetched(request):
        state = assignment.state_value(tp)
        if state is None or state.timestamp is None or state.timestamp == stamps_before.get(tp):
            continue
        answered = True
        if isinstance(buffered.get(tp), FetchResult):
            data = True
            continue
        end = state.lso if read_committed else state.highwater
        if state.has_valid_position and state.position == offset and end is not None and end > offset:
            starved = True
    return answered, starved, data


def _fetched(request: Any) -> Iterator[tuple[TopicPartition, int]]:
    """(partition, fetch offset) of each partition a fetch request asks for."""
    for topic, partitions in request.topics:
        for partition, offset, *_ in partitions:
            yield TopicPartition(topic, partition), offset


def stamps_of(request: Any, assignment: Any) -> dict[TopicPartition, int | None]:
    """The fetcher's stamp on each partition of `request` (None: none yet), taken before it is sent."""
    if not assignment.active:
        return {}
    stamps: dict[TopicPartition, int | None] = {}
    for tp, _ in _fetched(request):
        state = assignment.state_value(tp)
        stamps[tp] = None if state is None else state.timestamp
    return stamps


def adapt_fetch_wait(consumer: AIOKafkaConsumer, wait: FetchWait) -> None:
    """Make `consumer` (not yet started) fetch with `wait`'s adaptive wait.

    aiokafka builds its fetcher in `start()` and reads the fetcher's `_fetch_max_wait_ms` for every
    request it builds, so the hook wraps `start` to wrap the new fetcher's handler of a response.
    These are aiokafka internals (0.14, pinned in pyproject.toml): if they move, `start` stops the
    consumer and raises, and tests/streams/test_fetch_wait.py fails.
    """
    consumer._fetch_max_wait_ms = wait.wait_ms
    start: Callable[[], Awaitable[None]] = consumer.start

    async def start_then_adapt() -> None:
        await start()
        try:
            fetcher = consumer._fetcher
            handle = fetcher._proc_fetch_request
            read_committed = fetcher._isolation_level == READ_COMMITTED
        except AttributeError:  # aiokafka moved its internals: say so rather than run unadapted
            await consumer.stop()
            raise

        async def take(assignment: Any, node_id: int, request: Any) -> bool:
            stamps = stamps_of(request, assignment)
            began = time.monotonic()
            needs_wakeup: bool = await handle(assignment, node_id, request)
            answered, starved, data = fetch_outcome(request, assignment, fetcher._records, stamps, read_committed)
            if answered:
                fetcher._fetch_max_wait_ms = wait.observe(starved, data, 1000 * (time.monotonic() - began),
                                                          getattr(request, "_max_wait_ms", None))
            return needs_wakeup

        fetcher._proc_fetch_request = take
        fetcher._fetch_max_wait_ms = wait.wait_ms

    consumer.start = start_then_adapt
