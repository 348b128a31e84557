"""A dedicated producer for USP's output topics (predictions, events, deadletter).

Faust's own producer also carries the table changelog, which must send every record as its own
batch on the embedded broker (KAFKA-NOTES.md quirk B: otherwise recovery stops short). Sending
predictions through that producer capped a worker at ~600 obs/s; a separate aiokafka producer with
normal batching restores throughput (about 3x measured with `usp run`) while the changelog stays exact.

Records are appended to one open batch per topic partition (aiokafka's `create_batch`), routed by the
same murmur2 hash of the key as aiokafka's default partitioner, and `flush` submits the batches. A
micro-batch's thousands of predictions so cost a few batch submissions instead of one `send` each
(a future, a partitioner call and an accumulator wait per record).

Delivery is at least once: the caller awaits every delivery future of a micro-batch before Faust may
commit the batch's input offsets, so a crash can repeat outputs but never lose them.
"""

from __future__ import annotations

import asyncio

import aiokafka
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from models.config import StreamsConfig
from streams.kafka import bootstrap_servers

#: Size of one output batch (a partition's share of a micro-batch's predictions fits in a few).
OUTPUT_BATCH_BYTES = 262_144


class OutputProducer:
    """Owns one aiokafka producer; `start` is idempotent and must run inside the worker's loop."""

    def __init__(self, url: str, streams: StreamsConfig) -> None:
        self.url = url
        self.streams = streams
        self._producer: aiokafka.AIOKafkaProducer | None = None
        self._pending: list[asyncio.Future[object]] = []
        self._open: dict[tuple[str, int], BatchBuilder] = {}
        self._partitions: dict[str, list[int]] = {}
        self._partitioner = DefaultPartitioner()
        self.queued = 0  # records submitted since the last flush

    async def start(self) -> None:
        if self._producer is None:
            producer = aiokafka.AIOKafkaProducer(
                bootstrap_servers=bootstrap_servers(self.url), client_id="usp-output", acks=1,
                linger_ms=0, enable_idempotence=False, max_batch_size=OUTPUT_BATCH_BYTES,
            )
            await producer.start()
            self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            if self._open:
                await self.flush(producer)
            await producer.stop()

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue one record in its partition's open batch; `flush` submits it and awaits delivery."""
        if self._producer is None:
            await self.start()
        producer = self._producer
        assert producer is not None
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = sorted(await producer.partitions_for(topic))
        tp = (topic, self._partitioner(key, partitions, partitions))
        batch = self._open.get(tp)
        if batch is None:
            batch = self._open[tp] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: submit it, open another
            await self._submit(producer, tp, batch)
            batch = self._open[tp] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)  # an empty batch takes any one record

    async def _submit(self, producer: aiokafka.AIOKafkaProducer, tp: tuple[str, int], batch: BatchBuilder) -> None:
        del self._open[tp]
        self._pending.append(await producer.send_batch(batch, tp[0], partition=tp[1]))
        self.queued += batch.record_count()

    async def flush(self, producer: aiokafka.AIOKafkaProducer | None = None) -> int:
        """Submit the open batches and wait until every queued record is acknowledged; returns how many
        records were."""
        producer = producer or self._producer
        if producer is not None:
            for tp, batch in list(self._open.items()):
                await self._submit(producer, tp, batch)
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)
        done, self.queued = self.queued, 0
        return done
