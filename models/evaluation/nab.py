"""A NAB-style anomaly score, written from the definition in Lavin & Ahmad (2015), "Evaluating
Real-time Anomaly Detection Algorithms - the Numenta Anomaly Benchmark", and NAB's documented scoring.

Why this score rather than precision/recall per row: a streaming detector is useful when it fires
early in an anomaly and rarely otherwise. NAB labels each anomaly with a window of rows; the first
detection inside a window earns a reward that falls with its lateness along a scaled sigmoid, later
detections in the same window earn nothing (the operator was already alerted), a window without one
costs a miss, and every detection outside windows costs a false positive, a little less when it comes
soon after a window (it is plausibly the tail of the same event). An application profile weighs these.

Conventions of this implementation (where the paper leaves room):

* Rows are indices; a window is an inclusive (start, end) pair of rows. Windows are clipped to the
  file, sorted, and must not overlap. A window's width w = end - start + 1 after clipping.
* The first `probation` rows are the detector's learning period: detections there are ignored (neither
  true nor false positives). Windows are scored as usual, so a window lying wholly inside the probation
  counts as a miss for every detector, the null and the perfect one alike, which leaves the normalized
  score unchanged. The perfect detector fires at each window's first row outside the probation.
* Detection means score >= threshold; NaN scores never detect.
* With no window that a detector could detect, perfect == null and `normalized` is NaN (the raw score
  is then just the false-positive cost, 0 for a silent detector).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "PROFILES",
    "NabFile",
    "NabResult",
    "Profile",
    "default_thresholds",
    "optimize_threshold",
    "probation_rows",
    "scaled_sigmoid",
    "score_corpus",
    "score_file",
]


class Profile(NamedTuple):
    """Application profile: weights of a true positive, a false positive, a false negative (miss) and a
    true negative (unused: true negatives score 0, as in NAB)."""

    a_tp: float
    a_fp: float
    a_fn: float
    a_tn: float = 1.0


PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "standard": Profile(a_tp=1.0, a_fp=0.11, a_fn=1.0),
        "reward_low_FP_rate": Profile(a_tp=1.0, a_fp=0.22, a_fn=1.0),
        "reward_low_FN_rate": Profile(a_tp=1.0, a_fp=0.11, a_fn=2.0),
    }
)


class NabFile(NamedTuple):
    """One labelled series: per-row anomaly scores (meant to lie in [0, 1]), inclusive (start, end) row
    windows, and the probation length in rows (None: `probation_rows(len(scores))`)."""

    name: str
    scores: npt.ArrayLike
    windows: Sequence[tuple[int, int]]
    probation: int | None = None


class NabResult(NamedTuple):
    """Corpus score at one threshold: raw, the silent (null) and perfect detectors' raw scores, the
    normalized score 100 * (raw - null) / (perfect - null), and detection counts."""

    raw: float
    null: float
    perfect: float
    normalized: float
    tp: int
    fp: int
    fn: int


def probation_rows(n: int) -> int:
    """NAB's probationary period: 15% of the file, at most 750 rows (floor(0.15 n) in exact integers).

    >>> probation_rows(100), probation_rows(20_000)
    (15, 750)
    """
    return min(max(15 * int(n), 0) // 100, 750)


def scaled_sigmoid(y: npt.ArrayLike) -> np.ndarray:
    """sigma(y) = 2 / (1 + exp(5 y)) - 1: about 0.987 at y = -1 (the start of a window), 0 at its end,
    falling towards -1 after it.

    >>> [round(float(v), 4) for v in scaled_sigmoid([-1.0, 0.0, 1.0])]
    [0.9866, 0.0, -0.9866]
    """
    # Clipping avoids overflow in exp; sigma is already -1 (or 1) to double precision at |y| = 50.
    y = np.clip(np.asarray(y, dtype=np.float64), -50.0, 50.0)
    out: np.ndarray = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return out


class _Window(NamedTuple):
    runmax: np.ndarray  # running max of the scores over the window's scorable rows (NaN as -inf)
    sigma: np.ndarray  # sigma(relative position) of each scorable row: the reward of detecting there


class _Prepared(NamedTuple):
    """A file reduced to what scoring at any threshold needs (independent of the profile)."""

    windows: list[_Window]
    fp_scores: np.ndarray  # scores of scorable rows outside windows, ascending
    fp_cost: np.ndarray  # fp_cost[k]: sum of unit FP costs of the k highest-scoring such rows


def _clean_windows(windows: Sequence[tuple[int, int]], n: int, name: str) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted((int(a), int(b)) for a, b in windows):
        if end < start:
            raise ValueError(f"{name}: window ({start}, {end}) ends before it starts")
        if start >= n or end < 0:
            continue
        start, end = max(start, 0), min(end, n - 1)
        if out and start <= out[-1][1]:
            raise ValueError(f"{name}: windows {out[-1]} and ({start}, {end}) overlap")
        out.append((start, end))
    return out


def _prepare(file: NabFile) -> _Prepared:
    scores = np.asarray(file.scores, dtype=np.float64).reshape(-1)
    n = scores.size
    probation = probation_rows(n) if file.probation is None else max(int(file.probation), 0)
    windows = _clean_windows(file.windows, n, file.name)
    rows = np.arange(n)
    in_window = np.zeros(n, dtype=bool)
    prepared_windows = []
    for start, end in windows:
        in_window[start : end + 1] = True
        width = end - start + 1
        i = np.arange(max(start, probation), end + 1)
        values = np.where(np.isnan(scores[i]), -np.inf, scores[i])
        prepared_windows.append(_Window(np.maximum.accumulate(values) if i.size else values,
                                        scaled_sigmoid(-(end - i + 1) / width)))
    fp_rows = rows[(rows >= probation) & ~in_window & ~np.isnan(scores)]
    # Unit cost (times A_fp) of a false positive: -1 before any window, sigma of the distance past
    # the end of the latest window, in window widths, after one.
    ends = np.array([e for _, e in windows], dtype=np.int64)
    widths = np.array([e - s + 1 for s, e in windows], dtype=np.int64)
    prev = np.searchsorted(ends, fp_rows, side="left") - 1
    cost = np.full(fp_rows.size, -1.0)
    after = prev >= 0
    if after.any():
        p = prev[after]
        cost[after] = scaled_sigmoid(np.abs(fp_rows[after] - ends[p]) / np.maximum(widths[p] - 1, 1))
    order = np.argsort(scores[fp_rows], kind="stable")
    return _Prepared(prepared_windows, scores[fp_rows][order],
                     np.concatenate([[0.0], np.cumsum(cost[order][::-1])]))


class _Totals(NamedTuple):
    raw: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray


def _totals(prepared: Sequence[_Prepared], profile: Profile, thresholds: np.ndarray) -> _Totals:
    """Raw score and counts of the corpus at every threshold at once."""
    raw = np.zeros(thresholds.size)
    tp = np.zeros(thresholds.size, dtype=np.int64)
    fp = np.zeros(thresholds.size, dtype=np.int64)
    for f in prepared:
        for w in f.windows:
            if w.runmax.size == 0:  # wholly inside the probation: nobody can detect it
                raw -= profile.a_fn
                continue
            # runmax is non-decreasing, so the first row reaching the threshold is a binary search.
            first = np.searchsorted(w.runmax, thresholds, side="left")
            hit = first < w.runmax.size
            reward = w.sigma[np.minimum(first, w.runmax.size - 1)]
            raw += np.where(hit, profile.a_tp * reward, -profile.a_fn)
            tp += hit
        count = f.fp_scores.size - np.searchsorted(f.fp_scores, thresholds, side="left")
        raw += profile.a_fp * f.fp_cost[count]
        fp += count
    n_windows = sum(len(f.windows) for f in prepared)
    return _Totals(raw, tp, fp, n_windows - tp)


def _bounds(prepared: Sequence[_Prepared], profile: Profile) -> tuple[float, float]:
    null = -profile.a_fn * sum(len(f.windows) for f in prepared)
    perfect = sum(profile.a_tp * float(w.sigma[0]) if w.sigma.size else -profile.a_fn
                  for f in prepared for w in f.windows)
    return float(null), float(perfect)


def _result(totals: _Totals, k: int, null: float, perfect: float) -> NabResult:
    raw = float(totals.raw[k])
    normalized = 100.0 * (raw - null) / (perfect - null) if perfect > null else float("nan")
    return NabResult(raw, null, perfect, normalized, int(totals.tp[k]), int(totals.fp[k]), int(totals.fn[k]))


def _check_thresholds(thresholds: npt.ArrayLike) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if np.isnan(t).any() or np.isneginf(t).any():
        raise ValueError("thresholds must be numbers above -inf")
    return t


def score_corpus(files: Sequence[NabFile], profile: Profile, threshold: float) -> NabResult:
    """NAB score of a corpus at one threshold, shared by every file.

    A window (rows 5..8, width 4) detected at its first row is what the perfect detector does:

    >>> f = NabFile("f", [0.0] * 5 + [0.9] + [0.0] * 4, [(5, 8)], probation=0)
    >>> score_corpus([f], PROFILES["standard"], threshold=0.5).normalized
    100.0
    >>> score_corpus([f], PROFILES["standard"], threshold=0.95).normalized  # silent: the null detector
    0.0
    """
    prepared = [_prepare(f) for f in files]
    null, perfect = _bounds(prepared, profile)
    return _result(_totals(prepared, profile, _check_thresholds(threshold)), 0, null, perfect)


def score_file(file: NabFile, profile: Profile, threshold: float) -> NabResult:
    """`score_corpus` of one file, for reporting a file on its own."""
    return score_corpus([file], profile, threshold)


def default_thresholds(files: Sequence[NabFile], max_candidates: int = 1000) -> np.ndarray:
    """Candidate thresholds: the distinct scores that scorable rows take (every place where the set of
    detections changes), thinned to about `max_candidates` quantiles when there are more, plus one just
    above max(1, highest score) for a detector that never fires.

    >>> default_thresholds([NabFile("f", [0.2, 0.5, 0.5, float("nan")], [], probation=0)]).tolist()
    [0.2, 0.5, 1.0000000000000002]
    """
    parts = []
    for f in files:
        s = np.asarray(f.scores, dtype=np.float64).reshape(-1)
        probation = probation_rows(s.size) if f.probation is None else max(int(f.probation), 0)
        parts.append(s[probation:])
    values = np.concatenate(parts) if parts else np.zeros(0)
    values = np.unique(values[np.isfinite(values)])
    if values.size > max_candidates:
        values = np.unique(np.quantile(values, np.linspace(0.0, 1.0, max_candidates), method="inverted_cdf"))
    top = max(1.0, float(values[-1])) if values.size else 1.0
    out: np.ndarray = np.append(values, np.nextafter(top, np.inf))
    return out


def optimize_threshold(
    files: Sequence[NabFile], profile: Profile, thresholds: npt.ArrayLike | None = None
) -> tuple[float, NabResult]:
    """The single threshold for the whole corpus with the best normalized score, and that score.

    NAB judges a detector at its best operating point, chosen once for the corpus rather than per file.
    The normalized score rises with the raw score, so the raw one is maximised (which also picks a
    threshold when there are no windows to normalise by); ties go to the highest threshold, the
    detector that fires least. Candidates default to `default_thresholds(files)`.

    >>> f = NabFile("f", [0.0] * 5 + [0.7, 0.0, 0.0, 0.0, 0.6], [(5, 8)], probation=0)
    >>> threshold, result = optimize_threshold([f], PROFILES["standard"])
    >>> threshold, result.normalized, result.fp
    (0.7, 100.0, 0)
    """
    candidates = default_thresholds(files) if thresholds is None else _check_thresholds(thresholds)
    candidates = np.unique(candidates)
    if candidates.size == 0:
        raise ValueError("no candidate thresholds")
    prepared = [_prepare(f) for f in files]
    totals = _totals(prepared, profile, candidates)
    best = int(np.flatnonzero(totals.raw == totals.raw.max())[-1])
    null, perfect = _bounds(prepared, profile)
    return float(candidates[best]), _result(totals, best, null, perfect)
