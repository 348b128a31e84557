"""Change-point detection scores after van den Burg & Williams (2020), "An evaluation of change point
detection algorithms": the F1 score with a margin of tolerance and the segmentation covering, both
defined against possibly several human annotators.

A change point is the index of the first row of a new segment. Following the paper, index 0 is added
to every annotation and to the predictions: the start of the series always begins a segment, and
counting it keeps precision and recall defined for a detector that reports nothing (it then scores
P = 1 and a recall below 1 rather than 0/0). Two scores are kept because they fail differently: F1
rewards alarms close to annotated changes and ignores where segments end up; covering rewards a
partition that overlaps the annotated one and barely notices a missed change that cuts off a short
segment.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import NamedTuple

import numpy as np

__all__ = ["F1Result", "covering", "f1_score", "true_positives"]


class F1Result(NamedTuple):
    precision: float
    recall: float
    f1: float


def _with_zero(points: Iterable[int]) -> list[int]:
    return sorted({0, *(int(p) for p in points)})


def true_positives(truth: Iterable[int], predictions: Iterable[int], margin: int = 5) -> set[int]:
    """The annotated points that some prediction within `margin` accounts for.

    Each prediction may account for one annotated point only: otherwise a single alarm placed between
    two nearby annotated changes would be counted twice. Annotated points are visited in increasing
    order and each takes the closest unused prediction within the margin (the smaller index on a tie).
    Neither input gets index 0 added here; `f1_score` does that.

    >>> sorted(true_positives([10, 12, 40], [11, 47], margin=5))
    [10]
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    unused = sorted({int(x) for x in predictions})
    found: set[int] = set()
    for tau in sorted({int(t) for t in truth}):
        near = unused[bisect_left(unused, tau - margin) : bisect_right(unused, tau + margin)]
        if near:
            unused.remove(min(near, key=lambda x: (abs(tau - x), x)))
            found.add(tau)
    return found


def f1_score(annotations: Sequence[Sequence[int]], predictions: Sequence[int], margin: int = 5) -> F1Result:
    """F1 of `predictions` against K annotators' change points, each within `margin` rows.

    Precision is judged against the union of the annotations (an alarm is right if any annotator saw a
    change there), recall is averaged over annotators (each annotator's changes should be found), as in
    the paper. Index 0 is added to every set.

    >>> f1_score([[50]], [52])
    F1Result(precision=1.0, recall=1.0, f1=1.0)
    >>> f1_score([[50]], [60])
    F1Result(precision=0.5, recall=0.5, f1=0.5)
    """
    if not annotations:
        raise ValueError("need at least one annotator's change points (an empty list of them is allowed)")
    sets = [_with_zero(a) for a in annotations]
    preds = _with_zero(predictions)
    union = sorted(set().union(*sets))
    precision = len(true_positives(union, preds, margin)) / len(preds)
    recall = float(np.mean([len(true_positives(t, preds, margin)) / len(t) for t in sets]))
    f1 = 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)
    return F1Result(precision=float(precision), recall=recall, f1=float(f1))


def _boundaries(points: Iterable[int], n: int) -> np.ndarray:
    """Segment starts in [0, n) with 0 included, then n: segment k is [b[k], b[k+1])."""
    inside = {int(p) for p in points if 0 <= int(p) < n}
    return np.array([*sorted({0, *inside}), n], dtype=np.int64)


def _covering_one(truth: np.ndarray, pred: np.ndarray, n: int) -> float:
    total = 0.0
    for a0, a1 in pairwise(truth):
        # Only predicted segments that overlap [a0, a1) can have a non-zero Jaccard index with it.
        lo = int(np.searchsorted(pred, a0, side="right")) - 1
        hi = int(np.searchsorted(pred, a1, side="left"))
        b0, b1 = pred[lo:hi], pred[lo + 1 : hi + 1]
        inter = np.minimum(b1, a1) - np.maximum(b0, a0)
        union = (a1 - a0) + (b1 - b0) - inter
        total += float(a1 - a0) * float(np.max(inter / union))
    return total / n


def covering(annotations: Sequence[Sequence[int]], predictions: Sequence[int], n: int) -> float:
    """Covering of each annotator's partition of rows [0, n) by the predicted one, averaged over annotators.

    Each annotated segment A contributes |A| times its best Jaccard index with any predicted segment,
    divided by n, so long segments weigh more (Arbelaez et al. 2011, as used by the paper). Points
    outside [0, n), in the annotations as well as the predictions, are dropped, and duplicates removed.

    >>> covering([[50]], [], n=100)  # each half is covered half by the single predicted segment
    0.5
    >>> covering([[50]], [50], n=100)
    1.0
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not annotations:
        raise ValueError("need at least one annotator's change points (an empty list of them is allowed)")
    pred = _boundaries(predictions, n)
    return float(np.mean([_covering_one(_boundaries(a, n), pred, n) for a in annotations]))
