"""The adaptive fetch wait: its policy, and a consumer on the embedded broker reading a partition
of many small record batches that a fixed short wait never gets through (quirk E)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.consumer.fetcher import FetchResult
from aiokafka.structs import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from streams.broker import EmbeddedBroker
from streams.fetch_wait import CAP_MS, OUT_OF_TIME, FetchWait, adapt_fetch_wait, fetch_outcome
from streams.kafka import bootstrap_servers, ensure_topics

TOPIC = "usp.test-fetch-wait"
BATCHES = 10_000  # one record each: reading them costs tansu 5-10 ms, far past a 1 ms wait


def test_a_fetch_out_of_time_doubles_the_wait_up_to_the_cap() -> None:
    wait = FetchWait(floor_ms=20, cap_ms=300)
    assert wait.wait_ms == 20
    grown = [wait.observe(starved=True, had_data=False, round_trip_ms=wait.wait_ms) for _ in range(5)]
    assert grown == [40, 80, 160, 300, 300]
    assert wait.out_of_time == 5


def test_a_starved_partition_in_a_quick_answer_is_a_byte_limit_not_a_reason_to_wait() -> None:
    wait = FetchWait(floor_ms=20, cap_ms=1_000)
    wait.observe(starved=True, had_data=True, round_trip_ms=25)
    wait.observe(starved=True, had_data=True, round_trip_ms=45)
    assert wait.wait_ms == 80
    assert wait.observe(starved=True, had_data=True, round_trip_ms=30) == 60  # < 0.8 x 80: complete
    assert wait.out_of_time == 2


def test_data_brings_the_wait_down_to_twice_its_round_trip_and_nothing_halves_it() -> None:
    wait = FetchWait(floor_ms=10, cap_ms=1_000)
    for _ in range(6):
        wait.observe(starved=True, had_data=True, round_trip_ms=wait.wait_ms)
    assert wait.wait_ms == 640
    assert wait.observe(starved=False, had_data=True, round_trip_ms=400) == 640  # never raised by data
    assert wait.observe(starved=False, had_data=True, round_trip_ms=100) == 200
    assert wait.observe(starved=False, had_data=False, round_trip_ms=200) == 100
    assert wait.observe(starved=False, had_data=True, round_trip_ms=1) == 10  # not below the floor
    assert wait.out_of_time == 6


def test_a_floor_above_the_cap_is_refused_and_the_default_cap_never_below_the_floor() -> None:
    with pytest.raises(ValueError, match="floor_ms <= cap_ms"):
        FetchWait(floor_ms=50, cap_ms=20)
    assert FetchWait(floor_ms=20).cap_ms == CAP_MS
    assert FetchWait(floor_ms=1_500).cap_ms == 1_500  # Faust's own 1,500 ms, config allows 10,000
    assert FetchWait(floor_ms=1_500).observe(True, False, 1_500) == 1_500


def test_out_of_time_is_judged_against_the_wait_the_fetch_carried() -> None:
    wait = FetchWait(floor_ms=20)
    wait.observe(starved=True, had_data=False, round_trip_ms=20)
    assert wait.wait_ms == 40
    assert wait.observe(starved=True, had_data=False, round_trip_ms=20, sent_wait_ms=20) == 80


def state(stamp: int | None, position: int = 10, highwater: int | None = 15, lso: int | None = 15) -> Any:
    return SimpleNamespace(timestamp=stamp, has_valid_position=True, position=position,
                           highwater=highwater, lso=lso)


def outcome(states: dict[int, Any], before: dict[int, int | None], buffered: dict[int, Any] | None = None,
            read_committed: bool = False, active: bool = True) -> tuple[bool, bool, bool]:
    """fetch_outcome for a fetch of partitions 0.. of topic t, each from offset 10."""
    tps = {p: TopicPartition("t", p) for p in states}
    assignment = SimpleNamespace(active=active, state_value=lambda tp: states[tp.partition])
    request = SimpleNamespace(topics=[("t", [(p, 10, 1 << 20) for p in states])])
    return fetch_outcome(request, assignment, {tps[p]: v for p, v in (buffered or {}).items()},
                         {tps[p]: v for p, v in before.items()}, read_committed)


def test_a_fetch_outcome_reads_only_what_this_fetch_answered() -> None:
    records = FetchResult.__new__(FetchResult)  # only its type matters here
    # answered: 0 with records, 1 starved; 2 kept its old stamp (not in this answer)
    assert outcome({0: state(5), 1: state(5), 2: state(3)}, {0: 3, 1: 3, 2: 3}, {0: records}) == (True, True, True)
    # nothing restamped (a failed, cancelled or discarded fetch): says nothing
    assert outcome({0: state(3), 1: state(3)}, {0: 3, 1: 3}) == (False, False, False)
    assert outcome({0: state(5)}, {0: 3}, active=False) == (False, False, False)
    # caught up, or the position moved since (the fetcher dropped the answer): not starved
    assert outcome({0: state(5, highwater=10)}, {0: 3}) == (True, False, False)
    assert outcome({0: state(5, position=12)}, {0: 3}) == (True, False, False)
    # an error buffered for a partition is not data
    assert outcome({0: state(5)}, {0: 3}, {0: object()}) == (True, True, False)
    # reading committed records, the end is the last stable offset
    assert outcome({0: state(5, lso=10)}, {0: 3}, read_committed=True) == (True, False, False)


@given(st.integers(1, 200), st.integers(0, 2_000),
       st.lists(st.tuples(st.booleans(), st.booleans(), st.floats(0, 5_000)), max_size=200))
def test_the_wait_stays_within_floor_and_cap_and_grows_only_out_of_time(
        floor: int, extra: int, outcomes: list[tuple[bool, bool, float]]) -> None:
    wait = FetchWait(floor_ms=floor, cap_ms=floor + extra)
    for starved, data, round_trip in outcomes:
        before = wait.wait_ms
        out_of_time = starved and round_trip >= OUT_OF_TIME * before
        after = wait.observe(starved, data, round_trip)
        assert floor <= after <= floor + extra
        assert (after >= before) if out_of_time else (after <= before)


@pytest.fixture(scope="module")
def small_batches() -> Iterator[str]:
    """A one-partition topic of BATCHES record batches of one record each."""
    with EmbeddedBroker() as broker:
        ensure_topics(broker.url, 1, (TOPIC,))

        async def write() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(broker.url), linger_ms=0, acks=1)
            await producer.start()
            try:
                for i in range(BATCHES):  # each acknowledged before the next: one batch per record
                    await (await producer.send(TOPIC, b"%d" % i, partition=0))
            finally:
                await producer.stop()

        asyncio.run(write())
        yield broker.url


async def read(url: str, adapt: FetchWait | None, budget_s: float) -> int:
    """Records read from the start of the partition with a 1 ms fetch wait within `budget_s`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(url), enable_auto_commit=False,
                                fetch_max_wait_ms=1, auto_offset_reset="earliest")
    if adapt is not None:
        adapt_fetch_wait(consumer, adapt)
    await consumer.start()
    tp = TopicPartition(TOPIC, 0)
    consumer.assign([tp])
    got = 0
    deadline = time.monotonic() + budget_s
    try:
        while got < BATCHES and time.monotonic() < deadline:
            got += sum(len(r) for r in (await consumer.getmany(tp, timeout_ms=200)).values())
    finally:
        await consumer.stop()
    return got


def test_a_fixed_wait_shorter_than_reading_the_partition_reads_nothing(small_batches: str) -> None:
    # The premise (quirk E): tansu answers the partition empty once the wait runs out, every time.
    assert asyncio.run(read(small_batches, None, budget_s=3)) == 0


def test_the_adaptive_wait_reads_every_record(small_batches: str) -> None:
    wait = FetchWait(floor_ms=1)
    assert asyncio.run(read(small_batches, wait, budget_s=60)) == BATCHES
    assert wait.out_of_time >= 1  # it had to grow to get there
