"""A dedicated producer for USP's output topics (predictions, events, deadletter).

Faust's own producer also carries the table changelog, which must send every record as its own
batch on the embedded broker (KAFKA-NOTES.md quirk B: otherwise recovery stops short). Sending
predictions through that producer capped a worker at ~600 obs/s; a separate aiokafka producer with
normal batching restores throughput (about 3x measured with `usp run`) while the changelog stays exact.

Delivery is at least once: the caller awaits every delivery future of a micro-batch before Faust may
commit the batch's input offsets, so a crash can repeat outputs but never lose them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiokafka

from models.config import StreamsConfig
from streams.kafka import bootstrap_servers


class OutputProducer:
    """Owns one aiokafka producer; `start` is idempotent and must run inside the worker's loop."""

    def __init__(self, url: str, streams: StreamsConfig) -> None:
        self.url = url
        self.streams = streams
        self._producer: aiokafka.AIOKafkaProducer | None = None
        self._pending: list[asyncio.Future[object]] = []

    async def start(self) -> None:
        if self._producer is None:
            producer = aiokafka.AIOKafkaProducer(
                bootstrap_servers=bootstrap_servers(self.url), client_id="usp-output", acks=1,
                linger_ms=0, enable_idempotence=False,
            )
            await producer.start()
            self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue one record; its delivery is awaited by the next `flush`."""
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        self._pending.append(await self._producer.send(topic, value=value, key=key))

    async def flush(self) -> int:
        """Wait until every queued record is acknowledged; returns how many were."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)
        return len(pending)

    @property
    def pending(self) -> Sequence[asyncio.Future[object]]:
        return tuple(self._pending)
