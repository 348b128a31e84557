import itertools

from streams.publish import demo_path, interleave, read_csv


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
