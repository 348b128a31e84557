"""Forecast suite: one-step MAE, MASE, interval coverage and Winkler score for USP, each kernel alone,
the naive last value and river's forecasters, scored on the same rows of every series.

MASE divides by the series' in-sample naive error (mean |y[t] - y[t-1]|), so it is comparable across
series and the naive forecast scores about 1; the Winkler score is divided by the same scale for the
cross-series summary (the scaled interval score of the M4 competition).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from models.evaluation import metrics
from models.evaluation.datasets import Series
from models.evaluation.runs import FORECAST_METHODS, Runner, split_rows

COVERAGE_BAND = (0.93, 0.97)


class SeriesForecast(NamedTuple):
    series: str
    source: str
    rows: int
    scale: float
    scores: dict[str, metrics.ForecastScores]


class ForecastReport(NamedTuple):
    methods: tuple[str, ...]
    series: list[SeriesForecast]
    median_mase: dict[str, float]
    median_coverage: dict[str, float]
    in_band: dict[str, float]  # fraction of series whose coverage lies in COVERAGE_BAND
    median_scaled_winkler: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "methods": list(self.methods),
            "median_mase": self.median_mase,
            "median_coverage": self.median_coverage,
            "coverage_in_band": self.in_band,
            "median_scaled_winkler": self.median_scaled_winkler,
            "series": [
                {"series": s.series, "source": s.source, "rows": s.rows, "scale": s.scale,
                 "scores": {m: sc._asdict() for m, sc in s.scores.items()}}
                for s in self.series
            ],
        }


def score_start(runner: Runner, n: int) -> int:
    """First scored row: after USP's warm-up, the same for every method."""
    return min(runner.config.orchestration.warmup_steps + 1, max(n - 1, 0))


def run_forecast(runner: Runner, series: Sequence[Series],
                 methods: Sequence[str] = FORECAST_METHODS,
                 done: Callable[[Series], None] | None = None, split: str = "all") -> ForecastReport:
    alpha = 1.0 - runner.level
    out: list[SeriesForecast] = []
    for s in series:
        scale = metrics.naive_scale(s.values)
        if not np.isfinite(scale) or scale <= 0:
            if done is not None:
                done(s)
            continue  # a constant series has no error scale: MASE is undefined there
        lo, hi = split_rows(len(s.values), split)
        start = max(score_start(runner, len(s.values)), lo)
        scores = {}
        for m in methods:
            run = runner.forecast(s, m)
            scores[m] = metrics.forecast_scores(s.values[:hi], run.prediction[:hi], run.lower[:hi], run.upper[:hi],
                                                scale, start=start, alpha=alpha)
        out.append(SeriesForecast(s.name, s.source, len(s.values), float(scale), scores))
        if done is not None:
            done(s)

    def med(values: list[float]) -> float:
        finite = [v for v in values if np.isfinite(v)]
        return float(np.median(finite)) if finite else float("nan")

    band_lo, band_hi = COVERAGE_BAND
    return ForecastReport(
        methods=tuple(methods),
        series=out,
        median_mase={m: med([s.scores[m].mase for s in out]) for m in methods},
        median_coverage={m: med([s.scores[m].coverage for s in out]) for m in methods},
        in_band={m: float(np.mean([band_lo <= s.scores[m].coverage <= band_hi for s in out])) if out else float("nan")
                 for m in methods},
        median_scaled_winkler={m: med([s.scores[m].winkler / s.scale for s in out]) for m in methods},
    )
