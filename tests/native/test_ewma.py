import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import native  # noqa: F401
from native.ewma import ewm_debias, ewm_init, ewm_update


def reference_ewm(xs: list[float], alpha: float) -> tuple[float, float]:
    """Exponentially weighted mean and (biased) variance from explicit weights (NumPy, no recursion)."""
    n = len(xs)
    w = np.array([(1 - alpha) ** (n - 1)] + [alpha * (1 - alpha) ** (n - 1 - i) for i in range(1, n)])
    x = np.asarray(xs)
    mean = float(np.sum(w * x))
    var = float(np.sum(w * (x - mean) ** 2))
    return mean, var


floats = st.floats(-1e6, 1e6, allow_nan=False)


@given(st.lists(floats, min_size=1, max_size=40), st.floats(0.01, 1.0))
def test_recursion_matches_explicit_weights(xs: list[float], alpha: float) -> None:
    m = ewm_init(xs[0])
    for x in xs[1:]:
        m = ewm_update(m, x, alpha)
    mean, var = reference_ewm(xs, alpha)
    scale = max(1.0, max(abs(x) for x in xs))
    assert abs(float(m.mean) - mean) <= 1e-9 * scale
    assert abs(float(m.var) - var) <= 1e-9 * scale * scale


@given(st.lists(floats, min_size=1, max_size=40), st.floats(0.01, 1.0))
def test_mean_stays_in_hull_and_variance_nonnegative(xs: list[float], alpha: float) -> None:
    m = ewm_init(xs[0])
    for x in xs[1:]:
        m = ewm_update(m, x, alpha)
    assert min(xs) - 1e-6 <= float(m.mean) <= max(xs) + 1e-6
    assert float(m.var) >= 0.0


def test_debias_recovers_constant_after_any_number_of_updates() -> None:
    alpha = 0.1
    acc = 0.0
    for n in range(1, 30):
        acc = acc + alpha * (4.0 - acc)  # EWMA from 0 of a constant 4
        assert abs(float(ewm_debias(acc, n, alpha)) - 4.0) < 1e-12
    assert float(ewm_debias(0.0, 0, alpha)) == 0.0
