"""Anomaly suite: a NAB-style score (Lavin & Ahmad 2015) of per-row anomaly scores on labelled series,
for USP and for river-based detectors, with one threshold per profile chosen over the whole corpus (the
NAB protocol: the detector is judged at its best single operating point, not tuned per file)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from models.evaluation import nab
from models.evaluation.datasets import Series
from models.evaluation.runs import RIVER_FORECASTERS, Runner, split_rows

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


def nab_files(runner: Runner, series: Sequence[Series], method: str, split: str = "all") -> list[nab.NabFile]:
    """One NabFile per series, cut to the split: its windows clipped to it (a window that straddles the
    middle counts in both halves, so detections in it are never false positives), and NAB's probation
    at the start of a file only (the test half follows rows the detector has already learnt from)."""
    files = []
    for s in series:
        lo, hi = split_rows(len(s.values), split)
        windows = [(max(a, lo) - lo, min(b, hi - 1) - lo) for a, b in s.anomaly_windows if a < hi and b >= lo]
        probation = nab.probation_rows(len(s.values)) if lo == 0 else 0
        files.append(nab.NabFile(s.name, runner.anomaly_score(s, method)[lo:hi], windows, min(probation, hi - lo)))
    return files


def run_anomaly(runner: Runner, series: Sequence[Series],
                methods: Sequence[str] = ANOMALY_METHODS,
                done: Callable[[Series], None] | None = None, split: str = "all") -> AnomalyReport:
    # Compute every method's scores series by series (so progress advances per series), then score.
    for s in series:
        for m in methods:
            runner.anomaly_score(s, m)
        if done is not None:
            done(s)
    scores: dict[str, dict[str, ProfileScore]] = {}
    windows = 0  # the same windows for every method
    for m in methods:
        files = nab_files(runner, series, m, split)
        windows = sum(len(f.windows) for f in files)
        scores[m] = {}
        for profile_name, profile in nab.PROFILES.items():
            threshold, result = nab.optimize_threshold(files, profile)
            scores[m][profile_name] = ProfileScore(float(threshold), float(result.normalized),
                                                   int(result.tp), int(result.fp), int(result.fn))
    return AnomalyReport(tuple(methods), len(series), windows, scores)
