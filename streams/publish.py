"""Publishing `timestamp,value` CSV files (such as NAB's) to usp.observations with kafka-python.

Rows that cannot become an observation (unparseable timestamp or value, NaN) are counted and reported,
never fatal: a CSV with one bad line still publishes the rest. NAB timestamps carry no zone; they are
read as UTC and sent as RFC 3339 with 'Z'.
"""

from __future__ import annotations

import csv
import heapq
import itertools
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

from kafka import KafkaProducer

from streams import codecs
from streams.topics import OBSERVATIONS

log = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

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
    """What reading a CSV found wrong, by line number, and which columns it read."""

    rows: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    columns: tuple[str, str] = ("timestamp", "value")
    guessed: bool = False  # the columns were taken by position, not by name


#: Header names read as the time and the value column, in order of preference (case-insensitive).
TIME_NAMES = ("timestamp", "time", "datetime", "date", "ds")
VALUE_NAMES = ("value", "y")


def _to_rfc3339(text: str) -> str:
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.isoformat().replace("+00:00", "Z")


def _calendar(text: str) -> str:
    """ISO text for the date shapes of historical and spreadsheet data that `fromisoformat` lacks: a
    year (1871), a month (1949-01), a compact date (19490131) and slashes (1949/01/31)."""
    if re.fullmatch(r"\d{4}", text):
        return f"{text}-01-01"
    if re.fullmatch(r"\d{4}-\d{2}", text):
        return f"{text}-01"
    if re.fullmatch(r"\d{8}", text):
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    if re.fullmatch(r"\d{4}/\d{1,2}/\d{1,2}.*", text):
        date, _, rest = text.partition(" ")
        y, m, d = date.split("/")
        return f"{y}-{int(m):02d}-{int(d):02d}" + (f" {rest}" if rest else "")
    return text


def _stamp(text: str, pre_epoch: bool) -> tuple[str, int]:
    """(RFC 3339 text, epoch ns) of a CSV time field: a date or date-time (ISO 8601 and the shapes
    `_calendar` knows; UTC when it has no zone) or any other number as an epoch stamp in seconds,
    milliseconds, microseconds or nanoseconds (read by magnitude, as the stream does). A 4- or 8-digit
    number is a year or a compact date, never epoch seconds (those would fall in 1970-73)."""
    text = _calendar(text.strip())
    try:
        number: float | None = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            number = None
    if number is None:
        ts = _to_rfc3339(text)
        return ts, codecs.parse_ts(ts, pre_epoch=pre_epoch)
    ns = codecs.parse_ts(number)
    return (_EPOCH + timedelta(microseconds=ns // 1000)).isoformat().replace("+00:00", "Z"), ns


def _columns(header: list[str], path: Path | str) -> tuple[int, int, bool]:
    """Indices of the time and value columns, by name, or by position in a file of exactly two."""
    names = [h.strip().lower() for h in header]

    def find(candidates: tuple[str, ...]) -> int | None:
        return next((names.index(c) for c in candidates if c in names), None)

    t, v = find(TIME_NAMES), find(VALUE_NAMES)
    if t is not None and v is not None:
        return t, v, False
    if len(names) == 2:  # one named column places the other; neither: time first, as in NAB's files
        t = 1 - v if t is None and v is not None else t
        return (t, 1 - t, True) if t is not None else (0, 1, True)
    raise ValueError(f"{path}: expected a header with a time column ({', '.join(TIME_NAMES)}) and a value column "
                     f"({', '.join(VALUE_NAMES)}), or exactly two columns; got {header!r}")


def _is_data(fields: list[str], ti: int, vi: int, pre_epoch: bool) -> bool:
    try:
        _stamp(fields[ti], pre_epoch)
        float(fields[vi])
    except ValueError:
        return False
    return True


def read_csv(path: Path | str, series_id: str, report: CsvReport | None = None, *,
             pre_epoch: bool = False) -> Iterator[Row]:
    """Rows of a time,value CSV (header optional, see below) as observations of `series_id`.

    Columns are found by name (`TIME_NAMES`, `VALUE_NAMES`, any order, other columns ignored); a file of
    exactly two columns with other names (or none, when the first line is already a row) is read as
    time then value, and `report.guessed` says so. The delimiter may be a comma, semicolon or tab, and a
    UTF-8 byte-order mark is skipped, as spreadsheet exports write them. Stamps: see `_stamp`.
    `pre_epoch` admits stamps before 1970 (see `codecs.parse_ts`): back-tests take them, the stream
    does not.
    """
    report = report if report is not None else CsvReport()
    with open(path, newline="", encoding="utf-8-sig") as fh:
        first = fh.readline()
        delimiter = max(",;\t", key=first.count) if first.strip() else ","
        fh.seek(0)  # the utf-8-sig decoder resets too, and skips the mark again
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file (expected a header such as 'timestamp,value')")
        ti, vi, guessed = _columns(header, path)
        report.columns, report.guessed = (header[ti].strip(), header[vi].strip()), guessed
        lines: Iterable[tuple[int, list[str]]] = enumerate(reader, start=2)
        if guessed and _is_data(header, ti, vi, pre_epoch):  # no header at all: the first line is a row
            report.columns = ("column 1", "column 2")
            lines = itertools.chain([(1, header)], lines)
        for lineno, fields in lines:
            if not fields or all(not f.strip() for f in fields):
                continue
            try:
                if len(fields) <= max(ti, vi):
                    raise ValueError(f"fewer than {max(ti, vi) + 1} columns")
                ts, ts_ns = _stamp(fields[ti], pre_epoch)
                value = float(fields[vi])
                if not math.isfinite(value):
                    raise ValueError(f"value {fields[vi]!r} is not finite")
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
