"""The CSV reader on the shapes analysts' files come in, and on what it must report rather than guess."""

from pathlib import Path
from typing import Any

import pytest

from streams.csv_input import CsvReport, in_time_order, read_csv


def test_bad_rows_are_reported_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("timestamp,value\n2024-01-01 00:00:00,1.5\nnot a date,2\n"
                    "2024-01-01 00:02:00,abc\n2024-01-01 00:03:00,nan\n\n2024-01-01 00:04:00,4\n")
    report = CsvReport()
    rows = list(read_csv(path, "s", report))
    assert [r.value for r in rows] == [1.5, 4.0]
    assert rows[0].ts == "2024-01-01T00:00:00Z"
    assert [line for line, _ in report.bad] == [3, 4, 5]
    assert report.rows == 2


def test_a_header_without_time_and_value_columns_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("a,b,c\n2024-01-01 00:00:00,1.5,2\n")
    with pytest.raises(ValueError, match="header"):
        list(read_csv(path, "s"))


def _rows(tmp_path: Path, text: str, **kwargs: Any) -> tuple[list[tuple[str, int, float]], CsvReport]:
    path = tmp_path / "s.csv"
    path.write_bytes(text.encode("utf-8"))
    report = CsvReport()
    return [(r.ts, r.ts_ns, r.value) for r in read_csv(path, "s", report, **kwargs)], report


MINUTE = 60 * 10**9
JAN_2024 = 1_704_067_200 * 10**9


@pytest.mark.parametrize("text", [
    "timestamp,value\n2024-01-01 00:00:00,1.5\n2024-01-01 00:01:00,2\n",
    "\ufefftimestamp,value\r\n2024-01-01 00:00:00,1.5\r\n2024-01-01 00:01:00,2\r\n",  # spreadsheet export
    "label,Value,Timestamp\nx,1.5,2024-01-01T00:00:00Z\ny,2,2024-01-01T00:01:00Z\n",  # by name, any order
    "date;y\n2024-01-01 00:00:00;1.5\n2024-01-01 00:01:00;2\n",  # aliases, semicolons
    "ts\tmetric\n2024-01-01 00:00:00\t1.5\n2024-01-01 00:01:00\t2\n",  # two columns, other names, tabs
    "count,timestamp\n1.5,2024-01-01 00:00:00\n2,2024-01-01 00:01:00\n",  # one name places the other
    "2024-01-01 00:00:00,1.5\n2024-01-01 00:01:00,2\n",  # no header at all
    "timestamp,value\n1704067200,1.5\n1704067260,2\n",  # epoch seconds
    "timestamp,value\n1704067200000,1.5\n1704067260000,2\n",  # epoch milliseconds
])
def test_common_csv_shapes_read_the_same_rows(tmp_path: Path, text: str) -> None:
    rows, report = _rows(tmp_path, text)
    assert rows == [("2024-01-01T00:00:00Z", JAN_2024, 1.5), ("2024-01-01T00:01:00Z", JAN_2024 + MINUTE, 2.0)]
    assert not report.bad
    assert report.guessed == (text.startswith(("ts", "2024", "count")))


def test_stamps_before_1970_are_for_back_tests_only(tmp_path: Path) -> None:
    text = "Month,Passengers\n1949-01-01,112\n1949-02-01,118\n"
    rows, report = _rows(tmp_path, text)
    assert rows == [] and [line for line, _ in report.bad] == [2, 3]
    assert "before 1970" in report.bad[0][1] and "usp backtest" in report.bad[0][1]
    rows, report = _rows(tmp_path, text, pre_epoch=True)
    assert [(ts, value) for ts, _, value in rows] == [("1949-01-01T00:00:00Z", 112.0), ("1949-02-01T00:00:00Z", 118.0)]
    assert rows[1][1] - rows[0][1] == 31 * 86_400 * 10**9 and rows[0][1] == -662_688_000 * 10**9
    assert report.columns == ("Month", "Passengers") and report.guessed


@pytest.mark.parametrize(("text", "ts"), [
    ("1871", "1871-01-01T00:00:00Z"),  # yearly records
    ("1949-03", "1949-03-01T00:00:00Z"),  # monthly
    ("19490331", "1949-03-31T00:00:00Z"),
    ("1949/3/31", "1949-03-31T00:00:00Z"),
    ("1949/03/31 06:30", "1949-03-31T06:30:00Z"),
    ("1704067200.25", "2024-01-01T00:00:00.250000Z"),  # epoch seconds, not a year
])
def test_calendar_shapes_of_historical_data(tmp_path: Path, text: str, ts: str) -> None:
    rows, report = _rows(tmp_path, f"timestamp,value\n{text},1\n", pre_epoch=True)
    assert not report.bad and rows[0][0] == ts


@pytest.mark.parametrize(("text", "ts"), [
    ("19-Sep-03", "2003-09-19T00:00:00Z"),  # a finance export's dd-Mon-yy
    ("01-Jan-62", "1962-01-01T00:00:00Z"),  # a two-digit year later than this year: the 1900s
    ("Jan-49", "1949-01-01T00:00:00Z"),  # monthly rows
    ("September 3 2019", "2019-09-03T00:00:00Z"),
    ("19-Sep-1969", "1969-09-19T00:00:00Z"),
    ("3 Sep 2019 14:05", "2019-09-03T14:05:00Z"),
    ('"Sep 3, 2019"', "2019-09-03T00:00:00Z"),
])
def test_dates_with_a_month_name(tmp_path: Path, text: str, ts: str) -> None:
    rows, report = _rows(tmp_path, f"date,value\n{text},1\n", pre_epoch=True)
    assert not report.bad and rows[0][0] == ts


def test_digit_only_day_month_orders_are_not_guessed(tmp_path: Path) -> None:
    """03/09/2019 is 3 September in Europe and 9 March in the US: a bad row that says what is read."""
    rows, report = _rows(tmp_path, "date,value\n03/09/2019,1\n")
    assert rows == [] and "ISO 8601" in report.bad[0][1]


def test_columns_named_by_the_caller(tmp_path: Path) -> None:
    """A price export (Date,Open,High,Low,Close,Volume) has no `value` column: the caller names one, in
    any case; a name that is not in the header is an error that shows the header."""
    text = "Date,Open,High,Low,Close,Volume\n2024-01-02,10,12,9,11,500\n2024-01-03,11,13,10,12.5,600\n"
    with pytest.raises(ValueError, match="or the columns to read named"):
        _rows(tmp_path, text)
    rows, report = _rows(tmp_path, text, value_column="close")
    assert [v for _, _, v in rows] == [11.0, 12.5] and report.columns == ("Date", "Close") and not report.guessed
    rows, _ = _rows(tmp_path, "when,a,b\n2024-01-02,1,2\n", time_column="When", value_column="b")
    assert [(ts, v) for ts, _, v in rows] == [("2024-01-02T00:00:00Z", 2.0)]
    with pytest.raises(ValueError, match="no column 'Adj Close'"):
        _rows(tmp_path, text, value_column="Adj Close")
    with pytest.raises(ValueError, match="both 'Date'"):
        _rows(tmp_path, text, time_column="Date", value_column="date")


def test_a_files_month_name_format_is_tried_first_once_found(tmp_path: Path) -> None:
    """strptime keeps five compiled formats: each row trying all of them in turn recompiled them (0.4 ms
    a row); the reader moves the format that matched to the front of its own order."""
    import streams.csv_input as reader

    formats = list(reader._MONTH_NAME_FORMATS)
    assert reader._date_text("Sep 03, 2019 09:30:15", formats).isoformat() == "2019-09-03T09:30:15"
    assert formats[0] == "%b %d, %Y %H:%M:%S" and sorted(formats) == sorted(reader._MONTH_NAME_FORMATS)
    assert reader._date_text("03-Sep-19", formats).year == 2019 and formats[0] == "%d-%b-%y"


def test_rows_the_stream_would_refuse_are_counted_as_it_refuses_them(tmp_path: Path) -> None:
    """The stream refuses a row not later than the latest before it: 1, 2, 10, 4, 5, 6 loses three rows,
    though only one of them is earlier than the row just before."""
    rows, report = _rows(tmp_path, "timestamp,value\n" + "".join(f"{t},1\n" for t in (1, 2, 10, 4, 5, 6)))
    assert len(rows) == 6 and (report.backwards, report.stale) == (1, 3)


def test_a_named_time_column_keeps_its_time_of_day_column(tmp_path: Path) -> None:
    text = "Date,Time,Open,Close\n2020-01-02,09:30,1,2\n2020-01-02,09:31,1,3\n"
    for kwargs in ({"value_column": "Close"}, {"time_column": "Date", "value_column": "Close"}):
        rows, report = _rows(tmp_path, text, **kwargs)
        assert [ts for ts, _, _ in rows] == ["2020-01-02T09:30:00Z", "2020-01-02T09:31:00Z"] and not report.stale


def test_a_column_named_twice_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="more than one column 'close'"):
        _rows(tmp_path, "Date,Close,Close\n2020-01-02,1,2\n", value_column="Close")


def test_rows_out_of_time_order_are_counted_and_in_time_order_sorts_them(tmp_path: Path) -> None:
    """A newest-first export, with one moment read twice: the reader keeps file order and counts."""
    path = tmp_path / "desc.csv"
    path.write_text("Date,Close\n2024-01-04,4\n2024-01-03,3\n2024-01-03,3.5\n2024-01-01,1\n")
    report = CsvReport()
    rows = list(read_csv(path, "s", report))
    assert [r.value for r in rows] == [4.0, 3.0, 3.5, 1.0]
    assert (report.backwards, report.stale) == (2, 3)
    ordered = in_time_order(rows)
    assert [r.value for r in ordered] == [1.0, 3.0, 3.5, 4.0]  # stable: the two readings keep their order


def test_a_column_is_read_one_way_from_its_first_stamp(tmp_path: Path) -> None:
    """Row numbers or seconds since a start are epoch numbers throughout: 1998 in such a column is not a
    year; and a year column does not take an epoch number."""
    rows, report = _rows(tmp_path, "t,value\n997,1\n1998,2\n10000,3\n", pre_epoch=True)
    assert [ns for _, ns, _ in rows] == [997 * 10**9, 1998 * 10**9, 10000 * 10**9] and not report.bad
    rows, report = _rows(tmp_path, "year,value\n1871.0,1\n1872,2\n1704067200,3\n", pre_epoch=True)
    assert [ts for ts, _, _ in rows] == ["1871-01-01T00:00:00Z", "1872-01-01T00:00:00Z"]
    assert [line for line, _ in report.bad] == [4] and "year" in report.bad[0][1]


def test_epoch_fractions_are_exact_and_the_text_reads_back_to_the_same_ns(tmp_path: Path) -> None:
    from streams.codecs import parse_ts

    rows, _ = _rows(tmp_path, "timestamp,value\n1704067200.1,1\n1704067200.001,2\n")
    assert [ns for _, ns, _ in rows] == [JAN_2024 + 100_000_000, JAN_2024 + 1_000_000]
    assert all(parse_ts(ts) == ns for ts, ns, _ in rows)


@pytest.mark.parametrize(("text", "value"), [
    ('Date;"Price, EUR"\n2024-01-01 00:00:00;1,5\n', 1.5),  # a quoted comma in the header, a decimal comma
    ("time\tvalue, kWh\n2024-01-01 00:00:00\t2.5\n", 2.5),
    ("timestamp,value,\n2024-01-01 00:00:00,3,\n", 3.0),  # a trailing delimiter
    ("\n\ntimestamp,value\n2024-01-01 00:00:00,4\n", 4.0),  # blank lines before the header
    ("2024/1/1 0:00,5\n", 5.0),  # no header, Excel's one-digit hour
    ("Date,Time,Value\n2024-01-01,00:00:00,6\n", 6.0),  # a logger's separate date and time
])
def test_delimiters_and_decimal_commas(tmp_path: Path, text: str, value: float) -> None:
    rows, report = _rows(tmp_path, text)
    assert rows == [("2024-01-01T00:00:00Z", JAN_2024, value)] and not report.bad


def test_a_bad_first_row_of_a_headerless_file_is_reported_not_taken_for_a_header(tmp_path: Path) -> None:
    rows, report = _rows(tmp_path, "2024-01-01 00:00:00,\n2024-01-01 00:01:00,2\n")
    assert rows == [("2024-01-01T00:01:00Z", JAN_2024 + MINUTE, 2.0)]
    assert [line for line, _ in report.bad] == [1] and report.columns == ("column 1", "column 2")


def test_broken_records_and_bytes_are_bad_lines_with_their_own_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b'timestamp,value,note\n2024-01-01 00:00:00,1,"two\nlines"\n2024-01-01 00:01:00,x,\n'
                     b"2024-01-01 00:02:00,3,\xb0C\n2024-01-01 00:03:\xb000,4,\n")
    report = CsvReport()
    assert [r.value for r in read_csv(path, "s", report)] == [1.0, 3.0]
    assert [line for line, _ in report.bad] == [4, 6]  # file lines, counting the quoted field's two


def test_an_unclosed_quote_costs_its_lines_not_the_file(tmp_path: Path) -> None:
    import csv

    path = tmp_path / "s.csv"
    limit = csv.field_size_limit()
    path.write_text('timestamp,value,note\n2024-01-01 00:00:00,1,"oops\n' + "x" * (limit + 10) + "\n")
    report = CsvReport()
    assert [r.value for r in read_csv(path, "s", report)] == []
    assert report.bad and "unreadable CSV record" in report.bad[0][1]
