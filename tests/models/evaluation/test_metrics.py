"""Forecast metrics: hand-computed cases, NaN handling and a few properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.evaluation.metrics import ForecastScores, coverage, forecast_scores, mae, mase, naive_scale, winkler

NAN = float("nan")

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


def test_mae_skips_rows_without_a_prediction() -> None:
    # |2-1| + |3-5| + |4-4| over the three predicted rows
    assert mae([1.0, 2.0, 3.0, 4.0], [NAN, 1.0, 5.0, 4.0]) == pytest.approx(1.0)


def test_mae_skips_rows_without_an_observation() -> None:
    assert mae([NAN, 2.0], [1.0, 4.0]) == pytest.approx(2.0)


def test_mae_nan_when_nothing_to_score() -> None:
    assert math.isnan(mae([1.0, 2.0], [NAN, NAN]))
    assert math.isnan(mae([], []))


def test_misaligned_arrays_are_rejected() -> None:
    with pytest.raises(ValueError, match="aligned"):
        mae([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="aligned"):
        coverage([1.0, 2.0], [0.0, 0.0], [3.0])


def test_naive_scale_hand_cases() -> None:
    assert naive_scale([1.0, 4.0, 2.0]) == pytest.approx(2.5)  # (3 + 2) / 2
    assert naive_scale([5.0, NAN, NAN, 7.0]) == pytest.approx(2.0)  # the gap is bridged by the last value
    assert naive_scale([3.0, 3.0, 3.0]) == 0.0
    assert math.isnan(naive_scale([NAN, 1.0]))
    assert math.isnan(naive_scale([]))


def test_mase_is_mae_over_scale_and_nan_without_a_scale() -> None:
    y, yhat = [1.0, 2.0, 3.0, 4.0], [NAN, 1.0, 5.0, 4.0]
    assert mase(y, yhat, 0.5) == pytest.approx(2.0)
    for bad in (0.0, NAN, math.inf):
        assert math.isnan(mase(y, yhat, bad))


def test_coverage_bounds_are_inclusive_and_nan_rows_skipped() -> None:
    y = [1.0, 3.0, 5.0, 2.0, 7.0]
    lo = [1.0, 0.0, 0.0, NAN, 0.0]
    hi = [2.0, 3.0, 4.0, 9.0, 9.0]
    # rows 0 (on the lower edge), 1 (on the upper edge) and 4 in; row 2 out; row 3 not scored
    assert coverage(y, lo, hi) == pytest.approx(3 / 4)
    assert math.isnan(coverage([1.0], [NAN], [2.0]))


def test_winkler_hand_cases() -> None:
    lo, hi = [1.0], [3.0]
    assert winkler([2.0], lo, hi, alpha=0.1) == pytest.approx(2.0)  # inside: the width
    assert winkler([0.0], lo, hi, alpha=0.1) == pytest.approx(2.0 + 20.0 * 1.0)  # 1 below
    assert winkler([4.5], lo, hi, alpha=0.1) == pytest.approx(2.0 + 20.0 * 1.5)  # 1.5 above
    assert winkler([0.0, 2.0, NAN], [1.0, 1.0, 0.0], [3.0, 3.0, 1.0], alpha=0.5) == pytest.approx((6.0 + 2.0) / 2)


def test_winkler_rejects_bad_alpha() -> None:
    for alpha in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="alpha"):
            winkler([1.0], [0.0], [2.0], alpha=alpha)


def test_forecast_scores_from_start_row() -> None:
    y = np.array([10.0, 1.0, 2.0, 4.0, 3.0])
    yhat = np.array([0.0, NAN, 1.0, 2.0, 4.0])
    lo = np.array([0.0, NAN, 0.0, 1.0, 2.0])
    hi = np.array([0.0, NAN, 3.0, 3.0, 5.0])
    s = forecast_scores(y, yhat, lo, hi, scale=2.0, start=1, alpha=0.5)
    # rows 2..4: errors 1, 2, 1; intervals [0,3] in, [1,3] 1 below 4 (score 2 + 4*1), [2,5] in
    assert isinstance(s, ForecastScores)
    assert s.n == 3
    assert s.mae == pytest.approx(4 / 3)
    assert s.mase == pytest.approx(2 / 3)
    assert s.coverage == pytest.approx(2 / 3)
    assert s.winkler == pytest.approx((3.0 + 6.0 + 3.0) / 3)


def test_forecast_scores_without_interval() -> None:
    s = forecast_scores([1.0, 2.0], [1.0, 1.0], None, None, scale=1.0)
    assert (s.n, s.mae, s.mase) == (2, 0.5, 0.5)
    assert math.isnan(s.coverage) and math.isnan(s.winkler)


def test_forecast_scores_with_nothing_predicted() -> None:
    s = forecast_scores([1.0, 2.0], [NAN, NAN], [NAN, NAN], [NAN, NAN], scale=1.0)
    assert s.n == 0
    assert all(math.isnan(v) for v in (s.mae, s.mase, s.coverage, s.winkler))


def test_forecast_scores_rejects_negative_start() -> None:
    with pytest.raises(ValueError, match="start"):
        forecast_scores([1.0], [1.0], None, None, scale=1.0, start=-1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(finite, finite, st.floats(0, 1e3)), min_size=1, max_size=40),
       st.floats(0.01, 0.99))
def test_winkler_at_least_the_width_and_coverage_a_fraction(rows: list[tuple[float, float, float]],
                                                            alpha: float) -> None:
    y = np.array([r[0] for r in rows])
    lo = np.array([r[1] for r in rows])
    hi = lo + np.array([r[2] for r in rows])
    assert winkler(y, lo, hi, alpha) >= np.mean(hi - lo) - 1e-9
    assert 0.0 <= coverage(y, lo, hi) <= 1.0
    # an interval that contains every observation covers all of them and scores just its width
    wide_lo, wide_hi = np.minimum(lo, y), np.maximum(hi, y)
    assert coverage(y, wide_lo, wide_hi) == 1.0
    assert winkler(y, wide_lo, wide_hi, alpha) == pytest.approx(np.mean(wide_hi - wide_lo))


@settings(max_examples=100, deadline=None)
@given(st.lists(finite, min_size=2, max_size=50))
def test_naive_forecast_has_mase_one(values: list[float]) -> None:
    y = np.array(values)
    scale = naive_scale(y)
    naive = np.concatenate([[NAN], y[:-1]])  # row 0 has no previous value, so no forecast
    if scale == 0:
        assert math.isnan(mase(y, naive, scale))
    else:
        assert mase(y, naive, scale) == pytest.approx(1.0)
        assert forecast_scores(y, naive, None, None, scale).n == y.size - 1
