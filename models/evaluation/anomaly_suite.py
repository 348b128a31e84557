"""Anomaly suite: a NAB-style score (Lavin & Ahmad 2015) of per-row anomaly scores on labelled series,
for USP and for river-based detectors, with one threshold per profile chosen over the whole corpus (the
NAB protocol: the detector is judged at its best single operating point, not tuned per file)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from models.evaluation import nab
from models.evaluation.datasets import Series
from models.evaluation.runs import RIVER_FORECASTERS, Runner

ANOMALY_METHODS = ("usp", "naive", *RIVER_FORECASTERS, "half_space_trees")


class ProfileScore(NamedTuple):
    threshold: float
    normalized: float
    tp: int
    fp: int
    fn: int


class AnomalyReport(NamedTuple):
    methods: tuple[str, ...]
    files: int
    windows: int
    scores: dict[str, dict[str, ProfileScore]]  # method -> profile -> score

    def to_json(self) -> dict[str, Any]:
        return {"methods": list(self.methods), "files": self.files, "windows": self.windows,
                "scores": {m: {p: s._asdict() for p, s in by.items()} for m, by in self.scores.items()}}


def nab_files(runner: Runner, series: Sequence[Series], method: str) -> list[nab.NabFile]:
    return [nab.NabFile(s.name, runner.anomaly_score(s, method), list(s.anomaly_windows),
                        nab.probation_rows(len(s.values))) for s in series]


def run_anomaly(runner: Runner, series: Sequence[Series],
                methods: Sequence[str] = ANOMALY_METHODS,
                done: Callable[[Series], None] | None = None) -> AnomalyReport:
    # Compute every method's scores series by series (so progress advances per series), then score.
    for s in series:
        for m in methods:
            runner.anomaly_score(s, m)
        if done is not None:
            done(s)
    scores: dict[str, dict[str, ProfileScore]] = {}
    for m in methods:
        files = nab_files(runner, series, m)
        scores[m] = {}
        for profile_name, profile in nab.PROFILES.items():
            threshold, result = nab.optimize_threshold(files, profile)
            scores[m][profile_name] = ProfileScore(float(threshold), float(result.normalized),
                                                   int(result.tp), int(result.fp), int(result.fn))
    return AnomalyReport(tuple(methods), len(series), sum(len(s.anomaly_windows) for s in series), scores)
