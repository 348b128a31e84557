"""The adaptive fetch wait: its policy, and a consumer on the embedded broker reading a partition
of many small record batches that a fixed short wait never gets through (quirk E)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from streams.broker import EmbeddedBroker
from streams.fetch_wait import OUT_OF_TIME, FetchWait, adapt_fetch_wait
from streams.kafka import bootstrap_servers, ensure_topics

TOPIC = "usp.test-fetch-wait"
BATCHES = 6_000  # one record each: reading them costs tansu several ms, far past a 1 ms wait


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


def test_a_floor_above_the_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="floor_ms <= cap_ms"):
        FetchWait(floor_ms=50, cap_ms=20)


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
    assert wait.wait_ms > 1
