"""Back-testing: a whole series through `orchestrate_step` in one compiled `lax.scan`.

The scan runs the very step the workers run, tick by tick, so a back-test shows what production would
have said. Row t's forecast columns are the forecast made after row t-1, i.e. only from earlier rows
(the first row has none). Long series go in chunks (the state carries over), so memory stays bounded
and progress can be reported; each chunk size compiles once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from models.config import PredictorConfig
from models.evaluation.metrics import forecast_scores, naive_scale
from models.state import SeriesState, init_state
from models.step import REASON_OK, Observation, orchestrate_step

CHUNK = 65_536


class BacktestResult(NamedTuple):
    """Per input row (NumPy arrays of length n). prediction/lower/upper/weights: the forecast for this
    row, made from earlier rows (NaN on the first row); the rest describe the tick of this row."""

    prediction: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    weights: np.ndarray
    anomaly_score: np.ndarray
    regime_change: np.ndarray
    mode: np.ndarray
    reason: np.ndarray
    cusum: np.ndarray
    cusum_threshold: np.ndarray
    kernel_predictions: np.ndarray | None
    compile_s: float
    run_s: float


class _Tick(NamedTuple):
    prediction: Any
    lower: Any
    upper: Any
    weights: Any
    anomaly_score: Any
    regime_change: Any
    mode: Any
    reason: Any
    cusum: Any
    cusum_threshold: Any
    kernel_predictions: Any


@functools.cache
def _scan(config: PredictorConfig, kernels: bool) -> Any:  # a jitted function (has .lower)
    def body(state: SeriesState, obs: tuple[Any, Any]) -> tuple[SeriesState, _Tick]:
        state, r = orchestrate_step(state, Observation(*obs), config)
        # Only what a back-test reports leaves the loop: every output costs a write per tick.
        return state, _Tick(r.prediction, r.lower, r.upper, r.weights, r.anomaly_score, r.regime_change,
                            r.mode, r.reason, r.cusum, r.cusum_threshold,
                            r.kernel_predictions if kernels else None)

    return jax.jit(lambda state, ts, xs: jax.lax.scan(body, state, (ts, xs)))


def backtest(ts_ns: np.ndarray, values: np.ndarray, config: PredictorConfig | None = None,
             progress: Callable[[int, int], None] | None = None, chunk: int = CHUNK,
             kernels: bool = False) -> BacktestResult:
    """Run one series (epoch-ns timestamps, float values) from a fresh state. With `kernels`, also
    each kernel's own forecast per row (for evaluation; it costs throughput).

    >>> import numpy as np
    >>> r = backtest(np.arange(1, 101), np.sin(np.arange(100) / 5.0))
    >>> len(r.prediction), bool(np.isnan(r.prediction[0])), bool(np.all(r.lower[1:] <= r.upper[1:]))
    (100, True, True)
    """
    cfg = config or PredictorConfig()
    ts = np.ascontiguousarray(ts_ns, dtype=np.int64)
    xs = np.ascontiguousarray(values, dtype=np.float64)
    n = len(xs)
    state = init_state(cfg)
    parts: list[_Tick] = []
    compile_s = run_s = 0.0
    compiled: dict[int, Any] = {}
    scan = _scan(cfg, kernels)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        size = stop - start
        if size not in compiled:
            t0 = time.perf_counter()
            compiled[size] = scan.lower(state, ts[start:stop], xs[start:stop]).compile()
            compile_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        state, ticks = compiled[size](state, ts[start:stop], xs[start:stop])
        ticks = jax.tree_util.tree_map(np.asarray, ticks)
        run_s += time.perf_counter() - t0
        parts.append(ticks)
        if progress is not None:
            progress(stop, n)
    if not parts:
        empty = np.zeros(0)
        return BacktestResult(empty, empty, empty, np.zeros((0, 4)), empty, np.zeros(0, bool),
                              np.zeros(0, np.int32), np.zeros(0, np.int32), empty, empty, None, 0.0, 0.0)
    cols = _Tick(*(None if c[0] is None else np.concatenate(c) for c in zip(*parts, strict=True)))

    def shifted(a: np.ndarray) -> np.ndarray:
        out = np.empty_like(a, dtype=np.float64)
        out[0] = np.nan
        out[1:] = a[:-1]
        return out

    return BacktestResult(
        prediction=shifted(cols.prediction), lower=shifted(cols.lower), upper=shifted(cols.upper),
        weights=shifted(cols.weights), anomaly_score=cols.anomaly_score, regime_change=cols.regime_change,
        mode=cols.mode, reason=cols.reason, cusum=cols.cusum, cusum_threshold=cols.cusum_threshold,
        kernel_predictions=None if cols.kernel_predictions is None else shifted(cols.kernel_predictions),
        compile_s=compile_s, run_s=run_s,
    )


def summarize(values: np.ndarray, result: BacktestResult, warmup_steps: int) -> dict[str, float | int | None]:
    """rows, ticks_per_s (compiled run time only), coverage, mae, mase and naive_mae over the rows after
    warm-up that have a forecast, regime_changes, refused (rows the ingest checks refused).

    `mase` scales the MAE by the series' in-sample naive error (mean |y[t] - y[t-1]|, as `usp evaluate`
    does; None for a constant series) and `naive_mae` is the last value's error on the same rows, so an
    analyst's own file says at once whether USP beats the simplest forecast on it.

    >>> import numpy as np
    >>> x = np.sin(np.arange(300) / 5.0)
    >>> s = summarize(x, backtest(np.arange(1, 301), x), 40)
    >>> s["rows"], 0.0 <= s["coverage"] <= 1.0, s["mae"] < s["naive_mae"]
    (300, True, True)
    """
    n = len(values)
    start = warmup_steps + 1
    scale = naive_scale(values)
    scores = forecast_scores(values, result.prediction, result.lower, result.upper, scale=scale, start=start)
    last = np.concatenate([[np.nan], np.asarray(values, dtype=np.float64)[:-1]])
    naive = forecast_scores(values, last, None, None, scale=scale, start=start)
    return {
        "rows": n,
        "ticks_per_s": round(n / result.run_s, 1) if result.run_s > 0 else 0.0,
        "coverage": round(scores.coverage, 4),
        "mae": scores.mae,
        "mase": round(scores.mase, 4) if np.isfinite(scores.mase) else None,
        "naive_mae": naive.mae,
        "regime_changes": int(np.sum(result.regime_change)),
        "refused": int(np.sum(result.reason != REASON_OK)),
    }
