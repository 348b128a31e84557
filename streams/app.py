"""The Faust app factory: one place that turns USP's config into Faust and aiokafka settings.

Faust hard-codes `fetch_max_wait_ms=1500` for its worker consumer. On tansu a waiting fetch is only
answered when that wait runs out (KAFKA-NOTES.md quirk C), so every message would wait up to 1.5 s.
`USPApp` swaps in a consumer thread that sets the configured wait on the aiokafka consumer before it
starts, as the floor of a wait that grows while tansu cuts fetches short (`streams.fetch_wait`).
It also reads the changelog ends that table recovery stops at from a fetch's high watermark
(`streams.ends`): tansu's ListOffsets answers short of the end after a multi-record batch (quirk B).
Nothing else about Faust's consumer changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiokafka
import faust
from faust.transport.drivers.aiokafka import (
    AIOKafkaConsumerThread,
    Consumer,
    Transport,
    credentials_to_aiokafka_auth,
    server_list,
)
from faust.types import TP, TopicT, TransportT

from models.config import USPConfig
from streams import topics
from streams.ends import true_end_offsets
from streams.fetch_wait import FetchWait, adapt_fetch_wait
from streams.kafka import broker_url
from streams.store import URL as CHANGELOG_BACKED_STORE

STATE_TABLE = "usp-series-state"


class _USPConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # The configured wait is the floor; it grows while tansu cuts fetches short (quirk E).
        adapt_fetch_wait(consumer, FetchWait(getattr(self.app, "fetch_max_wait_ms", 1500)))
        return consumer

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        # Faust asks for these only to know where a changelog's recovery ends.
        reported = await super()._highwaters(partitions)
        if self.consumer.in_transaction:
            return reported
        transport = cast(Transport, self.consumer.transport)
        conf = self.app.conf
        # The same connection settings as Faust's own consumer (a secured cluster needs its credentials).
        return await true_end_offsets(reported, server_list(transport.url, transport.default_port),
                                      client_id=conf.broker_client_id,
                                      request_timeout_ms=int(conf.broker_request_timeout * 1000),
                                      **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context))


class _USPConsumer(Consumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _USPConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _USPTransport(Transport):
    Consumer = _USPConsumer


class USPApp(faust.App):
    """A Faust app whose worker consumer honours `fetch_max_wait_ms` and reads true changelog ends."""

    fetch_max_wait_ms: int = 1500

    def _new_transport(self) -> TransportT:
        return _USPTransport(self.conf.broker_consumer, self)


@dataclass(frozen=True)
class WorkerSettings:
    """Where a worker connects and keeps its files. Two workers must not share a data_dir."""

    broker: str
    data_dir: Path
    web_port: int
    app_id: str = "usp"
    config: USPConfig = field(default_factory=USPConfig)


def create_app(settings: WorkerSettings) -> USPApp:
    """Build the Faust app with every workaround from KAFKA-NOTES.md applied."""
    streams = settings.config.streams
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = USPApp(
        settings.app_id,
        broker=broker_url(settings.broker),
        store=CHANGELOG_BACKED_STORE,  # RocksDB without its write-ahead log: streams/store.py
        datadir=str(settings.data_dir),
        autodiscover=False,
        web_bind="127.0.0.1",
        web_port=settings.web_port,
        web_host="127.0.0.1",
        broker_session_timeout=streams.session_timeout_s,
        broker_heartbeat_interval=streams.heartbeat_s,
        producer_linger=0.0,
        topic_partitions=streams.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        key_serializer="raw",
        value_serializer="raw",
    )
    app.fetch_max_wait_ms = streams.fetch_max_wait_ms
    return app


def observations_topic(app: faust.App, partitions: int) -> TopicT:
    """usp.observations as raw bytes; decoding is USP's own (streams.codecs), batched per micro-batch.

    Outputs are not Faust topics: they go through `streams.output.OutputProducer`.
    """
    return app.topic(topics.OBSERVATIONS, partitions=partitions, key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")


def state_table(app: faust.App, partitions: int) -> Any:
    """Per-series state, bytes -> bytes, changelogged and co-partitioned with usp.observations."""
    return app.Table(STATE_TABLE, partitions=partitions, key_type=bytes, value_type=bytes, default=None)
