"""Broker URLs and kafka-python clients carrying the settings that make the embedded broker behave.

Every setting here is harmless on a real Kafka cluster, so a `kafka://host:port` URL switches a
deployment over with no other change (KAFKA-NOTES.md: quirks A-C of tansu).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from models.config import StreamsConfig
from streams.topics import ALL_TOPICS, COMPACTED

log = logging.getLogger(__name__)


def bootstrap_servers(url: str) -> str:
    """`kafka://h1:p1,h2:p2` (or a bare `h:p`) as the `h1:p1,h2:p2` list clients want.

    >>> bootstrap_servers("kafka://127.0.0.1:9092")
    '127.0.0.1:9092'
    >>> bootstrap_servers("localhost:19092")
    'localhost:19092'
    """
    if "://" not in url:
        url = "kafka://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("kafka", "aiokafka"):
        raise ValueError(f"broker URL must start with kafka://, got {url!r}")
    if not parts.netloc:
        raise ValueError(f"broker URL has no host:port: {url!r}")
    hosts = []
    for item in parts.netloc.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"broker address must be host:port, got {item!r}")
        hosts.append(item)
    return ",".join(hosts)


def broker_url(url: str) -> str:
    """Normalise a broker address to the `kafka://...` form Faust takes."""
    return "kafka://" + bootstrap_servers(url)


def consumer_settings(streams: StreamsConfig) -> dict[str, Any]:
    """kafka-python consumer settings: short session (quirk A) and short fetch wait (quirk C)."""
    return {
        "session_timeout_ms": int(streams.session_timeout_s * 1000),
        "heartbeat_interval_ms": int(streams.heartbeat_s * 1000),
        "fetch_max_wait_ms": streams.fetch_max_wait_ms,
    }


def make_consumer(url: str, streams: StreamsConfig, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A kafka-python consumer with the embedded broker's workarounds."""
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(url),
        "client_id": "usp-consumer",
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        **consumer_settings(streams),
    }
    settings.update(overrides)
    return KafkaConsumer(*topics, **settings)


def ensure_topics(url: str, partitions: int, topics: tuple[str, ...] = ALL_TOPICS,
                  timeout_s: float = 30.0) -> None:
    """Create USP's topics if missing, so producers never race auto-creation with 1 partition."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers(url), client_id="usp-admin")
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=partitions, replication_factor=1,
                     topic_configs={"cleanup.policy": "compact"} if name in COMPACTED else {})
            for name in topics if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted)
            log.info("created topics %s with %d partitions", [t.name for t in wanted], partitions)
    finally:
        admin.close()
