"""Reading a USP topic from the command line: the last N records, optionally following."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import aiokafka
from kafka import KafkaConsumer, TopicPartition

from models.config import StreamsConfig
from streams.fetch_wait import FetchWait, adapt_fetch_wait
from streams.kafka import bootstrap_servers, make_consumer


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


def partitions_of(consumer: KafkaConsumer, topic: str, timeout_s: float = 10.0) -> list[TopicPartition]:
    """Every partition of `topic`, waiting briefly for metadata."""
    deadline = time.monotonic() + timeout_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if time.monotonic() > deadline:
            raise LookupError(f"topic {topic!r} does not exist on this broker")
        time.sleep(0.1)


def tail(url: str, topic: str, n: int, follow: bool, streams: StreamsConfig | None = None,
         should_stop: Callable[[], bool] | None = None) -> Iterator[Record]:
    """Yield up to the last `n` records per partition, oldest first, then new ones if `follow`."""
    streams = streams or StreamsConfig()
    consumer = make_consumer(url, streams, group_id=None, consumer_timeout_ms=1000)
    try:
        tps = partitions_of(consumer, topic)
        consumer.assign(tps)  # group-less: no slow group join
        ends = consumer.end_offsets(tps)
        begins = consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(begins[tp], ends[tp] - n))
        backlog: list[Record] = []
        idle_polls = 0
        while idle_polls < 2:
            batch = consumer.poll(timeout_ms=500)
            if not batch:
                idle_polls += 1
                continue
            idle_polls = 0
            for records in batch.values():
                backlog.extend(Record(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value)
                               for r in records)
        backlog.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
        yield from backlog[-n:] if n > 0 else ()
        while follow and not (should_stop and should_stop()):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    yield Record(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value)
    finally:
        consumer.close()


class FollowedRecord(Protocol):
    """What `follow` hands its callback (an aiokafka consumer record; USP's output records all have a
    value)."""

    @property
    def timestamp(self) -> int: ...

    @property
    def value(self) -> bytes: ...


def follow(url: str, topics: Iterable[str], on_record: Callable[[str, FollowedRecord], None],
           stop: threading.Event, fetch_max_wait_ms: int = 500, metadata_timeout_s: float = 10.0) -> None:
    """Call `on_record(topic, record)` for every record of `topics`, from their beginning, until `stop`
    is set (group-less, so no group join; for monitors that run in a thread of the process they watch
    from, such as `usp bench` and `usp run`).

    Why aiokafka and a long fetch wait: a monitor shares the machine with the worker and broker it
    watches. kafka-python parses record batches in Python and, with the workers' 20 ms fetch wait,
    polls the broker 50 times a second per partition leader: in a 30,000-observation drain on 2 cores it
    used 70 µs of CPU per observation while idle and 180 while reading every prediction, CPU taken from
    the worker under test. aiokafka parses batches in C, and the wait here only delays when the monitor
    sees a record, not the broker timestamps it reports (use those for timings).

    Raises LookupError if a topic does not exist within `metadata_timeout_s`.
    """
    asyncio.run(_follow(url, tuple(topics), on_record, stop, fetch_max_wait_ms, metadata_timeout_s))


async def _follow(url: str, topics: tuple[str, ...], on_record: Callable[[str, FollowedRecord], None],
                  stop: threading.Event, fetch_max_wait_ms: int, metadata_timeout_s: float) -> None:
    consumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(url), group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=fetch_max_wait_ms, client_id="usp-monitor")
    # From the beginning of a long-lived topic of small batches, a fixed wait can starve (quirk E).
    adapt_fetch_wait(consumer, FetchWait(fetch_max_wait_ms))
    await consumer.start()
    try:
        tps = [aiokafka.TopicPartition(topic, p) for topic in topics
               for p in await _partitions(consumer, topic, metadata_timeout_s)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while not stop.is_set():
            for tp, records in (await consumer.getmany(timeout_ms=100)).items():
                for record in records:
                    on_record(tp.topic, record)
    finally:
        await consumer.stop()


async def _partitions(consumer: aiokafka.AIOKafkaConsumer, topic: str, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while not (topic in await consumer.topics() and (parts := consumer.partitions_for_topic(topic))):
        if time.monotonic() > deadline:
            raise LookupError(f"topic {topic!r} does not exist on this broker")
        await asyncio.sleep(0.1)
    return sorted(parts)
