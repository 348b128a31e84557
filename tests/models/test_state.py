"""SeriesState: config-dependent shapes, byte encoding with a layout fingerprint, stacking."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import pytest

from models.config import CusumConfig, KernelsConfig, OrchestrationConfig, PredictorConfig
from models.state import (
    N_KERNELS,
    SeriesState,
    StateLayoutError,
    init_state,
    stack_states,
    state_bytes,
    state_from_bytes,
    state_to_bytes,
    unstack_state,
)
from native.kernels.logsig import LOGSIG_DIM

CFG = PredictorConfig()
W16 = PredictorConfig(orchestration=OrchestrationConfig(window=16))
W64 = PredictorConfig(orchestration=OrchestrationConfig(window=64))


def leaves_with_paths(state: Any) -> list[tuple[str, np.ndarray]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(state)
    return [(jax.tree_util.keystr(path), np.asarray(leaf)) for path, leaf in flat]


def randomised(state: SeriesState, seed: int = 0) -> SeriesState:
    """Every leaf replaced by distinct random content of the same dtype and shape (extremes included)."""
    rng = np.random.default_rng(seed)

    def fill(leaf: Any) -> np.ndarray:
        a = np.asarray(leaf)
        if np.issubdtype(a.dtype, np.floating):
            top = int(np.log10(np.finfo(a.dtype).max)) - 1  # float64 leaves up to 1e300, float32 up to 1e37
            out = rng.standard_normal(a.shape) * 10.0 ** rng.integers(-top, top, size=a.shape)
            return out.astype(a.dtype)
        return rng.integers(-(2 ** 62), 2 ** 62, size=a.shape).astype(a.dtype)

    out: SeriesState = jax.tree_util.tree_map(fill, state)
    return out


@pytest.mark.parametrize("cfg", [CFG, W16, W64], ids=["w32", "w16", "w64"])
def test_round_trip_keeps_every_nested_leaf_exactly(cfg: PredictorConfig) -> None:
    state = randomised(init_state(cfg), seed=cfg.orchestration.window)
    state = state._replace(last_ts=np.int64(1_700_000_000_123_456_789), last_value=np.float64(1e300),
                           lower=np.float64(-0.1), spread=np.float64(5e-324))
    data = state_to_bytes(state)
    assert len(data) == state_bytes(cfg)
    back = state_from_bytes(data, cfg)
    assert str(jax.tree_util.tree_structure(back)) == str(jax.tree_util.tree_structure(state))
    original = leaves_with_paths(state)
    decoded = leaves_with_paths(back)
    assert [p for p, _ in original] == [p for p, _ in decoded]
    assert any("mlp" in p for p, _ in original) and any("cusum" in p for p, _ in original)  # nested
    for (path, a), (_, b) in zip(original, decoded, strict=True):
        assert a.dtype == b.dtype, path
        assert a.shape == b.shape, path
        assert a.tobytes() == b.tobytes(), path
        assert b.flags.writeable, path  # decoded leaves are owned copies, not views of the bytes


def test_round_trip_keeps_nan_and_inf_bits() -> None:
    state = init_state()._replace(prediction=np.float64(np.nan), upper=np.float64(np.inf),
                                  lower=np.float64(-np.inf), log_mult=np.float64(-0.0))
    back = state_from_bytes(state_to_bytes(state))
    assert np.isnan(back.prediction) and back.upper == np.inf and back.lower == -np.inf
    assert np.signbit(back.log_mult)


@pytest.mark.parametrize("cfg", [CFG, W16, W64], ids=["w32", "w16", "w64"])
def test_state_is_small(cfg: PredictorConfig) -> None:
    assert len(state_to_bytes(init_state(cfg))) == state_bytes(cfg) <= 4096


def test_shapes_follow_the_config() -> None:
    k = KernelsConfig(krr_lags=3, density_hidden=5, logsig_depth=3, logsig_points=6)
    cfg = PredictorConfig(orchestration=OrchestrationConfig(window=16), kernels=k)
    s = init_state(cfg)
    assert s.window.shape == (16,)
    assert s.krr.alpha.shape == (16 - 1 - 3,)  # one coefficient per training row of the lag embedding
    assert s.mlp.w1.shape == (3 + 2, 5)  # lags, distance from the mean, seasonal increment
    assert s.mlp.w2.shape == (5, 2)
    assert s.feat_b.shape == (3 + 2,)
    assert s.rls.w.shape == s.feat_d.shape == (2 + LOGSIG_DIM[3],)  # bias, log-signature, seasonal
    assert s.rls.P.shape == (2 + LOGSIG_DIM[3],) * 2
    assert s.season.profile.shape == (cfg.orchestration.season_bins,)
    assert s.rho.shape == s.f.shape == s.g.shape == s.kernel_loss.shape == (N_KERNELS,)
    assert s.disagreement.shape == (N_KERNELS, N_KERNELS)


def test_fresh_state() -> None:
    s = init_state(CFG)
    assert int(s.n_obs) == 0 and int(s.rejected) == 0 and int(s.last_ts) == -1
    assert s.last_ts.dtype == np.int64
    np.testing.assert_array_equal(s.rho, np.full(N_KERNELS, 1.0 / N_KERNELS))
    np.testing.assert_array_equal(s.rls.P, np.eye(s.rls.P.shape[0]))
    for path, leaf in leaves_with_paths(s):
        assert isinstance(leaf, np.ndarray), path
        assert np.all(np.isfinite(leaf)), path
    # The same seed gives every series the same initial network; another seed another one.
    seeded = init_state(PredictorConfig(orchestration=OrchestrationConfig(seed=1)))
    assert not np.array_equal(seeded.mlp.w1, s.mlp.w1)
    np.testing.assert_array_equal(init_state(PredictorConfig()).mlp.w1, s.mlp.w1)


def test_state_written_under_another_window_is_refused() -> None:
    data = state_to_bytes(init_state(CFG))  # window = 32
    with pytest.raises(StateLayoutError):
        state_from_bytes(data, W16)
    with pytest.raises(StateLayoutError):
        state_from_bytes(state_to_bytes(init_state(W16)), CFG)


def test_same_size_but_other_layout_is_refused_by_the_fingerprint() -> None:
    """lags 7, hidden 4, depth 3 encodes to exactly as many bytes as the defaults (lags 4, hidden 8,
    depth 2) with different shapes: only the fingerprint can tell them apart."""
    other = PredictorConfig(kernels=KernelsConfig(krr_lags=7, density_hidden=4, logsig_depth=3))
    assert state_bytes(other) == state_bytes(CFG)
    with pytest.raises(StateLayoutError, match="different layout"):
        state_from_bytes(state_to_bytes(init_state(CFG)), other)
    with pytest.raises(StateLayoutError, match="different layout"):
        state_from_bytes(state_to_bytes(init_state(other)), CFG)
    good = state_to_bytes(init_state(CFG))
    forged = good[:4] + bytes(8) + good[12:]  # right size, wrong fingerprint
    with pytest.raises(StateLayoutError, match="different layout"):
        state_from_bytes(forged, CFG)


def test_corrupt_or_truncated_bytes_are_refused() -> None:
    good = state_to_bytes(init_state())
    with pytest.raises(StateLayoutError):
        state_from_bytes(good[:-1])
    with pytest.raises(StateLayoutError):
        state_from_bytes(good + b"\x00")
    with pytest.raises(StateLayoutError):
        state_from_bytes(b"XXXX" + good[4:])
    with pytest.raises(StateLayoutError):
        state_from_bytes(b"")


def test_config_changes_that_keep_the_layout_keep_the_state() -> None:
    data = state_to_bytes(init_state(CFG))
    other = PredictorConfig(orchestration=OrchestrationConfig(jko_tau=0.3, warmup_steps=5),
                            cusum=CusumConfig(h=8.0))
    back = state_from_bytes(data, other)
    assert int(back.last_ts) == -1


def test_stack_pads_with_fresh_states_and_unstacks() -> None:
    a = randomised_small(1)
    b = randomised_small(2)
    batch = stack_states([a, b], 4, W16)
    assert batch.window.shape == (4, 16)
    assert batch.mlp.w1.shape[0] == 4
    assert batch.n_obs.tolist()[2:] == [0, 0]
    for i, expected in enumerate([a, b, init_state(W16), init_state(W16)]):
        got = unstack_state(batch, i)
        for (path, x), (_, y) in zip(leaves_with_paths(expected), leaves_with_paths(got), strict=True):
            assert x.dtype == y.dtype and np.array_equal(x, y), (i, path)
    # A decoded unstacked state round-trips through bytes too.
    assert state_to_bytes(unstack_state(batch, 1)) == state_to_bytes(b)


def randomised_small(seed: int) -> SeriesState:
    return randomised(init_state(W16), seed)._replace(n_obs=np.int64(seed))


def test_stack_without_size_does_not_pad() -> None:
    batch = stack_states([init_state(), init_state()])
    assert batch.n_obs.shape == (2,)


def test_row_codecs_match_the_per_series_codec() -> None:
    """`state_rows` -> `rows_to_batch` -> `batch_to_rows` gives back every series' `state_to_bytes`, and
    the stacked batch equals `stack_states` of the decoded states; a missing state is a fresh one and
    bytes of another layout are reported and replaced by a fresh one."""
    from models.state import batch_to_rows, rows_to_batch, state_rows

    rng = np.random.default_rng(2)
    states = [init_state()._replace(n_obs=np.int64(i), window=rng.normal(size=32), unit=np.float64(i + 0.5))
              for i in range(4)]
    raws = [state_to_bytes(s) for s in states]
    rows, unusable = state_rows([*raws, None, raws[0][:-1], b"x" * len(raws[0])])
    assert unusable == [5, 6]
    fresh = state_to_bytes(init_state())
    back = batch_to_rows(rows_to_batch(rows), len(rows))
    assert [r.tobytes() for r in back] == [*raws, fresh, fresh, fresh]
    stacked = stack_states([state_from_bytes(r) for r in raws])
    leaves = jax.tree_util.tree_leaves(rows_to_batch(rows[:4]))
    for a, b in zip(leaves, jax.tree_util.tree_leaves(stacked), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_one_leaf_read_from_rows_equals_that_leaf_of_the_batch() -> None:
    """`rows_leaf` reads a leaf's columns alone; every leaf agrees with the whole `rows_to_batch`."""
    from models.state import rows_leaf, rows_to_batch, state_rows

    rng = np.random.default_rng(3)
    states = [init_state()._replace(window=rng.normal(size=32), ingest=init_state().ingest._replace(
        degraded=np.int64(i % 2), flat_max=np.int64(i))) for i in range(5)]
    rows, _ = state_rows([state_to_bytes(s) for s in states])
    batch = rows_to_batch(rows)
    for pick in (lambda s: s.ingest.degraded, lambda s: s.ingest.flat_max, lambda s: s.window,
                 lambda s: s.season.profile, lambda s: s.mlp.w1):
        got, want = rows_leaf(rows, pick), np.asarray(pick(batch))
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert rows_leaf(rows, lambda s: s.ingest.degraded).tolist() == [0, 1, 0, 1, 0]


def test_compiled_row_codec_matches_the_numpy_one_bit_for_bit() -> None:
    """`decode_rows_traced` / `encode_rows_traced` (the worker's compiled path) against `rows_to_batch` /
    `batch_to_rows`, on rows whose every byte after the header is random (every leaf and dtype: float64,
    int64, the float32 season profile and the int32 bin count), compared byte for byte."""
    from models.config import PredictorConfig
    from models.state import batch_to_rows, decode_rows_traced, encode_rows_traced, rows_to_batch, state_rows

    cfg = PredictorConfig()
    rows, _ = state_rows([None] * 5, cfg)
    header = len(rows[0]) - sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(init_state(cfg)))
    rows[:, header:] = np.random.default_rng(4).integers(0, 256, size=(5, rows.shape[1] - header), dtype=np.uint8)
    decoded = jax.jit(lambda r: decode_rows_traced(r, cfg))(rows)
    leaves = jax.tree_util.tree_leaves(rows_to_batch(rows, cfg))
    assert {leaf.dtype.str for leaf in leaves} == {"<f8", "<i8", "<f4", "<i4"}
    for a, b in zip(jax.tree_util.tree_leaves(decoded), leaves, strict=True):
        got = np.asarray(a)
        assert got.dtype == b.dtype and got.shape == b.shape
        assert got.tobytes() == np.ascontiguousarray(b).tobytes()
    encoded = jax.jit(lambda r: encode_rows_traced(decode_rows_traced(r, cfg), r, cfg))(rows)
    assert np.array_equal(np.asarray(encoded), rows)
    assert np.array_equal(np.asarray(encoded), batch_to_rows(rows_to_batch(rows, cfg), len(rows), cfg))
