"""Publishing time,value CSV files (such as NAB's) to usp.observations with kafka-python.

Rows come from `streams.csv_input` (bad lines are counted and reported, never fatal) and are sent with
RFC 3339 stamps ('Z'; NAB's carry no zone and are read as UTC).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from pathlib import Path

from kafka import KafkaProducer

from streams import codecs
from streams.csv_input import CsvReport, Row, read_csv
from streams.topics import OBSERVATIONS

__all__ = ["DEMO_SERIES", "CsvReport", "Row", "demo_path", "interleave", "publish_rows", "read_csv"]

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


def publish_rows(
    producer: KafkaProducer,
    rows: Iterable[Row],
    *,
    rate: float | None = None,
    limit: int | None = None,
    on_sent: Callable[[Row, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    topic: str = OBSERVATIONS,
) -> int:
    """Send rows keyed by series_id; pace to `rate` rows/s if given. Returns how many were sent.

    `on_sent(row, wall_time)` is called as each row is handed to the producer, so callers can measure
    latency from publish to prediction.
    """
    sent = 0
    start = time.monotonic()
    for row in rows:
        if (limit is not None and sent >= limit) or (should_stop is not None and should_stop()):
            break
        if rate:
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        producer.send(topic, key=row.series_id.encode(),
                      value=codecs.encode_observation(row.series_id, row.ts, row.value))
        if on_sent is not None:
            on_sent(row, time.time())
        sent += 1
    producer.flush()
    return sent
