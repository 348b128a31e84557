"""Publishing `timestamp,value` CSV files (such as NAB's) to usp.observations with kafka-python.

Rows that cannot become an observation (unparseable timestamp or value, NaN) are counted and reported,
never fatal: a CSV with one bad line still publishes the rest. NAB timestamps carry no zone; they are
read as UTC and sent as RFC 3339 with 'Z'.
"""

from __future__ import annotations

import csv
import heapq
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from kafka import KafkaProducer

from streams import codecs
from streams.topics import OBSERVATIONS

log = logging.getLogger(__name__)

DEMO_SERIES = {
    "machine_temperature": "machine_temperature_system_failure.csv",
    "nyc_taxi": "nyc_taxi.csv",
}


@dataclass(frozen=True, slots=True)
class Row:
    """One publishable observation."""

    series_id: str
    ts: str
    ts_ns: int
    value: float


@dataclass
class CsvReport:
    """What reading a CSV found wrong, by line number."""

    rows: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)


def _to_rfc3339(text: str) -> str:
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.isoformat().replace("+00:00", "Z")


def read_csv(path: Path | str, series_id: str, report: CsvReport | None = None) -> Iterator[Row]:
    """Rows of a `timestamp,value` CSV (header required) as observations of `series_id`."""
    report = report if report is not None else CsvReport()
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header[:2]] != ["timestamp", "value"]:
            raise ValueError(f"{path}: expected a header 'timestamp,value', got {header!r}")
        for lineno, fields in enumerate(reader, start=2):
            if not fields or all(not f.strip() for f in fields):
                continue
            try:
                if len(fields) < 2:
                    raise ValueError("fewer than 2 columns")
                ts = _to_rfc3339(fields[0])
                value = float(fields[1])
                if not math.isfinite(value):
                    raise ValueError(f"value {fields[1]!r} is not finite")
                ts_ns = codecs.parse_ts(ts)
            except ValueError as exc:
                report.bad.append((lineno, str(exc)))
                continue
            report.rows += 1
            yield Row(series_id, ts, ts_ns, value)


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
