"""Series for `usp evaluate`, all loadable offline: NAB files from a local folder, real series that river
and statsmodels ship inside their wheels, and seeded synthetic series whose change points are known.

Every loader returns `Series` in a deterministic order, with a strictly increasing clock and finite values,
so a score computed today can be reproduced bit for bit tomorrow. Nothing here ever downloads: a river
dataset whose file is not inside the installed wheel is not used, and sktime is not used at all (its
newest release, 1.2.0, requires pandas < 3.1 and older ones pin lower, while this project runs 3.1).

>>> s = synthetic_shifts(seed=0)[0]
>>> (s.name, len(s.values), s.change_points)
('synthetic/mean_shift_1sd_gauss', 500, (250,))
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

SOURCES = ("nab", "river", "statsmodels", "sktime", "synthetic")
NAB_ENV = "USP_NAB_DATA"
SECONDS_PER_DAY = 86_400
NILE_CHANGE_YEAR = 1898  # the Aswan low dam: the Nile's mean annual flow drops from here on


@dataclass(frozen=True, eq=False)  # eq=False: identity equality and hashing (arrays have neither)
class Series:
    """One univariate series with whatever truth is known about it.

    `ts` is float64 seconds since the epoch (0..n-1 for synthetic series, which have no clock);
    `change_points` are the rows where a new segment starts; `anomaly_windows` are inclusive row ranges;
    `period` is the seasonal period in rows, or None when the series has none worth modelling.
    """

    name: str
    source: str
    ts: np.ndarray
    values: np.ndarray
    change_points: tuple[int, ...] = ()
    anomaly_windows: tuple[tuple[int, int], ...] = ()
    period: int | None = None

    def __post_init__(self) -> None:
        # Cheap shape checks only: the loaders guarantee order and finiteness, and callers that slice a
        # Series (a --max-rows truncation) should not pay for a full validation.
        if self.ts.ndim != 1 or self.values.ndim != 1 or len(self.ts) != len(self.values):
            raise ValueError(f"{self.name}: ts and values must be 1-D and of equal length")


# ---------------------------------------------------------------------------------------------------- clocks

def _epoch_seconds(stamps: Any) -> np.ndarray:
    """Seconds since 1970-01-01 UTC as float64, whatever the datetime resolution or time zone.

    Subtracting the epoch (rather than viewing as int64) stays right under pandas 3, where the unit of
    the underlying integers depends on how the dates were parsed.
    """
    index = pd.DatetimeIndex(stamps)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return np.asarray((index - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1), dtype=np.float64)


def _strictly_increasing(ts: np.ndarray, nudge: float = 1.0) -> np.ndarray:
    """Push each stamp that does not advance to `nudge` seconds after the previous one.

    A few NAB files repeat a clock hour (a daylight-saving artefact): the rows are real and NAB scores
    them in file order, so they are kept in order with a clock that just ticks on.
    """
    out = np.array(ts, dtype=np.float64)
    for i in range(1, len(out)):
        if out[i] <= out[i - 1]:
            out[i] = out[i - 1] + nudge
    return out


def _rows_per_day(ts: np.ndarray) -> int | None:
    """Daily period in rows when the median step divides a day (5 min -> 288), else None."""
    if len(ts) < 2:
        return None
    step = float(np.median(np.diff(ts)))
    if step <= 0 or step != round(step) or SECONDS_PER_DAY % int(step):
        return None
    rows = SECONDS_PER_DAY // int(step)
    return rows if rows >= 2 else None


def _yearly(years: Any) -> np.ndarray:
    return _epoch_seconds(pd.to_datetime([f"{int(y):04d}-01-01" for y in years]))


# ---------------------------------------------------------------------------------------------------- NAB

def _window_rows(ts: np.ndarray, start: str, end: str) -> tuple[int, int] | None:
    """First row at or after `start` to last row at or before `end`; None when no row falls inside."""
    lo = int(np.searchsorted(ts, _epoch_seconds([start])[0], side="left"))
    hi = int(np.searchsorted(ts, _epoch_seconds([end])[0], side="right")) - 1
    return (lo, hi) if lo <= hi else None


def nab_series(root: Path) -> list[Series]:
    """Every `data/<category>/<file>.csv` under a NAB folder, with its labelled windows as row ranges."""
    root = Path(root)
    windows_path = root / "combined_windows.json"
    labels: dict[str, list[list[str]]] = json.loads(windows_path.read_text()) if windows_path.exists() else {}
    out: list[Series] = []
    for path in sorted((root / "data").glob("*/*.csv")):
        key = f"{path.parent.name}/{path.name}"
        frame = pd.read_csv(path)
        values = frame["value"].to_numpy(dtype=np.float64)
        raw_ts = _epoch_seconds(pd.to_datetime(frame["timestamp"]))
        keep = np.isfinite(values)
        values, raw_ts = values[keep], raw_ts[keep]
        ts = _strictly_increasing(raw_ts)
        windows = tuple(w for start, end in labels.get(key, []) if (w := _window_rows(ts, start, end)) is not None)
        out.append(Series(f"nab/{key.removesuffix('.csv')}", "nab", ts, values,
                          anomaly_windows=windows, period=_rows_per_day(raw_ts)))
    return sorted(out, key=lambda s: s.name)


def _is_nab_root(path: Path) -> bool:
    return (path / "data").is_dir() and (path / "combined_windows.json").is_file()


def find_nab_root(explicit: Path | None = None) -> Path | None:
    """The NAB folder to use, or None.

    An explicit path is taken at its word (a wrong `--nab` should say "not found", not quietly pick
    another folder); otherwise `$USP_NAB_DATA`, then `shared/data/nab` beside or inside the current
    directory and the repository root, the layouts of a developer checkout, CI and the device machine.
    """
    if explicit is not None:
        return Path(explicit) if _is_nab_root(Path(explicit)) else None
    candidates: list[Path] = []
    if env := os.environ.get(NAB_ENV):
        candidates.append(Path(env))
    repo_root = Path(__file__).resolve().parents[2]
    for base in (Path.cwd(), repo_root):
        candidates += [base / ".." / "shared" / "data" / "nab", base / "shared" / "data" / "nab"]
    for candidate in candidates:
        if _is_nab_root(candidate):
            return candidate.resolve()
    return None


# ---------------------------------------------------------------------------------------------------- packages

def _river_frame(dataset_class: str) -> pd.DataFrame:
    """The CSV of a river dataset that ships inside the wheel (never a `RemoteDataset`, which downloads)."""
    from river import datasets

    dataset = getattr(datasets, dataset_class)()
    if not isinstance(dataset, datasets.base.FileDataset) or not Path(dataset.path).is_file():
        raise FileNotFoundError(f"river.datasets.{dataset_class} is not bundled with the installed river")
    return pd.read_csv(dataset.path)


def _river_airline() -> Series:
    frame = _river_frame("AirlinePassengers")  # target: passengers (monthly, thousands)
    return Series("river/airline_passengers", "river", _epoch_seconds(pd.to_datetime(frame["month"])),
                  frame["passengers"].to_numpy(np.float64), period=12)


def _river_water_flow() -> Series:
    frame = _river_frame("WaterFlow")  # target: "Water flow [l/s]", hourly with a few gaps
    return Series("river/water_flow", "river", _epoch_seconds(pd.to_datetime(frame["Time"], utc=True)),
                  frame["Water flow [l/s]"].to_numpy(np.float64), period=24)


def _river_trump_approval() -> Series:
    frame = _river_frame("TrumpApproval")  # target: five_thirty_eight (daily approval estimate, smooth)
    days = pd.to_datetime([pd.Timestamp.fromordinal(int(d)) for d in frame["ordinal_date"]])
    return Series("river/trump_approval", "river", _epoch_seconds(days),
                  frame["five_thirty_eight"].to_numpy(np.float64))


def _river_sp500() -> Series:
    # The equal-weighted return of the ten stocks on each day: river's target `next_day_return` is this
    # same series one row earlier, so using the same-day mean keeps every row on its own date.
    frame = _river_frame("SP500Stocks")
    tickers = [c for c in frame.columns if c not in ("date", "next_day_return")]
    return Series("river/sp500_equal_weight_return", "river", _epoch_seconds(pd.to_datetime(frame["date"])),
                  frame[tickers].mean(axis=1).to_numpy(np.float64))


def _sm_data(name: str) -> pd.DataFrame:
    import importlib

    module = importlib.import_module(f"statsmodels.datasets.{name}")
    return pd.DataFrame(module.load_pandas().data)


def _sm_nile() -> Series:
    frame = _sm_data("nile")  # volume: annual flow at Aswan, 1871-1970
    years = frame["year"].astype(int).tolist()
    return Series("statsmodels/nile", "statsmodels", _yearly(years), frame["volume"].to_numpy(np.float64),
                  change_points=(years.index(NILE_CHANGE_YEAR),))


def _sm_sunspots() -> Series:
    frame = _sm_data("sunspots")  # SUNACTIVITY, yearly 1700-2008; the ~11-year solar cycle
    return Series("statsmodels/sunspots", "statsmodels", _yearly(frame["YEAR"]),
                  frame["SUNACTIVITY"].to_numpy(np.float64), period=11)


def _sm_co2() -> Series:
    # Weekly Mauna Loa CO2 with 59 missing weeks: interpolated in time so the weekly clock stays regular.
    co2 = _sm_data("co2")["co2"].interpolate(method="time").dropna()
    return Series("statsmodels/co2", "statsmodels", _epoch_seconds(co2.index), co2.to_numpy(np.float64), period=52)


def _sm_elnino() -> Series:
    frame = _sm_data("elnino")  # one row per year, one column per month: flattened to a monthly series
    months = [c for c in frame.columns if c != "YEAR"]
    stamps = pd.to_datetime([f"{int(y):04d}-{m + 1:02d}-01" for y in frame["YEAR"] for m in range(len(months))])
    return Series("statsmodels/elnino", "statsmodels", _epoch_seconds(stamps),
                  frame[months].to_numpy(np.float64).ravel(), period=12)


def _sm_elec_equip() -> Series:
    frame = _sm_data("elec_equip")  # euro-area electrical equipment orders index, monthly, not adjusted
    return Series("statsmodels/elec_equip", "statsmodels", _epoch_seconds(frame.index),
                  frame.iloc[:, 0].to_numpy(np.float64), period=12)


def _sm_macro(column: str) -> Callable[[], Series]:
    def load() -> Series:
        # US quarterly macro data, 1959-2009, already seasonally adjusted: no period to model.
        frame = _sm_data("macrodata")
        stamps = pd.to_datetime([f"{int(y):04d}-{3 * int(q) - 2:02d}-01"
                                 for y, q in zip(frame["year"], frame["quarter"], strict=True)])
        return Series(f"statsmodels/macrodata_{column}", "statsmodels", _epoch_seconds(stamps),
                      frame[column].to_numpy(np.float64))
    return load


PACKAGE_LOADERS: tuple[Callable[[], Series], ...] = (
    _river_airline, _river_water_flow, _river_trump_approval, _river_sp500,
    _sm_nile, _sm_sunspots, _sm_co2, _sm_elnino, _sm_elec_equip,
    _sm_macro("realgdp"), _sm_macro("unemp"), _sm_macro("infl"),
)


def _checked(series: Series) -> Series:
    if not (np.all(np.isfinite(series.values)) and np.all(np.diff(series.ts) > 0)):
        raise ValueError(f"{series.name}: values must be finite and ts strictly increasing")
    return series


def package_series(loaders: Sequence[Callable[[], Series]] = PACKAGE_LOADERS) -> list[Series]:
    """Real series bundled in installed packages, sorted by name; one that fails to load is skipped.

    river's ChickWeights is left out on purpose: it interleaves 50 chicks of 12 readings each, a panel
    rather than a series.
    """
    out = []
    for load in loaders:
        try:
            out.append(_checked(load()))
        except Exception as exc:  # a package update must cost one series, not the whole evaluation
            log.warning("skipping %s: %s", getattr(load, "__name__", load), exc)
    return sorted(out, key=lambda s: s.name)


# ---------------------------------------------------------------------------------------------------- synthetic

@dataclass(frozen=True)
class _Segment:
    mean: float = 0.0
    scale: float = 1.0
    slope: float = 0.0  # added per row, continuous at the segment start
    phi: float = 0.0  # AR(1) coefficient of the noise


@dataclass(frozen=True)
class _Spec:
    name: str
    n: int
    change_points: tuple[int, ...]
    segments: tuple[_Segment, ...]
    noise: str = "gauss"  # or "t3": Student-t with 3 degrees of freedom, scaled to unit variance
    period: int | None = None
    amplitude: float = 0.0  # of a sine with `period` rows, the same in every segment


_S = _Segment
SYNTHETIC_SPECS: tuple[_Spec, ...] = (
    _Spec("mean_shift_1sd_gauss", 500, (250,), (_S(), _S(mean=1.0))),
    _Spec("mean_shift_2sd_gauss", 1000, (300, 700), (_S(), _S(mean=2.0), _S(mean=0.0))),
    _Spec("mean_shift_5sd_gauss", 600, (200, 400), (_S(), _S(mean=5.0), _S(mean=-1.0))),
    _Spec("mean_shift_3sd_t3", 1000, (400, 700), (_S(), _S(mean=3.0), _S(mean=1.0)), noise="t3"),
    _Spec("mean_shift_multi_gauss", 2000, (400, 800, 1200, 1600),
          (_S(), _S(mean=3.0), _S(mean=1.0), _S(mean=4.0), _S(mean=0.5))),
    _Spec("mean_shift_multi_t3", 1500, (500, 1000), (_S(), _S(mean=-4.0), _S(mean=2.0)), noise="t3"),
    _Spec("variance_up_gauss", 1000, (500,), (_S(), _S(scale=3.0))),
    _Spec("variance_down_up_gauss", 900, (300, 600), (_S(scale=2.0), _S(scale=0.5), _S(scale=2.0))),
    _Spec("ar1_mean_shift", 1000, (500,), (_S(phi=0.7), _S(mean=3.0, phi=0.7))),
    _Spec("ar1_phi_change", 1000, (500,), (_S(phi=0.1), _S(phi=0.9))),
    _Spec("slope_change", 1000, (500,), (_S(), _S(slope=0.05))),
    _Spec("seasonal_mean_shift", 1200, (400, 800), (_S(), _S(mean=3.0), _S(mean=-1.0)), period=24, amplitude=3.0),
    _Spec("seasonal_variance_up", 600, (300,), (_S(), _S(scale=3.0)), period=12, amplitude=2.0),
    _Spec("short_mean_shift", 300, (150,), (_S(), _S(mean=4.0))),
)


def _synthesize(spec: _Spec, rng: np.random.Generator) -> np.ndarray:
    # Student-t with 3 degrees of freedom has variance 3: scaled to unit variance like the Gaussian.
    shocks = rng.standard_t(3, size=spec.n) / np.sqrt(3.0) if spec.noise == "t3" else rng.standard_normal(spec.n)
    bounds = (0, *spec.change_points, spec.n)
    values = np.empty(spec.n)
    level, noise = 0.0, 0.0
    for seg, lo, hi in zip(spec.segments, bounds[:-1], bounds[1:], strict=True):
        for i in range(lo, hi):
            # AR(1) noise with unit marginal variance times the segment's scale, so `scale` means what it says.
            noise = seg.phi * noise + np.sqrt(1.0 - seg.phi**2) * shocks[i]
            values[i] = seg.mean + level + seg.slope * (i - lo) + seg.scale * noise
        level += seg.slope * (hi - lo)  # a slope change keeps the line continuous
    if spec.period:
        values += spec.amplitude * np.sin(2 * np.pi * np.arange(spec.n) / spec.period)
    return values


def synthetic_shifts(seed: int = 0) -> list[Series]:
    """Seeded series with known change points: mean shifts of 1-5 sd in Gaussian and Student-t noise,
    variance changes, a shift and a coefficient change in AR(1), a slope change, and seasonal variants.

    Each series draws from its own generator (seed, index), so adding a spec never changes the others.
    """
    out = []
    for k, spec in enumerate(SYNTHETIC_SPECS):
        values = _synthesize(spec, np.random.default_rng([seed, k]))
        out.append(Series(f"synthetic/{spec.name}", "synthetic", np.arange(spec.n, dtype=np.float64), values,
                          change_points=spec.change_points, period=spec.period))
    return out


def changepoint_series(seed: int = 0) -> list[Series]:
    """Series with annotated change points, all offline: the Nile (level drop from 1898) and the
    synthetic set. sktime's segmentation sets are not included (see the module docstring)."""
    out = []
    try:
        out.append(_checked(_sm_nile()))
    except Exception as exc:
        log.warning("skipping statsmodels/nile: %s", exc)
    return out + synthetic_shifts(seed)
