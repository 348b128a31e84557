import itertools
from pathlib import Path

import pytest

from streams.publish import CsvReport, demo_path, interleave, read_csv


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


def _rows(tmp_path: Path, text: str, **kwargs: bool) -> tuple[list[tuple[str, int, float]], CsvReport]:
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


def test_bundled_demo_series_interleave_keeping_each_series_in_file_order() -> None:
    a = list(read_csv(demo_path("machine_temperature"), "machine_temperature"))
    b = list(read_csv(demo_path("nyc_taxi"), "nyc_taxi"))
    rows = list(interleave(a, b))
    assert len(rows) == len(a) + len(b) == 22695 + 10320
    assert [r for r in rows if r.series_id == "machine_temperature"] == a
    assert [r for r in rows if r.series_id == "nyc_taxi"] == b
    # the real data has one timestamp that goes backwards; the stream will refuse it as stale
    assert sum(x.ts_ns > y.ts_ns for x, y in itertools.pairwise(a)) == 1
    switches = sum(x.series_id != y.series_id for x, y in itertools.pairwise(rows))
    assert switches > 1000


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
