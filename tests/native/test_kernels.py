"""Kernels A-D against NumPy references and closed forms."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import native  # noqa: F401  (float64)
from native.kernels.density import density_predict, density_update, gaussian_nll, mlp_init
from native.kernels.features import Embedding, lag_embedding
from native.kernels.jump_diffusion import jd_init, jd_predict, jd_update, kappa
from native.kernels.krr import KRRState, krr_init, krr_step
from native.kernels.logsig import LOGSIG_DIM, log_signature, logsig_features, rls_init, rls_update

# --- features ---


def reference_embedding(w: np.ndarray, scale: float, lags: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = np.diff(w) / scale
    dev = (w - w.mean()) / scale
    rows, ys = [], []
    # Row for target increment u[i] (the move from w[i] to w[i+1]): the `lags` increments before it and
    # the deviation of w[i], the value the move starts from.
    for i in range(lags, len(u)):
        rows.append([*u[i - lags:i], dev[i]])
        ys.append(u[i])
    x_new = [*u[len(u) - lags:], dev[-1]]
    return np.array(rows), np.array(ys), np.array(x_new)


@pytest.mark.parametrize(("n", "lags"), [(16, 1), (16, 4), (32, 4), (32, 8), (64, 3)])
def test_lag_embedding_matches_numpy(n: int, lags: int) -> None:
    w = np.cumsum(np.random.default_rng(n + lags).standard_normal(n)) + 100.0
    emb = lag_embedding(w, 2.5, lags)
    X, y, x_new = reference_embedding(w, 2.5, lags)
    assert emb.X.shape == (n - 1 - lags, lags + 1)
    assert emb.y.shape == (n - 1 - lags,)
    assert emb.x_new.shape == (lags + 1,)
    np.testing.assert_allclose(np.asarray(emb.X), X, rtol=0, atol=1e-12)  # dev: w - mean cancels
    np.testing.assert_allclose(np.asarray(emb.y), y, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(emb.x_new), x_new, rtol=0, atol=1e-12)


# --- kernel A: KRR ---

BANDWIDTH = 1.0


def numpy_rbf(A: np.ndarray, B: np.ndarray, bandwidth: float) -> np.ndarray:
    sq = ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)
    return np.exp(-sq / (2 * bandwidth ** 2 * A.shape[1]))


def exact_krr(emb: Embedding, ridge: float) -> tuple[np.ndarray, float]:
    """Exact KRR by a dense solve: alpha = (K + ridge I)^-1 y, prediction k(x_new, X) alpha."""
    X, y, x_new = (np.asarray(a) for a in emb)
    alpha = np.linalg.solve(numpy_rbf(X, X, BANDWIDTH) + ridge * np.eye(len(y)), y)
    return alpha, float(numpy_rbf(x_new[None], X, BANDWIDTH)[0] @ alpha)


krr = jax.jit(krr_step, static_argnames=("iterations",))


@pytest.mark.parametrize(("seed", "ridge"), [(0, 0.3), (1, 1e-2), (2, 1e-3)])
def test_krr_with_enough_cg_iterations_is_exact_krr(seed: int, ridge: float) -> None:
    w = np.cumsum(np.random.default_rng(seed).standard_normal(32))
    emb = lag_embedding(w, 1.3, 4)
    state, out = krr(krr_init(27), emb, BANDWIDTH, ridge, iterations=100)
    alpha, pred = exact_krr(emb, ridge)
    assert abs(float(out.prediction) - pred) <= 1e-6
    np.testing.assert_allclose(np.asarray(state.alpha), alpha, atol=1e-6)
    assert float(out.cg_residual) < 1e-8
    fitted = numpy_rbf(np.asarray(emb.X), np.asarray(emb.X), BANDWIDTH) @ alpha
    assert float(out.scale) == pytest.approx(np.sqrt(np.mean((np.asarray(emb.y) - fitted) ** 2)), abs=1e-6)


def test_krr_warm_start_beats_a_cold_start() -> None:
    """Last tick's coefficients shifted by one sample are a better start than zeros for the next window."""
    rng = np.random.default_rng(3)
    w = np.cumsum(rng.standard_normal(33))
    prev, nxt = lag_embedding(w[:32], 1.0, 4), lag_embedding(w[1:], 1.0, 4)
    alpha_prev, _ = exact_krr(prev, 0.3)
    _, warm = krr(KRRState(jnp.asarray(alpha_prev)), nxt, BANDWIDTH, 0.3, iterations=4)
    _, cold = krr(krr_init(27), nxt, BANDWIDTH, 0.3, iterations=4)
    _, exact = exact_krr(nxt, 0.3)
    assert float(warm.cg_residual) < float(cold.cg_residual)
    assert abs(float(warm.prediction) - exact) < abs(float(cold.prediction) - exact) + 1e-12


# --- kernel D: log-signature and RLS ---


def levy_area(path: np.ndarray) -> float:
    """0.5 * sum_{i<j} (dt_i dx_j - dx_i dt_j) for a piecewise-linear path (within-segment terms cancel)."""
    d = np.diff(path, axis=0)
    dt, dx = d[:, 0], d[:, 1]
    total = 0.0
    for i in range(len(d)):
        for j in range(i + 1, len(d)):
            total += dt[i] * dx[j] - dx[i] * dt[j]
    return 0.5 * total


@pytest.mark.parametrize("seed", range(5))
def test_log_signature_depth_2_is_increment_and_levy_area(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 12))
    path = np.cumsum(rng.standard_normal((n, 2)), axis=0)
    ls = np.asarray(log_signature(path, 2))
    assert ls.shape == (3,)
    np.testing.assert_allclose(ls[:2], path[-1] - path[0], atol=1e-12)
    assert ls[2] == pytest.approx(levy_area(path), abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(a=st.floats(-5, 5), b=st.floats(-5, 5))
def test_log_signature_depth_3_of_an_l_shaped_path(a: float, b: float) -> None:
    """Right by a then up by b is exp(a e1) exp(b e2); Baker-Campbell-Hausdorff gives log =
    a e1 + b e2 + ab/2 [e1, e2] + a^2 b / 12 [e1, [e1, e2]] + a b^2 / 12 [[e1, e2], e2] + (degree >= 4),
    whose coefficients at the words 12, 112 and 122 are ab/2, a^2 b / 12 and a b^2 / 12."""
    path = np.array([[0.0, 0.0], [a, 0.0], [a, b]])
    ls = np.asarray(log_signature(path, 3))
    expected = [a, b, a * b / 2, a * a * b / 12, a * b * b / 12]
    np.testing.assert_allclose(ls, expected, atol=1e-12)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_log_signature_of_a_straight_line_has_no_higher_terms(depth: int) -> None:
    t = np.linspace(0.0, 1.0, 9)
    path = np.stack([t, 3.0 - 2.0 * t], axis=1)  # several collinear segments
    ls = np.asarray(log_signature(path, depth))
    assert ls.shape == (2 + {1: 0, 2: 1, 3: 3}[depth],)
    np.testing.assert_allclose(ls[:2], [1.0, -2.0], atol=1e-12)
    np.testing.assert_allclose(ls[2:], 0.0, atol=1e-12)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_logsig_features_shape(depth: int) -> None:
    x = logsig_features(np.arange(32.0), 1.0, 8, depth)
    assert x.shape == (1 + LOGSIG_DIM[depth],)
    assert float(x[0]) == 1.0
    assert float(x[1]) == pytest.approx(7.0)  # net change of the last 8 values, in units of scale


def numpy_rls(xs: np.ndarray, ys: np.ndarray, lam: float, prior_var: float) -> tuple[np.ndarray, np.ndarray]:
    """Textbook exponentially weighted RLS (Haykin, "Adaptive Filter Theory", ch. 10)."""
    d = xs.shape[1]
    w = np.zeros(d)
    P = prior_var * np.eye(d)
    for x, y in zip(xs, ys, strict=True):
        k = P @ x / (lam + x @ P @ x)
        w = w + k * (y - w @ x)
        P = (P - np.outer(k, x @ P)) / lam
    return w, P


@pytest.mark.parametrize("lam", [1.0, 0.99, 0.95])
def test_rls_matches_numpy_when_nothing_is_clipped(lam: float) -> None:
    rng = np.random.default_rng(int(lam * 100))
    xs = rng.standard_normal((60, 4))
    ys = xs @ np.array([0.5, -1.0, 0.2, 0.0]) + 0.1 * rng.standard_normal(60)
    update = jax.jit(functools.partial(rls_update, forgetting=lam, clip=1e6, max_trace=1e12))
    state = rls_init(4)
    for x, y in zip(xs, ys, strict=True):
        state = update(state, jnp.asarray(x), y)
    w_ref, P_ref = numpy_rls(xs, ys, lam, 1.0)
    np.testing.assert_allclose(np.asarray(state.w), w_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(state.P), P_ref, rtol=0, atol=1e-9)


def test_rls_clipped_error_bounds_one_wild_update() -> None:
    state = rls_init(3)
    x = jnp.array([1.0, 0.5, -0.2])
    wild = rls_update(state, x, 1e9, 0.99, 3.0)
    tame = rls_update(state, x, 3.0, 0.99, 3.0)  # an error of exactly the clip
    np.testing.assert_allclose(np.asarray(wild.w), np.asarray(tame.w), atol=1e-12)
    assert np.all(np.isfinite(np.asarray(wild.w)))


def test_rls_trace_is_capped() -> None:
    state = rls_init(2)
    for _ in range(200):  # no excitation in the second direction: P winds up by 1/lambda each tick
        state = rls_update(state, jnp.array([1.0, 0.0]), 0.0, 0.9, 3.0, max_trace=100.0)
    assert float(jnp.trace(state.P)) <= 100.0 + 1e-9


# --- kernel C: jump diffusion ---


def test_jump_diffusion_switches_to_implicit_when_stiff() -> None:
    state = jd_init(0.0)._replace(sxy=jnp.float64(1.5), sxx=jnp.float64(1.0))  # kappa = 1.5
    assert float(kappa(state)) == 1.5
    x, scale = 2.0, 0.5
    gap = (0.0 - x) / scale
    explicit = jd_predict(state, x, scale, 2.0)  # threshold above kappa: explicit Euler
    implicit = jd_predict(state, x, scale, 1.0)  # below: backward Euler
    assert not bool(explicit.implicit) and bool(implicit.implicit)
    assert float(explicit.prediction) == pytest.approx(1.5 * gap)
    assert float(implicit.prediction) == pytest.approx(1.5 * gap / 2.5)
    assert abs(float(explicit.prediction)) > abs(gap)  # the explicit step overshoots theta
    assert abs(float(implicit.prediction)) < abs(gap)  # the implicit one does not


@settings(max_examples=40, deadline=None)
@given(k=st.floats(0.0, 5.0), x=st.floats(-100, 100), threshold=st.floats(0.01, 3.0))
def test_implicit_step_never_overshoots(k: float, x: float, threshold: float) -> None:
    state = jd_init(0.0)._replace(sxy=jnp.float64(k), sxx=jnp.float64(1.0))
    out = jd_predict(state, x, 1.0, threshold)
    kk = min(k, 2.0)  # KAPPA_MAX
    assert bool(out.implicit) == (kk > threshold)
    gap = -x
    if bool(out.implicit):
        assert abs(float(out.prediction)) <= abs(gap) + 1e-12
        assert float(out.prediction) * gap >= 0


def test_jump_diffusion_learns_mean_reversion_and_counts_jumps() -> None:
    """On a simulated OU path kappa is recovered; rare large jumps feed the jump rate, not the diffusion."""
    rng = np.random.default_rng(0)
    true_kappa, n = 0.2, 4000
    x = np.zeros(n)
    jumps = rng.uniform(size=n) < 0.02
    for t in range(1, n):
        x[t] = x[t - 1] + true_kappa * (0.0 - x[t - 1]) + rng.standard_normal() + 20.0 * jumps[t]
    update = jax.jit(jd_update)
    state = jd_init(0.0)._replace(theta=jnp.float64(0.0))
    for t in range(1, n):
        state = update(state, x[t - 1], x[t], 1.0, 0.005, 0.0, 6.0)  # theta fixed at the true level 0
    assert float(kappa(state)) == pytest.approx(true_kappa, abs=0.08)
    assert float(state.jump_rate) == pytest.approx(0.02, abs=0.015)
    assert float(state.diff_var) == pytest.approx(1.0, abs=0.3)


def test_jump_diffusion_with_a_known_periodic_drift_recovers_kappa() -> None:
    """The same OU path plus a periodic drift s(t): given s(t), the estimates are those of the OU part
    (kappa, diffusion), and the prediction is the OU drift plus the next tick's s."""
    rng = np.random.default_rng(1)
    true_kappa, n, period = 0.2, 4000, 24
    season = 3.0 * np.sin(2 * np.pi * np.arange(n) / period)
    x, level = np.zeros(n), np.zeros(n)  # level: the OU part, without the accumulated periodic drift
    for t in range(1, n):
        level[t] = level[t - 1] + true_kappa * (0.0 - level[t - 1]) + rng.standard_normal()
        x[t] = x[t - 1] + (level[t] - level[t - 1]) + season[t]
    update = jax.jit(jd_update)
    state = jd_init(0.0)
    for t in range(1, n):
        # theta fixed at the OU part's mean, carried along with the accumulated drift
        state = update(state._replace(theta=jnp.float64(x[t - 1] - level[t - 1])), x[t - 1], x[t], 1.0, 0.005,
                       0.0, 6.0, seasonal=season[t])
    assert float(kappa(state)) == pytest.approx(true_kappa, abs=0.08)
    assert float(state.diff_var) == pytest.approx(1.0, abs=0.3)
    base = jd_predict(state, 1.0, 1.0, 10.0)
    shifted = jd_predict(state, 1.0, 1.0, 10.0, seasonal=2.5)
    assert float(shifted.prediction) == pytest.approx(float(base.prediction) + 2.5, abs=1e-12)


# --- kernel B: density network ---


def test_density_update_decreases_nll_on_a_fixed_pair() -> None:
    params = mlp_init(jax.random.PRNGKey(0), 5, 8)
    x = jnp.array([0.3, -1.0, 0.5, 0.2, -0.4])
    y = 2.0
    update = jax.jit(density_update)
    before = float(gaussian_nll(params, x, y))
    one = update(params, x, y, 1e-3)
    assert float(gaussian_nll(one, x, y)) < before
    for _ in range(300):
        params = update(params, x, y, 0.05)
    after = float(gaussian_nll(params, x, y))
    assert after < before - 1.0
    assert float(density_predict(params, x).prediction) == pytest.approx(2.0, abs=0.1)


def test_density_update_gradient_is_clipped() -> None:
    params = mlp_init(jax.random.PRNGKey(1), 3, 4)
    x = jnp.ones(3)
    new = density_update(params, x, 1e8, 0.1, clip=1.0)  # absurd target: huge gradient
    step = np.sqrt(sum(float(jnp.sum((a - b) ** 2)) for a, b in zip(new, params, strict=True)))
    assert step == pytest.approx(0.1, rel=1e-9)  # lr * clip


def test_density_entropy_is_gaussian_entropy() -> None:
    params = mlp_init(jax.random.PRNGKey(2), 3, 4)
    out = density_predict(params, jnp.array([0.1, 0.2, 0.3]))
    assert float(out.entropy) == pytest.approx(0.5 * np.log(2 * np.pi * np.e * float(out.scale) ** 2), abs=1e-12)
