"""Loaders for `usp evaluate`: offline, finite, strictly increasing, truth mapped to the right rows."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from models.evaluation import datasets
from models.evaluation.datasets import Series

NAB_ROOT = datasets.find_nab_root()
needs_nab = pytest.mark.skipif(NAB_ROOT is None, reason="NAB data folder not found (set USP_NAB_DATA)")


def assert_well_formed(s: Series) -> None:
    assert s.source in datasets.SOURCES
    assert s.name.split("/")[0] == s.source
    assert s.ts.dtype == np.float64 and s.values.dtype == np.float64
    assert len(s.ts) == len(s.values) > 0
    assert np.all(np.isfinite(s.values)), s.name
    assert np.all(np.diff(s.ts) > 0), s.name
    assert all(0 < c < len(s.values) for c in s.change_points), s.name
    assert list(s.change_points) == sorted(set(s.change_points))
    assert all(0 <= a <= b < len(s.values) for a, b in s.anomaly_windows), s.name
    assert s.period is None or s.period >= 2


@pytest.fixture(scope="module")
def package() -> list[Series]:
    return datasets.package_series()


def test_package_series_load_offline_and_well_formed(package: list[Series]) -> None:
    names = [s.name for s in package]
    assert names == sorted(names)
    assert len(names) >= 10  # every loader works on the pinned river and statsmodels
    for s in package:
        assert_well_formed(s)
    by_name = {s.name: s for s in package}
    assert len(by_name["river/airline_passengers"].values) == 144
    assert by_name["river/airline_passengers"].period == 12
    assert by_name["statsmodels/elnino"].period == 12 and len(by_name["statsmodels/elnino"].values) == 61 * 12
    # co2: the weekly clock stays regular once the missing weeks are interpolated
    assert set(np.diff(by_name["statsmodels/co2"].ts)) == {7 * 86_400.0}


def test_a_failing_loader_costs_one_series() -> None:
    def broken() -> Series:
        raise FileNotFoundError("not bundled")

    out = datasets.package_series((broken, datasets.PACKAGE_LOADERS[0]))
    assert [s.name for s in out] == ["river/airline_passengers"]


def test_nile_change_point_is_1898() -> None:
    nile = datasets.changepoint_series()[0]
    assert nile.name == "statsmodels/nile"
    (cp,) = nile.change_points
    year = int(np.datetime64(int(nile.ts[cp]), "s").astype("datetime64[Y]").astype(int)) + 1970
    assert year == 1898
    # and the level really drops there
    assert nile.values[cp:].mean() < nile.values[:cp].mean() - 200


def test_synthetic_series_reproducible_and_shift_where_stated() -> None:
    a, b, c = datasets.synthetic_shifts(seed=0), datasets.synthetic_shifts(seed=0), datasets.synthetic_shifts(seed=1)
    assert len(a) >= 12
    for x, y, z in zip(a, b, c, strict=True):
        assert_well_formed(x)
        assert 300 <= len(x.values) <= 2000 and 1 <= len(x.change_points) <= 4
        np.testing.assert_array_equal(x.values, y.values)
        assert not np.array_equal(x.values, z.values)
    by_name = {s.name: s for s in a}
    for name in ("synthetic/mean_shift_5sd_gauss", "synthetic/short_mean_shift", "synthetic/mean_shift_multi_gauss"):
        s = by_name[name]
        bounds = (0, *s.change_points, len(s.values))
        means = [s.values[lo:hi].mean() for lo, hi in itertools.pairwise(bounds)]
        assert all(abs(m1 - m0) > 1.0 for m0, m1 in itertools.pairwise(means)), (name, means)
    s = by_name["synthetic/variance_up_gauss"]
    (cp,) = s.change_points
    assert 2.0 < s.values[cp:].std() / s.values[:cp].std() < 4.0


def test_rows_per_day() -> None:
    assert datasets._rows_per_day(np.arange(0.0, 3000.0, 300.0)) == 288
    assert datasets._rows_per_day(np.arange(0.0, 7 * 86_400.0, 86_400.0)) is None
    assert datasets._rows_per_day(np.arange(0.0, 7000.0, 700.0)) is None


def test_clock_repair_keeps_rows_in_order() -> None:
    ts = np.array([0.0, 300.0, 600.0, 600.0, 300.0, 900.0])
    np.testing.assert_array_equal(datasets._strictly_increasing(ts), [0.0, 300.0, 600.0, 601.0, 602.0, 900.0])


def test_find_nab_root_explicit_is_strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert datasets.find_nab_root(tmp_path) is None
    (tmp_path / "data").mkdir()
    (tmp_path / "combined_windows.json").write_text("{}")
    assert datasets.find_nab_root(tmp_path) == tmp_path
    monkeypatch.setenv(datasets.NAB_ENV, str(tmp_path))
    assert datasets.find_nab_root() == tmp_path.resolve()


def test_nab_series_from_a_tiny_folder(tmp_path: Path) -> None:
    (tmp_path / "data" / "cat").mkdir(parents=True)
    rows = ["timestamp,value"] + [f"2020-01-01 00:{m:02d}:00,{m}" for m in range(0, 60, 5)]
    (tmp_path / "data" / "cat" / "f.csv").write_text("\n".join(rows) + "\n")
    windows = {"cat/f.csv": [["2020-01-01 00:07:00.000000", "2020-01-01 00:20:00.000000"],
                             ["2021-01-01 00:00:00.000000", "2021-01-02 00:00:00.000000"]]}
    (tmp_path / "combined_windows.json").write_text(json.dumps(windows))
    (s,) = datasets.nab_series(tmp_path)
    assert s.name == "nab/cat/f" and s.period == 288
    assert s.anomaly_windows == ((2, 4),)  # 00:10 .. 00:20; the window past the data is dropped


@needs_nab
def test_nab_series_real_folder() -> None:
    assert NAB_ROOT is not None
    series = datasets.nab_series(NAB_ROOT)
    assert [s.name for s in series] == sorted(s.name for s in series)
    for s in series:
        assert_well_formed(s)
    taxi = next(s for s in series if s.name == "nab/realKnownCause/nyc_taxi")
    assert taxi.period == 48 and len(taxi.values) == 10_320
    # By hand: the first labelled window's bounds are rows of the CSV at or inside its timestamps.
    with (NAB_ROOT / "data" / "realKnownCause" / "nyc_taxi.csv").open() as f:
        stamps = [row["timestamp"] for row in csv.DictReader(f)]
    start, end = json.loads((NAB_ROOT / "combined_windows.json").read_text())["realKnownCause/nyc_taxi.csv"][0]
    a, b = taxi.anomaly_windows[0]
    assert stamps[a] == start[:19] == "2014-10-30 15:30:00" and stamps[b] == end[:19] == "2014-11-03 22:30:00"
    assert (a, b) == (5839, 6045)
    # machine_temperature repeats a clock hour: all rows are kept, the clock still strictly increases
    machine = next(s for s in series if s.name.endswith("machine_temperature_system_failure"))
    assert len(machine.values) == 22_695 and len(machine.anomaly_windows) == 4
