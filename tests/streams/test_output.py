"""OutputProducer on the embedded broker: batched per partition, routed like a keyed `send`, nothing lost."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

import streams.output as output_module
from models.config import StreamsConfig
from streams.broker import EmbeddedBroker
from streams.kafka import ensure_topics, make_consumer
from streams.output import OutputProducer
from streams.tail import partitions_of
from streams.topics import EVENTS, PREDICTIONS

PARTITIONS = 4


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        ensure_topics(b.url, PARTITIONS)
        yield b


def read_all(url: str, topic: str, expected: int) -> dict[int, list[tuple[bytes | None, bytes]]]:
    """Every record of `topic` by partition, reading until `expected` have arrived (deadline 30 s)."""
    consumer = make_consumer(url, StreamsConfig(), group_id=None)
    try:
        tps = partitions_of(consumer, topic)
        consumer.assign(tps)
        consumer.seek_to_beginning()
        out: dict[int, list[tuple[bytes | None, bytes]]] = {tp.partition: [] for tp in tps}
        for _ in range(300):
            if sum(map(len, out.values())) >= expected:
                break
            for tp, recs in consumer.poll(timeout_ms=100).items():
                out[tp.partition] += [(r.key, r.value) for r in recs]
        return out
    finally:
        consumer.close()


def test_records_land_where_a_keyed_send_puts_them_in_order_and_all_acknowledged(broker: EmbeddedBroker) -> None:
    """5,000 records of 50 keys (several full batches per partition): flush reports all of them, each
    key's records sit in murmur2(key) % partitions (the Java client's and kafka-python's choice, so
    a series' predictions share its observations' partition) in the order sent."""
    keys = [f"series-{i}".encode() for i in range(50)]
    sent = [(keys[i % 50], f"{i:06d}".encode() + b"x" * 300) for i in range(5_000)]

    async def go() -> int:
        out = OutputProducer(broker.url, StreamsConfig())
        await out.start()
        try:
            for key, value in sent:
                await out.send(PREDICTIONS, key, value)
            return await out.flush()
        finally:
            await out.stop()

    assert asyncio.run(go()) == len(sent)
    got = read_all(broker.url, PREDICTIONS, len(sent))
    assert sum(map(len, got.values())) == len(sent)
    for key in keys:
        part = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
        assert [v for k, v in got[part] if k == key] == [v for k, v in sent if k == key]


def test_stop_delivers_what_was_queued_and_an_oversized_record_in_order(broker: EmbeddedBroker) -> None:
    big = b"y" * (2 * StreamsConfig().producer_max_batch_bytes)

    async def go() -> None:
        out = OutputProducer(broker.url, StreamsConfig())
        await out.send(EVENTS, b"k", b"small")
        await out.send(EVENTS, b"k", big)  # does not fit the open batch, nor any: a batch of its own
        await out.send(EVENTS, b"k", b"after")
        await out.stop()  # never flushed: stop delivers

    asyncio.run(go())
    got = read_all(broker.url, EVENTS, 3)
    assert [v for recs in got.values() for _, v in recs] == [b"small", big, b"after"]


def test_kafka_python_routes_keys_the_same_way(broker: EmbeddedBroker) -> None:
    """The routing claim above, checked against a real keyed send."""
    producer = KafkaProducer(bootstrap_servers=broker.url.removeprefix("kafka://"))
    try:
        meta = [producer.send("usp.deadletter", key=f"k{i}".encode(), value=b"v").get(10) for i in range(20)]
    finally:
        producer.close()
    assert [m.partition for m in meta] == [(murmur2(f"k{i}".encode()) & 0x7FFFFFFF) % PARTITIONS for i in range(20)]



def test_a_failed_submission_leaves_the_other_partitions_batches_open() -> None:
    """The sender is this unit's edge: one whose second hand-over fails. The batch that failed is the
    caller's to retry or report (the error reaches it); the others must still be there for the next
    submit, not silently dropped."""

    class Batch:
        def __init__(self) -> None:
            self.records: list[bytes] = []

        def append(self, *, key: bytes | None, value: bytes, timestamp: None) -> object:
            self.records.append(value)
            return object()

        def record_count(self) -> int:
            return len(self.records)

    class Sender:
        def __init__(self) -> None:
            self.sent: list[tuple[int, list[bytes]]] = []
            self.fail_next = False

        def create_batch(self) -> Batch:
            return Batch()

        async def send_batch(self, batch: Batch, topic: str, partition: int) -> asyncio.Future[object]:
            if self.fail_next:
                self.fail_next = False
                raise TimeoutError("broker gone")
            self.sent.append((partition, batch.records))
            done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            if len(self.sent) == 1:
                self.fail_next = True
            return done

    async def scenario() -> tuple[list[tuple[int, list[bytes]]], int]:
        out = OutputProducer("kafka://127.0.0.1:9", StreamsConfig())
        sender = Sender()
        out._producer = sender  # type: ignore[assignment]
        for p in range(3):
            await out.send_to(PREDICTIONS, p, None, b"r%d" % p)
        with pytest.raises(TimeoutError):
            await out.submit()
        await out.submit()
        return sender.sent, len(out._open)

    sent, still_open = asyncio.run(scenario())
    assert sent == [(0, [b"r0"]), (2, [b"r2"])] and still_open == 0  # partition 1's batch failed, 2's kept


def test_remembered_routes_are_bounded_and_put_needs_a_learnt_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    """`put` routes by the partitioner and remembers at most ROUTES_MAX keys a topic (then starts over),
    always agreeing with murmur2; before `learn` it refuses rather than guess the partitions."""
    monkeypatch.setattr(output_module, "ROUTES_MAX", 3)

    class Sender:
        def create_batch(self) -> BatchBuilder:
            return BatchBuilder(StreamsConfig().producer_max_batch_bytes, 0)

        async def partitions_for(self, topic: str) -> set[int]:
            return set(range(PARTITIONS))

    async def scenario() -> tuple[dict[bytes, int], dict[tuple[str, int], int]]:
        out = OutputProducer("kafka://127.0.0.1:9", StreamsConfig())
        out._producer = Sender()  # type: ignore[assignment]
        with pytest.raises(RuntimeError, match="before learn"):
            out.put(PREDICTIONS, b"k", b"v")
        await out.learn(PREDICTIONS)
        for i in range(10):
            out.put(PREDICTIONS, b"k%d" % i, b"v")
        out.put(PREDICTIONS, b"k9", b"v")  # remembered
        return out._routes[PREDICTIONS], {tp: b.record_count() for tp, b in out._open.items()}

    routes, counts = asyncio.run(scenario())
    # 3 keys held, the 4th starts over: k0-k2, then k3-k5, k6-k8, and k9 alone (then found again)
    assert routes == {b"k9": (murmur2(b"k9") & 0x7FFFFFFF) % PARTITIONS}
    expected: dict[tuple[str, int], int] = {}
    for k in [b"k%d" % i for i in range(10)] + [b"k9"]:
        tp = (PREDICTIONS, (murmur2(k) & 0x7FFFFFFF) % PARTITIONS)
        expected[tp] = expected.get(tp, 0) + 1
    assert counts == expected
