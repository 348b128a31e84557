"""Edges of `usp bench`: its figures' guards and its publisher (on the embedded broker)."""

from __future__ import annotations

import itertools
import time

import pytest
from kafka.partitioner.default import murmur2

from agents.bench import BenchError, Stack, Workload, _worker_rss_mb
from agents.supervise import ChildProcess
from models.config import USPConfig
from streams.kafka import make_consumer
from streams.topics import OBSERVATIONS


def test_a_gone_worker_has_no_resident_set_figure() -> None:
    """`resident_mb` answers 0 for a process /proc no longer has; the bench must say so, not report 0."""
    child = ChildProcess(["--help"], "gone")
    try:
        child.proc.wait(120)
        with pytest.raises(BenchError, match="no resident set"):
            _worker_rss_mb(child)
    finally:
        child.stop()
        child.cleanup()


def test_paced_rows_arrive_whole_in_their_keys_partitions_at_the_pace_asked() -> None:
    """The bench's publisher: every row once, in the partition kafka-python's (and Kafka's) default
    partitioner gives its key, and spread over the time `rate` asks for, each hand-off recorded."""
    config = USPConfig()
    rows = Workload("pace", 30).rows(300)
    with Stack(config, None) as stack:
        began = time.monotonic()
        stack.publish(rows, rate=1_000.0, track=True)
        took = time.monotonic() - began
        consumer = make_consumer(stack.url, config.streams, OBSERVATIONS, group_id=None,
                                 consumer_timeout_ms=5_000)
        got = [(r.key, r.value, r.partition) for r in itertools.islice(consumer, len(rows))]
        consumer.close()
    assert took >= 0.29  # 300 rows at 1,000/s: the last falls due 0.299 s after the first
    assert sorted((key, value) for key, value, _ in got) == sorted((key, value) for key, value, _, _ in rows)
    n = config.streams.partitions  # kafka-python's and the Java client's rule for a keyed record
    assert all(p == (murmur2(key) & 0x7FFFFFFF) % n for key, _, p in got)
    assert set(stack.seen.sent_at) == {(sid, ts) for _, _, sid, ts in rows}
