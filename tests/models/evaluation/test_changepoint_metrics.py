"""F1 and covering after van den Burg & Williams (2020): hand-derived cases, several annotators, and
properties against a brute-force covering over explicit row sets."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.evaluation.changepoint_metrics import F1Result, covering, f1_score, true_positives


def test_close_prediction_is_perfect() -> None:
    # T = {0, 50}, X = {0, 52}: both matched, P = 2/2, R = 2/2
    assert f1_score([[50]], [52], margin=5) == F1Result(1.0, 1.0, 1.0)


def test_far_prediction_is_half_right() -> None:
    # T = {0, 50}, X = {0, 60}: only 0 matched, P = 1/2, R = 1/2, F1 = 1/2
    assert f1_score([[50]], [60], margin=5) == pytest.approx((0.5, 0.5, 0.5))


def test_margin_is_inclusive() -> None:
    assert f1_score([[50]], [55], margin=5).f1 == 1.0
    assert f1_score([[50]], [44], margin=5).f1 == pytest.approx(0.5)


def test_no_prediction() -> None:
    # X = {0}: P = 1/1, R = 1/2, F1 = 2 * 0.5 / 1.5
    assert f1_score([[50]], []) == pytest.approx((1.0, 0.5, 2 / 3))


def test_nothing_to_find_and_nothing_found_is_perfect() -> None:
    assert f1_score([[]], []) == F1Result(1.0, 1.0, 1.0)
    assert covering([[]], [], n=10) == 1.0


def test_zero_is_not_counted_twice() -> None:
    assert f1_score([[0, 50]], [0, 50, 50]) == F1Result(1.0, 1.0, 1.0)


def test_one_prediction_matches_one_annotation() -> None:
    # T = {0, 50, 53}, X = {0, 51}: 0-0 and 50-51 matched, 53 left. P = 2/2, R = 2/3, F1 = 0.8
    assert f1_score([[50, 53]], [51]) == pytest.approx((1.0, 2 / 3, 0.8))


def test_closest_prediction_is_the_match() -> None:
    # 50 takes 52 (closer than 46), 46 is then unmatched: P = 2/3, R = 2/2
    assert true_positives([50], [46, 52]) == {50}
    assert f1_score([[50]], [46, 52]) == pytest.approx((2 / 3, 1.0, 0.8))
    # the point left unused by the first annotated point goes to the next one
    assert true_positives([10, 14], [12, 17], margin=3) == {10, 14}


def test_several_annotators() -> None:
    # union {0, 50, 80} vs X = {0, 51}: P = 2/2; recall (2/2 + 2/3) / 2 = 5/6; F1 = 2 (5/6) / (11/6)
    assert f1_score([[50], [50, 80]], [51]) == pytest.approx((1.0, 5 / 6, 10 / 11))
    # annotators disagreeing by two rows: the union has 20 and 22 but one alarm fits one of them
    # union TP {0, 20} of X = {0, 21}: P = 1; each annotator fully found: R = 1
    assert f1_score([[20], [22]], [21]) == F1Result(1.0, 1.0, 1.0)


def test_f1_needs_an_annotator() -> None:
    with pytest.raises(ValueError):
        f1_score([], [3])
    with pytest.raises(ValueError, match="margin"):
        true_positives([1], [1], margin=-1)


def test_covering_hand_cases() -> None:
    # G = {[0,50), [50,100)}, G' = {[0,100)}: each half has Jaccard 50/100
    assert covering([[50]], [], n=100) == pytest.approx(0.5)
    # G = {[0,100)}, G' = {[0,50), [50,100)}: best Jaccard 1/2
    assert covering([[]], [50], n=100) == pytest.approx(0.5)
    assert covering([[50]], [50], n=100) == 1.0
    # G' = {[0,60), [60,100)}: [0,50) best 50/60, [50,100) best with [60,100) 40/50
    assert covering([[50]], [60], n=100) == pytest.approx((50 * 50 / 60 + 50 * 0.8) / 100)


def test_covering_drops_points_outside_the_series_and_duplicates() -> None:
    assert covering([[50]], [-3, 50, 100, 150, 50], n=100) == 1.0
    assert covering([[50, 120]], [50], n=100) == 1.0


def test_covering_averages_annotators() -> None:
    assert covering([[50], []], [50], n=100) == pytest.approx((1.0 + 0.5) / 2)


def test_covering_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        covering([[1]], [1], n=0)
    with pytest.raises(ValueError):
        covering([], [1], n=10)


def brute_covering(truth: list[int], pred: list[int], n: int) -> float:
    def parts(points: list[int]) -> list[set[int]]:
        cuts = [*sorted({0, *(p for p in points if 0 <= p < n)}), n]
        return [set(range(a, b)) for a, b in pairwise(cuts)]

    return sum(len(a) * max(len(a & b) / len(a | b) for b in parts(pred)) for a in parts(truth)) / n


@st.composite
def series_and_points(draw: st.DrawFn) -> tuple[int, list[list[int]], list[int]]:
    n = draw(st.integers(1, 80))
    points = st.lists(st.integers(-5, n + 5), max_size=8)
    return n, draw(st.lists(points, min_size=1, max_size=3)), draw(points)


@settings(max_examples=200, deadline=None)
@given(series_and_points(), st.integers(0, 6))
def test_scores_are_fractions_and_perfect_prediction_scores_one(
    case: tuple[int, list[list[int]], list[int]], margin: int
) -> None:
    n, annotations, pred = case
    f = f1_score(annotations, pred, margin)
    assert all(0.0 <= v <= 1.0 for v in f)
    c = covering(annotations, pred, n)
    assert 0.0 <= c <= 1.0 + 1e-12
    expected = sum(brute_covering(a, pred, n) for a in annotations) / len(annotations)
    assert c == pytest.approx(expected)
    for truth in annotations:
        assert f1_score([truth], truth, margin) == F1Result(1.0, 1.0, 1.0)
        assert covering([truth], truth, n) == pytest.approx(1.0)
