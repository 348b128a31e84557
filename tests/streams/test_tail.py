"""follow() on the embedded broker: every record of every followed topic reaches the callback, and
setting `stop` ends it."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest
from kafka import KafkaProducer

from streams.broker import EmbeddedBroker
from streams.kafka import ensure_topics
from streams.tail import FollowedRecord, follow

TOPICS = ("usp.test-follow-a", "usp.test-follow-b")


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        ensure_topics(b.url, 3, TOPICS)
        yield b


def test_follow_delivers_every_record_until_stopped(broker: EmbeddedBroker) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    before_ms = int(time.time() * 1000)
    sent = {(topic, b"%s-%d" % (topic.encode(), i)) for topic in TOPICS for i in range(300)}
    for topic, value in sorted(sent):
        producer.send(topic, key=value, value=value)  # keys spread the records over the partitions
    producer.flush()
    producer.close()

    seen: list[tuple[str, bytes]] = []
    stamps: list[int] = []
    all_seen = threading.Event()
    stop = threading.Event()

    def on_record(topic: str, rec: FollowedRecord) -> None:
        seen.append((topic, rec.value))
        stamps.append(rec.timestamp)
        if len(seen) >= len(sent):
            all_seen.set()

    thread = threading.Thread(target=follow, args=(broker.url, TOPICS, on_record, stop),
                              kwargs={"fetch_max_wait_ms": 50}, daemon=True)
    thread.start()
    assert all_seen.wait(60), f"saw {len(seen)} of {len(sent)} records"
    stop.set()
    thread.join(30)
    assert not thread.is_alive(), "follow did not return after stop was set"
    assert len(seen) == len(sent) and set(seen) == sent  # each record once, none from elsewhere
    assert min(stamps) >= before_ms - 1000  # broker timestamps in ms, not seconds or ns


def test_follow_names_a_missing_topic(broker: EmbeddedBroker) -> None:
    with pytest.raises(LookupError, match=re.escape("usp.test-follow-missing")):
        follow(broker.url, ("usp.test-follow-missing",), lambda t, r: None, threading.Event(), metadata_timeout_s=1.0)
