"""The worker's producer for everything it writes: outputs (predictions, events, deadletter) and the
state table's changelog.

Records are appended to one open batch per topic partition (aiokafka's `create_batch`) and `flush`
submits the batches. Outputs are routed by the same murmur2 hash of the key as aiokafka's (and the Java
client's) default partitioner; changelog records go to the partition given (their source partition).
A micro-batch's thousands of records so cost a few batch submissions instead of one `send` each (a
future, a partitioner call and an accumulator wait per record). Faust's own producer sent the changelog
one `FutureMessage` at a time through its buffer: about 0.4 ms per state on the 2-core machine, most of
a micro-batch's time (measured by timing the batch's stages in the worker).

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

#: Keys whose partition `put` remembers per topic before it starts over: the partitioner is murmur2 in
#: pure Python (about 2 µs a key, 1.3% of a worker's samples in a 1,000-series drain), and a series'
#: key routes the same way every time. 100,000 keys of a few dozen bytes hold about 10 MB.
ROUTES_MAX = 100_000


class OutputProducer:
    """Owns one aiokafka producer; `start` is idempotent and must run inside the worker's loop."""

    def __init__(self, url: str, streams: StreamsConfig) -> None:
        self.url = url
        self.streams = streams
        self._producer: aiokafka.AIOKafkaProducer | None = None
        self._pending: list[tuple[tuple[str, int], int, asyncio.Future[object]]] = []
        self._open: dict[tuple[str, int], BatchBuilder] = {}
        self._full: list[tuple[tuple[str, int], BatchBuilder]] = []  # filled batches, oldest first
        self._partitions: dict[str, list[int]] = {}
        self._routes: dict[str, dict[bytes, int]] = {}  # topic -> key -> partition, as the partitioner said
        self._partitioner = DefaultPartitioner()
        # Submissions go through one lock, in the order they were made: a batch opened after another for
        # the same partition (by this task or the ready announcer's) never overtakes it.
        self._submitting = asyncio.Lock()
        #: (topic, partition) -> offset of the last record the latest `flush` delivered there
        self.last_offsets: dict[tuple[str, int], int] = {}

    async def start(self) -> None:
        if self._producer is None:
            producer = aiokafka.AIOKafkaProducer(
                bootstrap_servers=bootstrap_servers(self.url), client_id="usp-output", acks=1,
                linger_ms=0, enable_idempotence=False, max_batch_size=self.streams.producer_max_batch_bytes,
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()  # a failed start still holds a client and its connections
                raise
            self._producer = producer

    async def stop(self) -> None:
        producer = self._producer
        if producer is not None:
            try:
                await self.flush()
            finally:
                self._producer = None
                await producer.stop()

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue one record in the partition its key hashes to; `flush` submits it and awaits delivery."""
        await self.learn(topic)
        self.put(topic, key, value)

    async def send_to(self, topic: str, partition: int, key: bytes | None, value: bytes) -> None:
        """Queue one record for a given partition (a changelog record goes to its source partition)."""
        await self._started()
        self.put_to(topic, partition, key, value)

    async def learn(self, topic: str) -> None:
        """Start the producer and learn `topic`'s partitions, so that `put` needs no await."""
        producer = await self._started()
        if topic not in self._partitions:
            self._partitions[topic] = sorted(await producer.partitions_for(topic))
            self._routes[topic] = {}

    def put(self, topic: str, key: bytes | None, value: bytes) -> None:
        """`send` without the await, for a topic already `learn`t: the worker's per-record path."""
        routes = self._routes.get(topic)
        if routes is None:
            raise RuntimeError(f"put to {topic!r} before learn({topic!r})")
        partition = routes.get(key) if key is not None else None
        if partition is None:
            partitions = self._partitions[topic]
            partition = self._partitioner(key, partitions, partitions)
            if key is not None:
                if len(routes) >= ROUTES_MAX:
                    routes.clear()
                routes[key] = partition
        self._append((topic, partition), key, value)

    def put_to(self, topic: str, partition: int, key: bytes | None, value: bytes) -> None:
        """`send_to` without the await, once the producer is started."""
        self._append((topic, partition), key, value)

    async def submit(self) -> None:
        """Hand every open batch to the sender now (one request can carry them all)."""
        producer = self._producer
        if producer is None:
            self._open = {}
            self._full = []
            return
        # One at a time, each taken out as it goes: if a submission fails (a timeout, a cancel), the
        # batches not yet handed over stay open for the next submit or flush instead of being dropped.
        while self._full:
            tp, batch = self._full.pop(0)
            await self._submit(producer, tp, batch)
        while self._open:
            tp = next(iter(self._open))
            await self._submit(producer, tp, self._open.pop(tp))

    async def _started(self) -> aiokafka.AIOKafkaProducer:
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        return self._producer

    def _append(self, tp: tuple[str, int], key: bytes | None, value: bytes) -> None:
        if self._producer is None:
            raise RuntimeError("the output producer is not started")
        batch = self._open.get(tp)
        if batch is None:
            batch = self._open[tp] = self._producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: open another
            fresh = self._open[tp] = self._producer.create_batch()
            fresh.append(key=key, value=value, timestamp=None)  # an empty batch takes any one record
            self._full.append((tp, batch))  # the next submit hands it over before any open batch

    async def _submit(self, producer: aiokafka.AIOKafkaProducer, tp: tuple[str, int], batch: BatchBuilder) -> None:
        async with self._submitting:
            future = await producer.send_batch(batch, tp[0], partition=tp[1])
        self._pending.append((tp, batch.record_count(), future))

    async def flush(self) -> int:
        """Submit the open batches and wait until every record submitted so far is acknowledged; returns
        how many records that was, and leaves where each partition's last one landed in `last_offsets`."""
        await self.submit()
        waiting = list(self._pending)
        offsets: dict[tuple[str, int], int] = {}
        if waiting:
            metadata = await asyncio.gather(*(future for _, _, future in waiting))
            done = {id(entry) for entry in waiting}
            self._pending = [entry for entry in self._pending if id(entry) not in done]
            for (tp, count, _), meta in zip(waiting, metadata, strict=True):
                offset = getattr(meta, "offset", None)  # the batch's base offset (None: acks=0)
                if offset is not None:
                    offsets[tp] = max(offsets.get(tp, -1), offset + count - 1)
        self.last_offsets = offsets
        return sum(count for _, count, _ in waiting)
