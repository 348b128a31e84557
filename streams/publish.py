"""Publishing time,value CSV files (such as NAB's) to usp.observations.

Rows come from `streams.csv_input` (bad lines are counted and reported, never fatal) and are sent with
RFC 3339 stamps ('Z'; NAB's carry no zone and are read as UTC).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import TypeVar

from models.config import StreamsConfig
from streams import codecs
from streams.csv_input import CsvReport, Row, read_csv
from streams.output import OutputProducer
from streams.topics import OBSERVATIONS

__all__ = ["DEMO_SERIES", "CsvReport", "Row", "demo_path", "interleave", "publish_items", "publish_rows", "read_csv"]

log = logging.getLogger(__name__)

DEMO_SERIES = {
    "machine_temperature": "machine_temperature_system_failure.csv",
    "nyc_taxi": "nyc_taxi.csv",
}


def demo_path(name: str) -> Path:
    """Path of a bundled demo CSV (see streams/data/README.md)."""
    return Path(str(resources.files("streams.data").joinpath(DEMO_SERIES[name])))


def interleave(*streams: Iterable[Row]) -> Iterator[Row]:
    """Merge several series as if they had all started at the same moment and run live side by side.

    Recorded series rarely overlap in time (the bundled two are months apart), so the merge key is
    the time since each series' first row; each series keeps its own file order.
    """

    def aligned(rows: Iterable[Row], index: int) -> Iterator[tuple[int, int, int, Row]]:
        start: int | None = None
        for seq, row in enumerate(rows):
            start = row.ts_ns if start is None else start
            yield row.ts_ns - start, index, seq, row

    merged = heapq.merge(*(aligned(rows, i) for i, rows in enumerate(streams)))
    return (item[3] for item in merged)


#: How long a row may wait in its partition's open batch before the batch goes to the broker (a
#: producer's `linger.ms` of 5: the Java client's default since Kafka 4.0): long enough to batch a fast
#: stream, short beside the worker's own latency.
LINGER_S = 0.005
#: Unpaced, open batches are handed over every this many items (and whenever one fills).
UNPACED_CHUNK = 1_000
#: Items handed over before the publisher waits for the broker's acknowledgements (bounds its memory).
IN_FLIGHT = 20_000

T = TypeVar("T")


def publish_items(
    url: str,
    streams: StreamsConfig,
    items: Iterable[T],
    encode: Callable[[T], tuple[bytes, bytes]],
    *,
    rate: float | None = None,
    on_sent: Callable[[T, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    topic: str = OBSERVATIONS,
) -> int:
    """Send items as (key, value) records, paced to `rate`/s if given, through the workers' own batching
    producer (`streams.output`); returns how many were sent, all acknowledged by the broker.

    Why not kafka-python's producer: it builds batches and CRCs in pure Python and wakes its sender
    thread per record, 437 µs of CPU per row against 149 here (README, "Performance"), on the cores the
    worker it feeds runs on. Paced, it runs as a producer lingering `LINGER_S` does: every `LINGER_S`
    the items that have fallen due join their partitions' open batches, which then go to the broker.
    `on_sent(item, wall_time)` gets the time the item fell due by the schedule (paced; as an open-loop
    load generator does, so the linger and any lag of the publisher count in a latency measured from
    it) or was handed over (unpaced). Runs its own event loop (call it from a thread of its own where
    one is running).
    """
    return asyncio.run(_publish(url, streams, iter(items), encode, rate, on_sent, should_stop, topic))


async def _publish(url: str, streams: StreamsConfig, items: Iterator[T], encode: Callable[[T], tuple[bytes, bytes]],
                   rate: float | None, on_sent: Callable[[T, float], None] | None,
                   should_stop: Callable[[], bool] | None, topic: str) -> int:
    out = OutputProducer(url, streams)
    await out.start()
    sent = acked = 0
    try:
        start, wall = time.monotonic(), time.time()
        exhausted = False
        while not exhausted and not (should_stop is not None and should_stop()):
            due = int((time.monotonic() - start) * rate) + 1 if rate else sent + UNPACED_CHUNK
            want = max(due - sent, 0)
            for item in itertools.islice(items, want):
                key, value = encode(item)
                await out.send(topic, key, value)
                if on_sent is not None:
                    on_sent(item, wall + sent / rate if rate else time.time())
                sent += 1
                want -= 1
            exhausted = want > 0  # fewer left than were due
            await out.submit()
            if sent - acked >= IN_FLIGHT:
                await out.flush()
                acked = sent
            if rate and not exhausted:
                await asyncio.sleep(LINGER_S)
        await out.flush()
    finally:
        await out.stop()
    return sent


def publish_rows(
    url: str,
    streams: StreamsConfig,
    rows: Iterable[Row],
    *,
    rate: float | None = None,
    limit: int | None = None,
    on_sent: Callable[[Row, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    topic: str = OBSERVATIONS,
) -> int:
    """`publish_items` for CSV rows: keyed by series_id, at most `limit` of them."""
    return publish_items(url, streams, itertools.islice(rows, limit), _encode_row, rate=rate, on_sent=on_sent,
                         should_stop=should_stop, topic=topic)


def _encode_row(row: Row) -> tuple[bytes, bytes]:
    return row.series_id.encode(), codecs.encode_observation(row.series_id, row.ts, row.value)
