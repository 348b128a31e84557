"""Rows of a time,value CSV file as observations: what `usp publish`, `usp run --input` and `usp backtest`
read.

Analysts' files come from spreadsheets, pandas, databases and loggers, so the reader takes the shapes
they write rather than one exact header: columns by name or, in a two-column file, by position; comma,
semicolon or tab (with a decimal comma where the comma is not the delimiter); a UTF-8 byte-order mark;
ISO 8601 and the calendar shapes of historical data; epoch numbers. What it cannot read it reports by
line and skips, never fatal: a CSV with one bad line still yields the rest.

A time column is read one way throughout, decided by its first readable stamp: dates and date-times
(ISO 8601, or with an English month name as finance exports write them: `19-Sep-03`, `3 Sep 2019`,
`Sep 3, 2019`; day/month orders written only in digits, such as `03/09/2019`, are ambiguous and not
guessed); years (`1871`); compact dates (`19490131`); or epoch numbers in seconds, ms, µs or ns (by
magnitude, as the stream reads them). A row that does not fit the column's way is a bad row: a column of row numbers
or seconds since a start is not read as years where it passes 1000. Stamps are kept to the microsecond
(the RFC 3339 text a row is published with, which the stream reads back to the same epoch ns).

Rows are yielded in file order; `report.backwards` counts rows earlier than the row before them (a file
written newest first, as many finance exports are) and `report.stale` rows not later than every row
before them (out of order, or a moment read twice), which the stream refuses as `stale` (a replay). So
`usp backtest` puts a file in time order first (`in_time_order`) and `usp publish` says how many rows
it sent that the worker will refuse.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "x.csv"
>>> _ = path.write_text("Month;Passengers\\n1949-01;112\\n1949-02;118,5\\n")
>>> report = CsvReport()
>>> [(r.ts, r.value) for r in read_csv(path, "air", report, pre_epoch=True)], report.columns
([('1949-01-01T00:00:00Z', 112.0), ('1949-02-01T00:00:00Z', 118.5)], ('Month', 'Passengers'))
"""

from __future__ import annotations

import csv
import itertools
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO

from streams import codecs

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Header names read as the time and the value column, in order of preference (case-insensitive).
TIME_NAMES = ("timestamp", "time", "datetime", "date", "ds")
VALUE_NAMES = ("value", "y")
_SNIFF_LINES = 8


@dataclass(frozen=True, slots=True)
class Row:
    """One publishable observation: `ts` is RFC 3339 text, `ts_ns` the epoch ns it reads as."""

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
    backwards: int = 0  # rows earlier than the row before them: the file is not in time order
    stale: int = 0  # rows not later than every row before them: what the stream refuses as stale


_NUMBER = re.compile(r"\d+(\.\d*)?([eE][+-]?\d+)?")
_YEAR = re.compile(r"\d{4}(\.0*)?")
_COMPACT = re.compile(r"\d{8}(\.0*)?")


def _kind(text: str) -> str:
    """How a stamp is written: 'year', 'compact' (YYYYMMDD), 'epoch' (another number) or 'text'."""
    if _YEAR.fullmatch(text):
        return "year"
    if _COMPACT.fullmatch(text):
        return "compact"
    return "epoch" if _NUMBER.fullmatch(text) else "text"


def _iso(text: str) -> str:
    """ISO text for the date shapes `fromisoformat` lacks: a month (1949-01), slashes (1949/1/31) and a
    one-digit hour (2024-01-01 9:00), as spreadsheets write them."""
    if re.fullmatch(r"\d{4}-\d{2}", text):
        return f"{text}-01"
    date, sep, rest = text.partition(" ") if "T" not in text else text.partition("T")
    if re.fullmatch(r"\d{4}/\d{1,2}/\d{1,2}", date):
        y, m, d = date.split("/")
        date = f"{y}-{int(m):02d}-{int(d):02d}"
    if re.match(r"\d:", rest):
        rest = "0" + rest
    return date + sep + rest


#: Dates written with an English month name (strptime's C locale), tried after ISO 8601: unambiguous,
#: unlike all-digit day/month orders. Monthly rows may omit the day (`Jan-49`, `Sep 2019`).
_DAY_FORMATS = ("%d-%b-%y", "%d-%b-%Y", "%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%b %d %Y", "%B %d %Y",
                "%d/%b/%Y")
_MONTH_NAME_FORMATS = (*(f"{d}{t}" for d in _DAY_FORMATS for t in ("", " %H:%M", " %H:%M:%S")),
                       "%b-%y", "%b-%Y", "%b %Y", "%B %Y")


def _date_text(text: str, formats: list[str] | None = None) -> datetime:
    """A date-time written in ISO 8601 or with a month name. `formats` is a reader's own order of the
    month-name formats: the one that matched moves to the front, so a file's rows try their format
    first (strptime keeps only five compiled formats, and trying all of them cost 0.4 ms a row).
    A two-digit year later than this year is of the last century: `01-Jan-60` is 1960."""
    try:
        return datetime.fromisoformat(_iso(text))
    except ValueError:
        pass
    if re.search(r"[A-Za-z]{3}", text):
        order = formats if formats is not None else list(_MONTH_NAME_FORMATS)
        for i, fmt in enumerate(order):
            try:
                dt = datetime.strptime(text, fmt)
            except ValueError:
                continue
            if i:
                order.insert(0, order.pop(i))
            if "%y" in fmt and dt.year > datetime.now(UTC).year:
                dt = dt.replace(year=dt.year - 100)
            return dt
    raise ValueError(f"time {text!r} is not a date USP reads (ISO 8601 such as 2024-01-31 or 2024-01-31T09:00:00Z, "
                     "or a month name such as 31-Jan-24)")


def _rfc3339(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.isoformat().replace("+00:00", "Z")


def _stamp(text: str, kind: str, pre_epoch: bool, formats: list[str] | None = None) -> tuple[str, int]:
    """(RFC 3339 text, epoch ns) of one time field written the `kind` way (ValueError if it is not);
    `formats`: see `_date_text`."""
    if _kind(text) != kind and not (kind == "epoch" and _kind(text) in ("year", "compact")):
        what = {"year": "a year", "compact": "a YYYYMMDD date", "epoch": "an epoch number", "text": "a date"}
        raise ValueError(f"time {text!r} is not {what[kind]} like the column's first stamp")
    if kind == "year":
        dt = datetime(int(text[:4]), 1, 1, tzinfo=UTC)
    elif kind == "compact":
        dt = datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), tzinfo=UTC)
    elif kind == "epoch":
        try:
            ns = codecs.parse_ts(Decimal(text))  # exact: a float has ~240 ns of resolution at 1.7e9 s
        except InvalidOperation:
            raise ValueError(f"time {text!r} is not a number") from None
        dt = _EPOCH + timedelta(microseconds=ns // 1000)
    else:
        dt = _date_text(text, formats)
    ts = _rfc3339(dt)
    return ts, codecs.parse_ts(ts, pre_epoch=pre_epoch)


def _value(text: str, delimiter: str) -> float:
    if delimiter != "," and "," in text and "." not in text:
        text = text.replace(",", ".")  # a decimal comma, where the comma is free to be one
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"value {text!r} is not finite")
    return value


def _delimiter(lines: list[str]) -> str:
    sample = "".join(lines)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
    except csv.Error:  # one column, or no consistent pattern: the most frequent on the first line
        first = lines[0] if lines else ""
        return max(",;\t", key=first.count) if first.strip() else ","


def _date_and_time(header: list[str]) -> tuple[int, int] | None:
    """Indices of separate `date` and `time` columns (a logger's or spreadsheet's export), read as one
    stamp, when no column holds both."""
    names = [h.strip().lower() for h in header]
    if "date" in names and "time" in names and not {"timestamp", "datetime"} & set(names):
        return names.index("date"), names.index("time")
    return None


def _columns(header: list[str], path: Path | str, time_column: str | None = None,
             value_column: str | None = None) -> tuple[int, int, bool]:
    """Indices of the time and value columns: those named by the caller, else by name, or by position
    in a file of exactly two."""
    names = [h.strip().lower() for h in header]

    def index(name: str) -> int:
        if names.count(name) > 1:
            raise ValueError(f"{path}: the header {header!r} has more than one column {name!r}")
        return names.index(name)

    def find(candidates: tuple[str, ...]) -> int | None:
        return next((index(c) for c in candidates if c in names), None)

    def named(column: str | None, default: tuple[str, ...]) -> int | None:
        if column is None:
            return find(default)
        if column.strip().lower() not in names:
            raise ValueError(f"{path}: no column {column!r} in the header {header!r}")
        return index(column.strip().lower())

    t, v = named(time_column, TIME_NAMES), named(value_column, VALUE_NAMES)
    if t is not None and t == v:
        raise ValueError(f"{path}: the time and the value column are both {header[t]!r}")
    if t is not None and v is not None:
        return t, v, False
    if len(names) == 2:  # one named column places the other; neither: time first, as in NAB's files
        t = 1 - v if t is None and v is not None else t
        return (t, 1 - t, True) if t is not None else (0, 1, True)
    raise ValueError(f"{path}: expected a header with a time column ({', '.join(TIME_NAMES)}) and a value column "
                     f"({', '.join(VALUE_NAMES)}), or exactly two columns, or the columns to read named "
                     f"(--time-column, --value-column); got {header!r}")


def _is_stamp(text: str) -> bool:
    """Whether a first line's field is a time rather than a column name (a headerless file)."""
    try:
        _stamp(text.strip(), _kind(text.strip()), pre_epoch=True)
    except ValueError:
        return False
    return True


def _records(reader: Iterator[list[str]], report: CsvReport) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each record; a record the csv module cannot split is a bad line."""
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. an unclosed quote that ran past the field size limit
            report.bad.append((getattr(reader, "line_num", 0), f"unreadable CSV record: {exc}"))
            continue
        yield getattr(reader, "line_num", 0), fields


def read_csv(path: Path | str, series_id: str, report: CsvReport | None = None, *,
             pre_epoch: bool = False, time_column: str | None = None,
             value_column: str | None = None) -> Iterator[Row]:
    """Rows of a time,value CSV as observations of `series_id` (the module docstring says what it reads).

    Columns are found by name (`TIME_NAMES`, `VALUE_NAMES`, any order, other columns ignored; separate
    `date` and `time` columns make one stamp), or by the names given as `time_column` / `value_column`
    (case-insensitive: a price export's `Close`); a file of exactly two columns with other names (or
    none, when the first line is already a row) is read as time then value, and `report.guessed` says so.
    Bytes that are not UTF-8 are replaced, so they make their row bad rather than the file. `pre_epoch`
    admits stamps before 1970 (see `codecs.parse_ts`): back-tests take them, the stream does not.

    The header is read here, so a file with no usable columns raises ValueError (or OSError) before
    anything is published; the rows are read as the iterator is consumed.
    """
    report = report if report is not None else CsvReport()
    fh = open(path, newline="", encoding="utf-8-sig", errors="replace")  # noqa: SIM115 (closed by _rows)
    try:
        delimiter = _delimiter([line for line in itertools.islice(fh, _SNIFF_LINES) if line.strip()])
        fh.seek(0)  # the utf-8-sig decoder resets too, and skips the mark again
        records = _records(csv.reader(fh, delimiter=delimiter), report)
        first = next(((n, f) for n, f in records if any(x.strip() for x in f)), None)
        if first is None:
            raise ValueError(f"{path}: empty file (expected a header such as 'timestamp,value')")
        header_line, header = first
        while len(header) > 2 and not header[-1].strip():  # a trailing delimiter
            header = header[:-1]
        ti, vi, guessed = _columns(header, path, time_column, value_column)
        report.columns, report.guessed = (header[ti].strip(), header[vi].strip()), guessed
        split = _date_and_time(header)
        if split is not None and time_column is not None and split[0] != ti:  # another time column named
            split = None
        if split is not None:
            report.columns = (f"{header[split[0]].strip()} {header[split[1]].strip()}", report.columns[1])
        layout = _Layout(split[0] if split else ti, split[1] if split else None, vi, delimiter)
        lines: Iterable[tuple[int, list[str]]] = records
        if guessed and _is_stamp(header[ti]):  # no header at all: the first line is a row
            report.columns = ("column 1", "column 2") if ti == 0 else ("column 2", "column 1")
            lines = itertools.chain([(header_line, header)], records)
    except BaseException:
        fh.close()
        raise
    return _rows(fh, lines, layout, series_id, report, pre_epoch)


@dataclass(frozen=True)
class _Layout:
    time: int
    clock: int | None  # a separate time-of-day column
    value: int
    delimiter: str

    @property
    def width(self) -> int:
        return max(self.time, self.value, self.clock or 0) + 1


def _rows(fh: IO[str], lines: Iterable[tuple[int, list[str]]], layout: _Layout, series_id: str,
          report: CsvReport, pre_epoch: bool) -> Iterator[Row]:
    with fh:
        kind: str | None = None
        last_ns: int | None = None
        latest_ns: int | None = None
        formats = list(_MONTH_NAME_FORMATS)
        for lineno, fields in lines:
            if not any(f.strip() for f in fields):
                continue
            try:
                if len(fields) < layout.width:
                    raise ValueError(f"fewer than {layout.width} columns")
                text = fields[layout.time].strip()
                if layout.clock is not None:
                    text = f"{text} {fields[layout.clock].strip()}"
                ts, ts_ns = _stamp(text, kind or _kind(text), pre_epoch, formats)
                value = _value(fields[layout.value].strip(), layout.delimiter)
            except ValueError as exc:
                report.bad.append((lineno, str(exc)))
                continue
            kind = kind or _kind(text)
            report.rows += 1
            if last_ns is not None and latest_ns is not None:
                report.backwards += ts_ns < last_ns
                report.stale += ts_ns <= latest_ns
            last_ns = ts_ns
            latest_ns = ts_ns if latest_ns is None else max(latest_ns, ts_ns)
            yield Row(series_id, ts, ts_ns, value)


def in_time_order(rows: list[Row]) -> list[Row]:
    """The rows sorted by time, stable (rows of one time keep their file order): what a back-test of a
    newest-first file needs.

    >>> rows = [Row("s", "", t, float(t)) for t in (3, 1, 2, 2)]
    >>> [(r.ts_ns, r.value) for r in in_time_order(rows)]
    [(1, 1.0), (2, 2.0), (2, 2.0), (3, 3.0)]
    """
    return sorted(rows, key=lambda r: r.ts_ns)
