"""Running many series' ticks through `orchestrate_step_batch` without recompiling.

A micro-batch holds a few ticks of many series. Ticks of one series must be applied in order, so the
batch is cut into rounds (round r holds the r-th tick of every series that has one), and each round is
padded up to one of a few bucket sizes: JAX compiles once per shape, so a handful of buckets compiled
at start-up cover every batch, and no compile ever lands on a message's latency.

Between rounds, states live on the host as encoded rows of one uint8 matrix (`models.state.state_rows`).
A round takes its series' rows, turns them into a stacked batch column by column (one NumPy view per
state leaf, not per series), makes one compiled call, fetches the output once per leaf and writes it
back into the rows: no per-series pytree anywhere on the way.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from models.config import PredictorConfig
from models.state import (
    SeriesState,
    batch_to_rows,
    fresh_rows,
    rows_to_batch,
    state_from_bytes,
    state_rows,
    state_to_bytes,
)
from models.step import Observation, orchestrate_step_batch

#: Powers of 4 up to 64, then of 2: a round of 300 series padded to 1,024 rows cost 43 µs per real tick
#: against 26 at 512 (`usp bench`'s 300-series drain), for two more compiles at warm-up.
BUCKETS: tuple[int, ...] = (1, 4, 16, 64, 128, 256, 512, 1024)


def bucket_for(n: int) -> int:
    """Smallest bucket that holds n rows (n <= BUCKETS[-1]).

    >>> bucket_for(1), bucket_for(5), bucket_for(1024)
    (1, 16, 1024)
    """
    return BUCKETS[bisect.bisect_left(BUCKETS, n)]


def warm_up(config: PredictorConfig) -> dict[int, float]:
    """Compile every bucket now, at worker start, rather than on the first message of each size.

    Returns the seconds each bucket took (compile, or a load from JAX's persistent cache, plus one call).
    """
    seconds: dict[int, float] = {}
    for size in BUCKETS:
        start = time.perf_counter()
        obs = Observation(np.zeros(size, np.int64), np.zeros(size, np.float64))
        jax.block_until_ready(orchestrate_step_batch(rows_to_batch(fresh_rows(size, config), config), obs, config))
        seconds[size] = time.perf_counter() - start
    return seconds


@dataclass(frozen=True, slots=True)
class TickOutcome:
    """Result of one tick, as plain Python numbers (see `models.step.StepResult`).

    prediction/lower/upper/weights are the forecast for the series' next tick; for a refused tick they
    are the series' standing forecast. degraded is the series' degraded flag after this tick.
    """

    accepted: bool
    reason: int
    prediction: float
    lower: float
    upper: float
    mode: int
    anomaly_score: float
    weights: tuple[float, float, float, float]
    regime_change: bool
    cusum: float
    cusum_threshold: float
    degraded: bool


_COLUMNS = ("accepted", "reason", "prediction", "lower", "upper", "mode", "anomaly_score", "weights",
            "regime_change", "cusum", "cusum_threshold", "degraded")


def _outcomes(columns: Sequence[Any], n: int) -> list[TickOutcome]:
    """TickOutcomes from host arrays of the result fields in _COLUMNS order: one `tolist` per column."""
    cols = [np.asarray(c)[:n].tolist() for c in columns]
    cols[_COLUMNS.index("weights")] = [tuple(w) for w in cols[_COLUMNS.index("weights")]]
    return [TickOutcome(*row) for row in zip(*cols, strict=True)]


def run_round(states: Sequence[SeriesState], ts_ns: Sequence[int], values: Sequence[float],
              config: PredictorConfig) -> tuple[list[SeriesState], list[TickOutcome]]:
    """Apply one tick to each of len(states) distinct series (`run_round_rows` on their encodings).

    Returns every series' state after its tick (accepted or not: a refusal still moves the ingest
    counters) and the tick's outcome, in input order.
    """
    rows, _ = state_rows([state_to_bytes(s) for s in states], config)
    outcomes, _ = run_round_rows(rows, range(len(states)), ts_ns, values, config)
    return [state_from_bytes(row.tobytes(), config) for row in rows], outcomes


def run_round_rows(rows: np.ndarray, active: Sequence[int] | range, ts_ns: Sequence[int], values: Sequence[float],
                   config: PredictorConfig) -> tuple[list[TickOutcome], np.ndarray]:
    """`run_round` on encoded states: one tick to each series whose row index is in `active` (distinct),
    updating those rows of `rows` (a `models.state.state_rows` matrix) in place. Returns the outcomes in
    input order and the rows as they were before the tick (the copy the step was fed anyway; a refusal's
    or an alarm's message reads it).

    The worker's path: states go from the table's bytes to the compiled step and back column by column,
    with no per-series pytree in between.
    """
    outcomes: list[TickOutcome] = []
    before: list[np.ndarray] = []
    top = BUCKETS[-1]
    for start in range(0, len(active), top):
        idx = np.asarray(active[start:start + top], dtype=np.intp)
        n = len(idx)
        size = bucket_for(n)
        chunk = rows[idx] if size == n else np.concatenate([rows[idx], fresh_rows(size - n, config)])
        before.append(chunk[:n])
        ts = np.zeros(size, np.int64)
        vals = np.zeros(size, np.float64)
        ts[:n] = ts_ns[start:start + n]
        vals[:n] = values[start:start + n]
        batch, result = orchestrate_step_batch(rows_to_batch(chunk, config), Observation(ts, vals), config)
        # Fetch what is needed (the diagnostics the worker does not publish stay behind). On CPU,
        # np.asarray per leaf costs half of jax.device_get's per-leaf async-copy bookkeeping.
        batch, columns = jax.tree_util.tree_map(np.asarray, (batch, [getattr(result, name) for name in _COLUMNS]))
        rows[idx] = batch_to_rows(batch, n, config)
        outcomes.extend(_outcomes(columns, n))
    return outcomes, (before[0] if len(before) == 1 else np.concatenate(before))
