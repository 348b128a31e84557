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


def test_missing_header_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("2024-01-01 00:00:00,1.5\n")
    with pytest.raises(ValueError, match="header"):
        list(read_csv(path, "s"))


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
