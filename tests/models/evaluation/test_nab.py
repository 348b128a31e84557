"""NAB-style scoring: hand-derived cases, a row-by-row reference scorer, and threshold search against
a brute-force search over the same candidates."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.evaluation.nab import (
    PROFILES,
    NabFile,
    NabResult,
    Profile,
    default_thresholds,
    optimize_threshold,
    probation_rows,
    scaled_sigmoid,
    score_corpus,
    score_file,
)

STD = PROFILES["standard"]
NAN = float("nan")


def sig(y: float) -> float:
    return 2.0 / (1.0 + math.exp(min(5.0 * y, 700.0))) - 1.0


SIG_START = sig(-1.0)  # ~0.98661: the reward of detecting at a window's first row


def file_with(detections: list[int], n: int = 20, windows: tuple[tuple[int, int], ...] = ((10, 13),),
              probation: int = 0) -> NabFile:
    scores = np.zeros(n)
    scores[detections] = 1.0
    return NabFile("f", scores, list(windows), probation)


def test_profiles() -> None:
    assert Profile(1.0, 0.11, 1.0, 1.0) == STD
    assert PROFILES["reward_low_FP_rate"].a_fp == 0.22
    assert PROFILES["reward_low_FN_rate"].a_fn == 2.0
    with pytest.raises(TypeError):
        PROFILES["mine"] = STD  # type: ignore[index]


def test_scaled_sigmoid() -> None:
    assert scaled_sigmoid(0.0) == 0.0
    assert float(scaled_sigmoid(-1.0)) == pytest.approx(0.98661, abs=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(scaled_sigmoid(1e6)) == -1.0
        assert float(scaled_sigmoid(-1e6)) == 1.0


def test_probation_rows() -> None:
    assert [probation_rows(n) for n in (0, 10, 20, 100, 4999, 5000, 20_000)] == [0, 1, 3, 15, 749, 750, 750]


def test_detection_at_the_window_start_is_perfect() -> None:
    # window rows 10..13 (w = 4); detection at row 10: y = -(13 - 10 + 1)/4 = -1
    r = score_corpus([file_with([10])], STD, 0.5)
    assert r.raw == pytest.approx(SIG_START)
    assert (r.null, r.perfect) == (-1.0, pytest.approx(SIG_START))
    assert r.normalized == pytest.approx(100.0)
    assert (r.tp, r.fp, r.fn) == (1, 0, 0)


def test_no_detection_is_the_null_detector() -> None:
    r = score_corpus([file_with([])], STD, 0.5)
    assert (r.raw, r.normalized, r.tp, r.fp, r.fn) == (-1.0, 0.0, 0, 0, 1)


def test_detection_at_the_window_end() -> None:
    # row 13: y = -(13 - 13 + 1)/4 = -1/4
    r = score_corpus([file_with([13])], STD, 0.5)
    assert r.raw == pytest.approx(sig(-0.25))
    assert r.normalized == pytest.approx(100 * (sig(-0.25) + 1) / (SIG_START + 1))


def test_false_positive_before_any_window_costs_a_fp() -> None:
    # miss (-1) plus one FP before the window (-0.11)
    r = score_corpus([file_with([3])], STD, 0.5)
    assert r.raw == pytest.approx(-1.0 - 0.11)
    assert (r.tp, r.fp, r.fn) == (1 - 1, 1, 1)


def test_false_positive_after_a_window_is_discounted() -> None:
    # row 14, right after the window ending at 13: y = |13 - 14| / (4 - 1); sigma(1/3) ~ -0.683
    r = score_corpus([file_with([10, 14])], STD, 0.5)
    assert r.raw == pytest.approx(SIG_START + 0.11 * sig(1 / 3))
    # row 19: y = 6/3 = 2, close to the full cost
    r = score_corpus([file_with([10, 19])], STD, 0.5)
    assert r.raw == pytest.approx(SIG_START + 0.11 * sig(2.0))
    assert r.fp == 1


def test_false_positive_after_a_one_row_window() -> None:
    # w - 1 = 0: the distance is measured in rows instead (y = 1 at the next row)
    r = score_corpus([file_with([10, 11], windows=((10, 10),))], STD, 0.5)
    assert r.raw == pytest.approx(SIG_START + 0.11 * sig(1.0))


def test_the_latest_window_sets_the_discount() -> None:
    # windows 2..3 (w=2) and 10..13 (w=4); FP at 6 is 3 rows past the first window: y = 3/1
    r = score_corpus([file_with([2, 6, 10], windows=((10, 13), (2, 3)))], STD, 0.5)
    assert r.raw == pytest.approx(2 * SIG_START + 0.11 * sig(3.0))
    assert (r.tp, r.fp, r.fn) == (2, 1, 0)


def test_only_the_first_detection_in_a_window_counts() -> None:
    # rows 11 and 12: the first one, y = -(13 - 11 + 1)/4 = -3/4, and nothing for row 12
    r = score_corpus([file_with([11, 12])], STD, 0.5)
    assert r.raw == pytest.approx(sig(-0.75))
    assert (r.tp, r.fp, r.fn) == (1, 0, 0)


def test_profiles_weigh_misses_and_false_positives() -> None:
    low_fn, low_fp = PROFILES["reward_low_FN_rate"], PROFILES["reward_low_FP_rate"]
    r = score_corpus([file_with([3])], low_fn, 0.5)
    assert (r.raw, r.null) == (pytest.approx(-2.0 - 0.11), -2.0)
    assert r.normalized == pytest.approx(100 * (-0.11) / (SIG_START + 2.0))
    r = score_corpus([file_with([3])], low_fp, 0.5)
    assert r.raw == pytest.approx(-1.0 - 0.22)


def test_detections_in_probation_are_ignored() -> None:
    # probation 5: the detection at row 3 is neither a TP nor a FP
    r = score_corpus([file_with([3], probation=5)], STD, 0.5)
    assert (r.raw, r.tp, r.fp, r.fn) == (-1.0, 0, 0, 1)
    # window 2..6 (w = 5) straddling the probation: row 3 is ignored, the perfect detector fires at
    # row 5, y = -(6 - 5 + 1)/5 = -2/5
    straddle = ((2, 6),)
    r = score_corpus([file_with([3], windows=straddle, probation=5)], STD, 0.5)
    assert (r.raw, r.perfect, r.fn) == (-1.0, pytest.approx(sig(-0.4)), 1)
    r = score_corpus([file_with([3, 5], windows=straddle, probation=5)], STD, 0.5)
    assert r.normalized == pytest.approx(100.0)


def test_window_inside_probation_is_neutral() -> None:
    # the window 1..2 is a miss for everyone (-1 in raw, null and perfect alike)
    f = file_with([1, 10], windows=((1, 2), (10, 13)), probation=5)
    r = score_corpus([f], STD, 0.5)
    assert (r.raw, r.null, r.perfect) == (pytest.approx(SIG_START - 1), -2.0, pytest.approx(SIG_START - 1))
    assert r.normalized == pytest.approx(100.0)
    assert math.isnan(score_corpus([file_with([1], windows=((1, 2),), probation=5)], STD, 0.5).normalized)


def test_default_probation() -> None:
    # n = 100: probation 15 rows, so a detection at row 10 is ignored
    f = NabFile("f", np.eye(1, 100, 10)[0], [(50, 59)])
    assert score_corpus([f], STD, 0.5).fp == 0
    f = NabFile("f", np.eye(1, 100, 20)[0], [(50, 59)])
    assert score_corpus([f], STD, 0.5).fp == 1


def test_nan_scores_never_detect() -> None:
    f = NabFile("f", np.full(20, NAN), [(10, 13)], 0)
    assert score_corpus([f], STD, 0.0).raw == -1.0
    with pytest.raises(ValueError):
        score_corpus([f], STD, NAN)


def test_windows_are_clipped_and_checked() -> None:
    # window 18..25 in a 20-row file becomes 18..19 (w = 2); 30..40 lies outside and is dropped
    r = score_corpus([file_with([18], windows=((18, 25), (30, 40)))], STD, 0.5)
    assert (r.raw, r.null, r.tp, r.fn) == (pytest.approx(SIG_START), -1.0, 1, 0)
    with pytest.raises(ValueError, match="overlap"):
        score_corpus([file_with([], windows=((2, 5), (5, 8)))], STD, 0.5)
    with pytest.raises(ValueError, match="before it starts"):
        score_corpus([file_with([], windows=((5, 2),))], STD, 0.5)


def test_no_windows() -> None:
    r = score_corpus([file_with([3, 4], windows=())], STD, 0.5)
    assert (r.raw, r.null, r.perfect, r.fp) == (pytest.approx(-0.22), 0.0, 0.0, 2)
    assert math.isnan(r.normalized)
    t, r = optimize_threshold([file_with([3, 4], windows=())], STD)
    assert t > 1.0 and r.raw == 0.0


def test_corpus_sums_files() -> None:
    a, b = file_with([10]), file_with([3])
    ra, rb, both = score_file(a, STD, 0.5), score_file(b, STD, 0.5), score_corpus([a, b], STD, 0.5)
    assert both.raw == pytest.approx(ra.raw + rb.raw)
    assert (both.null, both.perfect) == (-2.0, pytest.approx(2 * SIG_START))
    assert (both.tp, both.fp, both.fn) == (1, 1, 1)


def reference(file: NabFile, profile: Profile, threshold: float) -> tuple[float, int, int, int]:
    """Row-by-row NAB scoring, the slow and obvious way: (raw, tp, fp, fn)."""
    scores = np.asarray(file.scores, dtype=float)
    n = scores.size
    probation = probation_rows(n) if file.probation is None else file.probation
    windows = sorted((max(s, 0), min(e, n - 1)) for s, e in file.windows if s < n)
    detected = [False] * len(windows)
    raw, fp = 0.0, 0
    for i in range(probation, n):
        if not scores[i] >= threshold:
            continue
        inside = [k for k, (s, e) in enumerate(windows) if s <= i <= e]
        if inside:
            k = inside[0]
            if not detected[k]:
                detected[k] = True
                s, e = windows[k]
                raw += profile.a_tp * sig(-(e - i + 1) / (e - s + 1))
            continue
        fp += 1
        before = [(s, e) for s, e in windows if e < i]
        if before:
            s, e = before[-1]
            raw += profile.a_fp * sig(abs(e - i) / max(e - s, 1))
        else:
            raw -= profile.a_fp
    fn = detected.count(False)
    return raw - profile.a_fn * fn, len(windows) - fn, fp, fn


@st.composite
def nab_files(draw: st.DrawFn) -> NabFile:
    n = draw(st.integers(1, 60))
    values = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, NAN])
    scores = np.array(draw(st.lists(values, min_size=n, max_size=n)))
    cuts = sorted(draw(st.sets(st.integers(0, n + 3), max_size=6)))
    windows = [(cuts[k], cuts[k + 1] - 1) for k in range(0, len(cuts) - 1, 2) if cuts[k] < cuts[k + 1] - 1]
    probation = draw(st.none() | st.integers(0, n))
    return NabFile("h", scores, windows, probation)


@settings(max_examples=200, deadline=None)
@given(st.lists(nab_files(), min_size=1, max_size=3), st.sampled_from(list(PROFILES)),
       st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0]))
def test_matches_the_row_by_row_reference(files: list[NabFile], profile_name: str, threshold: float) -> None:
    profile = PROFILES[profile_name]
    r = score_corpus(files, profile, threshold)
    ref = [reference(f, profile, threshold) for f in files]
    assert r.raw == pytest.approx(sum(x[0] for x in ref), abs=1e-9)
    assert (r.tp, r.fp, r.fn) == tuple(sum(x[k] for x in ref) for k in (1, 2, 3))
    assert r.raw <= r.perfect + 1e-9
    if not math.isnan(r.normalized):
        assert r.normalized <= 100.0 + 1e-9


@settings(max_examples=100, deadline=None)
@given(st.lists(nab_files(), min_size=1, max_size=3), st.sampled_from(list(PROFILES)))
def test_threshold_search_matches_brute_force(files: list[NabFile], profile_name: str) -> None:
    profile = PROFILES[profile_name]
    threshold, result = optimize_threshold(files, profile)
    candidates = default_thresholds(files)
    brute = [sum(reference(f, profile, t)[0] for f in files) for t in candidates]
    best = max(brute)
    assert result.raw == pytest.approx(best, abs=1e-9)
    again = score_corpus(files, profile, threshold)
    assert result._replace(normalized=0.0) == again._replace(normalized=0.0)
    assert result.normalized == again.normalized or (math.isnan(result.normalized) and math.isnan(again.normalized))
    # ties go to the highest threshold
    assert threshold == max(t for t, b in zip(candidates, brute, strict=True) if b >= best - 1e-9)


def test_threshold_search_prefers_silence_over_noise() -> None:
    # the detector fires only before the window (and has no score elsewhere): never firing is best
    f = NabFile("f", np.where(np.arange(20) < 5, 0.9, NAN), [(10, 13)], 0)
    t, r = optimize_threshold([f], STD)
    assert t > 1.0 and r == NabResult(-1.0, -1.0, r.perfect, 0.0, 0, 0, 1)
    assert r.perfect == pytest.approx(SIG_START)


def test_explicit_thresholds() -> None:
    f = NabFile("f", [0.0] * 10 + [0.6, 0.9] + [0.0] * 8, [(10, 13)], 0)
    t, r = optimize_threshold([f], STD, thresholds=[0.95, 0.8, 0.5])
    assert t == 0.5 and r.normalized == pytest.approx(100.0)
    with pytest.raises(ValueError):
        optimize_threshold([f], STD, thresholds=[])


def test_default_thresholds_are_thinned() -> None:
    rng = np.random.default_rng(0)
    f = NabFile("f", rng.random(5_000), [(100, 200)], 0)
    t = default_thresholds([f])
    assert t.size <= 1001
    assert t[0] == f.scores.min() and t[-2] == f.scores.max() and t[-1] > 1.0  # type: ignore[union-attr]
    assert np.all(np.isin(t[:-1], f.scores))
