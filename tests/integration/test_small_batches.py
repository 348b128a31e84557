"""A worker reading a backlog of one-record batches with a fetch wait shorter than tansu takes to read
one partition of it (quirk E): with a fixed wait it would read nothing, ever."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

from agents.supervise import ChildProcess
from streams import codecs
from streams.broker import EmbeddedBroker
from streams.kafka import bootstrap_servers
from streams.topics import DEADLETTER, OBSERVATIONS, PREDICTIONS

from .conftest import PARTITIONS, Collector

SERIES, TICKS = 40, 300  # 12,000 records, 3,000 one-record batches in each of 4 partitions
T0_NS, STEP_NS = 1_767_225_600_000_000_000, 60_000_000_000


def publish_one_batch_each(url: str) -> None:
    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(url), linger_ms=0, acks=1)
        await producer.start()
        walks = 100.0 + np.cumsum(np.random.default_rng(5).standard_normal((TICKS, SERIES)), axis=0)
        try:
            for t in range(TICKS):
                for i in range(SERIES):
                    sid = f"small-{i:02d}"
                    value = codecs.encode_observation(sid, T0_NS + t * STEP_NS, float(walks[t, i]))
                    await (await producer.send(OBSERVATIONS, value, key=sid.encode()))  # acked: its own batch
        finally:
            await producer.stop()
    asyncio.run(go())


@pytest.mark.timeout(480)  # 12,000 acknowledged sends, a worker start, its drain
def test_a_backlog_of_one_record_batches_is_read_with_a_1_ms_fetch_wait(
        broker: EmbeddedBroker, collector: Collector, config_file: Path,
        start_worker: Callable[[str], ChildProcess]) -> None:
    assert PARTITIONS == 4  # the batches per partition above assume it
    config_file.write_text(config_file.read_text().replace(
        "[streams]\n", "[streams]\nfetch_max_wait_ms = 1\n"))
    publish_one_batch_each(broker.url)
    worker = start_worker("w1")
    collector.wait_for(lambda: len(collector.records[PREDICTIONS]) >= SERIES * TICKS, 240,
                       f"{SERIES * TICKS} predictions", worker)
    assert len(collector.records[PREDICTIONS]) == SERIES * TICKS
    assert collector.records[DEADLETTER] == []
