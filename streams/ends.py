"""A partition's true end offset, read from a fetch's high watermark rather than from ListOffsets.

tansu answers ListOffsets(latest) with the first offset of the partition's last record batch + 1
(README, "Limits of the embedded broker", quirk B), so a partition whose last batch holds n records
reports an end n - 1 short.
Faust's table recovery reads a changelog up to that reported end: it would skip the last states of
every partition whose last write was a batch. A fetch response's high watermark is right on tansu, and
on Kafka it is the same number as ListOffsets, so the worker asks both and keeps the larger: one
short-lived consumer per rebalance, instead of the extra one-record batch per partition per
micro-batch that used to make the reported end true.

The idea of reading the high watermark from a fetch is the broker protocol's own (every fetch
response carries it); nothing here is specific to tansu beyond the reason for doing it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import aiokafka
from aiokafka.structs import TopicPartition


class EndOffsetError(RuntimeError):
    """A partition's high watermark could not be read in time."""


async def true_end_offsets(reported: Mapping[Any, int], bootstrap_servers: str | list[str],
                           timeout_s: float = 30.0, **consumer_kwargs: Any) -> dict[Any, int]:
    """`reported` (ListOffsets ends, keyed by anything with `.topic` and `.partition`) corrected to
    each partition's fetch high watermark where that is larger. An empty partition (end 0) needs no
    fetch. Raises EndOffsetError if a fetch does not answer within `timeout_s`: recovery must not
    silently stop short."""
    ends = dict(reported)
    pending = {TopicPartition(k.topic, k.partition): k for k, end in reported.items() if end and end > 0}
    if not pending:
        return ends
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None,
                                         enable_auto_commit=False, fetch_max_wait_ms=50, **consumer_kwargs)
    try:
        await consumer.start()
        consumer.assign(list(pending))
        for tp, key in pending.items():
            # The last batch starts at reported - 1: one fetch from there answers at once, with data.
            consumer.seek(tp, reported[key] - 1)
        deadline = time.monotonic() + timeout_s
        while missing := [tp for tp in pending if consumer.highwater(tp) is None]:
            if time.monotonic() > deadline:
                raise EndOffsetError(f"no high watermark within {timeout_s:g} s for {_names(missing)}")
            await consumer.getmany(*missing, timeout_ms=200, max_records=1)
        for tp, key in pending.items():
            ends[key] = max(reported[key], consumer.highwater(tp))
    finally:
        await consumer.stop()
    return ends


def _names(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in tps)
