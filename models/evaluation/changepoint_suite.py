"""Change-point suite: USP's `regime_change` alarms against annotated change points, beside river's
drift detectors fed the very same residual stream, scored by F1 (margin 5) and covering as defined by
van den Burg & Williams (2020)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from models.evaluation import baselines, changepoint_metrics
from models.evaluation.datasets import Series
from models.evaluation.runs import Runner, split_rows

MARGIN = 5
CHANGEPOINT_METHODS = ("usp", *baselines.DETECTORS)


class SeriesChangepoints(NamedTuple):
    series: str
    rows: int
    truth: tuple[int, ...]
    alarms: dict[str, list[int]]
    f1: dict[str, float]
    covering: dict[str, float]


class ChangepointReport(NamedTuple):
    methods: tuple[str, ...]
    series: list[SeriesChangepoints]
    mean_f1: dict[str, float]
    mean_covering: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"methods": list(self.methods), "margin": MARGIN, "mean_f1": self.mean_f1,
                "mean_covering": self.mean_covering, "series": [s._asdict() for s in self.series]}


def alarms_for(runner: Runner, series: Series, method: str) -> list[int]:
    if method == "usp":
        return [int(i) for i in np.flatnonzero(runner.usp(series).regime_change)]
    return [int(i) for i in baselines.run_detector(method, runner.residuals(series))]


def run_changepoint(runner: Runner, series: Sequence[Series],
                    methods: Sequence[str] = CHANGEPOINT_METHODS,
                    done: Callable[[Series], None] | None = None, split: str = "all") -> ChangepointReport:
    out = []
    for s in series:
        # A split is scored as a series of its own: its rows renumbered from 0, truth and alarms in it.
        lo, hi = split_rows(len(s.values), split)
        n = hi - lo
        truth = [[c - lo for c in s.change_points if lo <= c < hi]]
        alarms = {m: [a - lo for a in alarms_for(runner, s, m) if lo <= a < hi] for m in methods}
        f1 = {m: changepoint_metrics.f1_score(truth, a, margin=MARGIN).f1 for m, a in alarms.items()}
        cover = {m: changepoint_metrics.covering(truth, a, n) for m, a in alarms.items()}
        out.append(SeriesChangepoints(s.name, n, tuple(truth[0]), alarms, f1, cover))
        if done is not None:
            done(s)
    return ChangepointReport(
        methods=tuple(methods), series=out,
        mean_f1={m: float(np.mean([s.f1[m] for s in out])) if out else float("nan") for m in methods},
        mean_covering={m: float(np.mean([s.covering[m] for s in out])) if out else float("nan") for m in methods},
    )
