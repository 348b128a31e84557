"""true_end_offsets on the embedded broker: the end a fetch reports, whatever ListOffsets says."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from kafka.structs import TopicPartition

from models.config import StreamsConfig
from streams.broker import EmbeddedBroker
from streams.ends import true_end_offsets
from streams.kafka import bootstrap_servers, ensure_topics, make_consumer
from streams.output import OutputProducer
from streams.tail import partitions_of

TOPIC = "usp.test-ends"


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        ensure_topics(b.url, 4, (TOPIC,))
        yield b


def write(url: str, counts: dict[int, int]) -> dict[tuple[str, int], int]:
    """`counts[p]` records to partition p, each partition's records in one record batch."""
    async def go() -> dict[tuple[str, int], int]:
        out = OutputProducer(url, StreamsConfig())
        for p, n in counts.items():
            for i in range(n):
                await out.send_to(TOPIC, p, b"k", b"%d" % i)
        await out.flush()
        offsets = out.last_offsets
        await out.stop()
        return offsets
    return asyncio.run(go())


def list_offsets(url: str) -> dict[TopicPartition, int]:
    consumer = make_consumer(url, StreamsConfig(), group_id=None)
    try:
        return dict(consumer.end_offsets(partitions_of(consumer, TOPIC)))
    finally:
        consumer.close()


def test_ends_are_one_past_the_last_record_of_a_multi_record_batch(broker: EmbeddedBroker) -> None:
    # partition 0 stays empty; 1 gets one batch of ten, 2 one record, 3 two batches (10 then 5)
    assert write(broker.url, {1: 10, 2: 1, 3: 10}) == {(TOPIC, 1): 9, (TOPIC, 2): 0, (TOPIC, 3): 9}
    assert write(broker.url, {3: 5}) == {(TOPIC, 3): 14}
    reported = list_offsets(broker.url)
    ends = asyncio.run(true_end_offsets(reported, bootstrap_servers(broker.url), timeout_s=30))
    assert {tp.partition: end for tp, end in ends.items()} == {0: 0, 1: 10, 2: 1, 3: 15}
    # never below what ListOffsets said (on tansu it is short after a batch: quirk B)
    assert all(ends[tp] >= reported[tp] for tp in reported)


def test_nothing_to_fetch_when_every_partition_is_empty() -> None:
    reported = {TopicPartition("usp.no-such-topic-needed", 0): 0}
    # an empty partition needs no fetch, so not even the topic has to exist
    assert asyncio.run(true_end_offsets(reported, "127.0.0.1:1", timeout_s=1)) == reported
