"""Reading a USP topic from the command line: the last N records, optionally following."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from models.config import StreamsConfig
from streams.kafka import make_consumer


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
        yield from backlog[-n:] if n else backlog
        while follow and not (should_stop and should_stop()):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    yield Record(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value)
    finally:
        consumer.close()


def follow(url: str, streams: StreamsConfig, topics: Iterable[str],
           on_record: Callable[[str, ConsumerRecord], None], stop: threading.Event) -> None:
    """Call `on_record(topic, record)` for every record of `topics`, from their beginning, until `stop`
    is set (group-less, so no group join; for monitors that run in a thread)."""
    consumer = make_consumer(url, streams, group_id=None)
    try:
        consumer.assign([tp for t in topics for tp in partitions_of(consumer, t)])
        consumer.seek_to_beginning()
        while not stop.is_set():
            for tp, records in consumer.poll(timeout_ms=100).items():
                for rec in records:
                    on_record(tp.topic, rec)
    finally:
        consumer.close()
