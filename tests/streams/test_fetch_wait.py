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
from streams.fetch_wait import DECAY, FetchWait, adapt_fetch_wait
from streams.kafka import bootstrap_servers, ensure_topics

TOPIC = "usp.test-fetch-wait"
BATCHES = 6_000  # one record each: reading them costs tansu several ms, far past a 1 ms wait


def test_a_cut_doubles_the_wait_up_to_the_cap() -> None:
    wait = FetchWait(floor_ms=20, cap_ms=300)
    assert wait.wait_ms == 20
    assert [wait.observe(cut_short=True, had_data=False) for _ in range(5)] == [40, 80, 160, 300, 300]
    assert wait.cut_short == 5


def test_complete_fetches_decay_slowly_and_empty_ones_fast_both_down_to_the_floor() -> None:
    wait = FetchWait(floor_ms=10, cap_ms=1_000)
    for _ in range(6):
        wait.observe(cut_short=True, had_data=True)
    assert wait.wait_ms == 640
    assert wait.observe(cut_short=False, had_data=True) == round(640 * DECAY)
    assert wait.observe(cut_short=False, had_data=False) == round(640 * DECAY / 2)
    for _ in range(20):
        wait.observe(cut_short=False, had_data=False)
    assert wait.wait_ms == 10
    assert wait.cut_short == 6


def test_a_floor_above_the_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="floor_ms <= cap_ms"):
        FetchWait(floor_ms=50, cap_ms=20)


@given(st.integers(1, 200), st.integers(0, 2_000),
       st.lists(st.tuples(st.booleans(), st.booleans()), max_size=200))
def test_the_wait_stays_within_floor_and_cap(floor: int, extra: int, outcomes: list[tuple[bool, bool]]) -> None:
    wait = FetchWait(floor_ms=floor, cap_ms=floor + extra)
    for cut, data in outcomes:
        before = wait.wait_ms
        after = wait.observe(cut, data)
        assert floor <= after <= floor + extra
        assert (after >= before) if cut else (after <= before)


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
    assert wait.cut_short >= 1  # it had to grow to get there
    assert wait.wait_ms > 1
