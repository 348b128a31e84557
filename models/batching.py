"""Running many series' ticks through the vmapped `orchestrate_step` without recompiling.

A micro-batch holds a few ticks of many series. Ticks of one series must be applied in order, so the
batch is cut into rounds (round r holds the r-th tick of every series that has one), and each round is
padded up to one of a few bucket sizes: JAX compiles once per shape, so a handful of buckets compiled
at start-up cover every batch, and no compile ever lands on a message's latency.

Between rounds, states live on the host as encoded rows of one uint8 matrix (`models.state.state_rows`).
A round hands its series' rows to one compiled call that decodes them, steps and encodes them again
inside XLA (`decode_rows_traced`, `encode_rows_traced`), and returns the new rows and one float64
matrix of outcomes: three arrays in and two out, not one per state leaf (56 of them), and no
per-series pytree anywhere on the way. Measured in-process (`run_round_rows`, 30 rounds, best of 3,
alternating runs): 52-63 -> 24-27 µs per series-tick for rounds of 40 series, 15.5-20 -> 13-16 at
500-1,000.
"""

from __future__ import annotations

import bisect
import functools
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from models.config import PredictorConfig
from models.state import (
    N_KERNELS,
    SeriesState,
    decode_rows_traced,
    encode_rows_traced,
    fresh_rows,
    state_from_bytes,
    state_rows,
    state_to_bytes,
)
from models.step import Observation, StepResult, orchestrate_step

#: Powers of 4 up to 64, then of 2: a round of 300 series padded to 1,024 rows cost 43 µs per real tick
#: against 26 at 512 (`usp bench`'s 300-series drain), for two more compiles at warm-up.
BUCKETS: tuple[int, ...] = (1, 4, 16, 64, 128, 256, 512, 1024)
#: A compiled call's fixed cost in rows: about a quarter of a millisecond, at about 8 µs per row (`usp
#: bench`'s step figures), so `split_round` makes another call only where that saves more padding rows.
CALL_COST_ROWS = 32
#: Ticks of one series per compiled scan (`run_series_rows`): a multiple of what makes the scan pay.
SERIES_SCAN = 32


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
    step = _compiled_rows(config)
    for size in BUCKETS:
        start = time.perf_counter()
        rows = np.ascontiguousarray(fresh_rows(size, config))
        jax.block_until_ready(step(rows, np.zeros(size, np.int64), np.zeros(size, np.float64)))
        seconds[size] = time.perf_counter() - start
    start = time.perf_counter()
    run_series_rows(fresh_rows(1, config)[0], [1], [0.0], config)
    seconds[-SERIES_SCAN] = time.perf_counter() - start  # the one-series scan, keyed apart from the buckets
    return seconds


def _columns(result: StepResult) -> jax.Array:
    # Every field the worker reads, as one float64 matrix: one transfer and one `tolist` per round.
    # Flags and codes are small integers, exact in float64.
    f64 = jnp.float64
    return jnp.concatenate([
        jnp.stack([result.accepted.astype(f64), result.reason.astype(f64), result.prediction, result.lower,
                   result.upper, result.mode.astype(f64), result.anomaly_score], axis=1),
        result.weights.astype(f64),
        jnp.stack([result.regime_change.astype(f64), result.cusum, result.cusum_threshold,
                   result.degraded.astype(f64)], axis=1),
    ], axis=1)


@functools.cache
def _compiled_rows(config: PredictorConfig) -> Any:
    """The vmapped step from encoded rows to encoded rows and the outcome matrix, compiled once per
    (config, bucket): the state crosses into XLA as one uint8 matrix, not one array per leaf."""
    step = jax.vmap(functools.partial(orchestrate_step, config=config))

    def run(rows: jax.Array, ts: jax.Array, values: jax.Array) -> tuple[jax.Array, jax.Array]:
        batch, result = step(decode_rows_traced(rows, config), Observation(ts, values))
        return encode_rows_traced(batch, rows, config), _columns(result)

    return jax.jit(run)


@functools.cache
def _compiled_series(config: PredictorConfig) -> Any:
    """`SERIES_SCAN` ticks of one series (rows of shape (1, width)) in one `lax.scan`, with a mask for
    the padding ticks (they leave the row as it was). Returns the row after them and, per tick, the
    row before it and the outcome matrix."""
    step = jax.vmap(functools.partial(orchestrate_step, config=config))

    def body(rows: jax.Array, tick: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, Any]:
        ts, values, real = tick
        batch, result = step(decode_rows_traced(rows, config), Observation(ts, values))
        return jnp.where(real[:, None], encode_rows_traced(batch, rows, config), rows), (rows, _columns(result))

    def run(rows: jax.Array, ts: jax.Array, values: jax.Array, real: jax.Array) -> tuple[jax.Array, Any]:
        return jax.lax.scan(body, rows, (ts, values, real))

    return jax.jit(run)


def run_series_rows(row: np.ndarray, ts_ns: Sequence[int], values: Sequence[float],
                    config: PredictorConfig) -> tuple[list[TickOutcome], np.ndarray, np.ndarray]:
    """Many ticks of one series from its encoded state `row`: (outcomes, the rows before each tick
    (n x width), the row after the last).

    The round path makes one compiled call per tick of a series, about half a millisecond at any
    bucket: a micro-batch of a few busy series (one fast sensor, `usp run`'s two demo series) was all
    call overhead. Here their ticks go through one scan per `SERIES_SCAN`, which XLA emits as one
    compiled loop (see `native`): 12-33 µs per tick against 580-720 for the rounds of one series,
    measured in-process. The outputs agree with the round path's to float64 rounding (the loop's code
    is generated apart from the per-op code; about 1e-13 relative).
    """
    step = _compiled_series(config)
    current = np.ascontiguousarray(row[None, :])
    outcomes: list[TickOutcome] = []
    before: list[np.ndarray] = [np.empty((0, len(row)), row.dtype)]  # no ticks: no rows before any
    for start in range(0, len(ts_ns), SERIES_SCAN):
        k = min(SERIES_SCAN, len(ts_ns) - start)
        ts = np.zeros((SERIES_SCAN, 1), np.int64)
        vals = np.zeros((SERIES_SCAN, 1), np.float64)
        real = np.zeros((SERIES_SCAN, 1), bool)
        ts[:k, 0] = ts_ns[start:start + k]
        vals[:k, 0] = values[start:start + k]
        real[:k] = True
        new, (rows_before, matrix) = step(current, ts, vals, real)
        current = np.asarray(new)
        before.append(np.asarray(rows_before)[:k, 0])
        outcomes.extend(_outcomes(np.asarray(matrix)[:k, 0], k))
    return outcomes, np.concatenate(before), current[0].copy()


class TickOutcome(NamedTuple):
    """Result of one tick, as plain Python numbers (see `models.step.StepResult`).

    prediction/lower/upper/weights are the forecast for the series' next tick; for a refused tick they
    are the series' standing forecast. degraded is the series' degraded flag after this tick.

    A NamedTuple rather than a dataclass: the worker makes one per observation, and a round's are built
    from the outcome matrix's columns in C (`_outcomes`), not field by field in Python.
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


#: Columns of `_columns`' matrix that `_outcomes` and `run_round_rows` read by position.
_ACCEPTED, _REASON, _MODE, _W0 = 0, 1, 5, 7
_REGIME = _W0 + N_KERNELS
_DEGRADED = _REGIME + 3


def _outcomes(matrix: np.ndarray, n: int) -> list[TickOutcome]:
    """TickOutcomes from the first n rows of `_columns`' matrix: each column converted once (flags to
    bools, codes to ints), the rows zipped together in C."""
    m = matrix[:n]
    flags = (m[:, [_ACCEPTED, _REGIME, _DEGRADED]] != 0).T.tolist()
    codes = m[:, [_REASON, _MODE]].astype(np.int64).T.tolist()
    cols = m.T.tolist()
    weights = list(zip(*cols[_W0:_REGIME], strict=True))
    return list(map(TickOutcome._make, zip(flags[0], codes[0], cols[2], cols[3], cols[4], codes[1], cols[6],
                                            weights, flags[1], cols[_REGIME + 1], cols[_REGIME + 2], flags[2],
                                            strict=True)))


def run_round(states: Sequence[SeriesState], ts_ns: Sequence[int], values: Sequence[float],
              config: PredictorConfig) -> tuple[list[SeriesState], list[TickOutcome]]:
    """Apply one tick to each of len(states) distinct series (`run_round_rows` on their encodings).

    Returns every series' state after its tick (accepted or not: a refusal still moves the ingest
    counters) and the tick's outcome, in input order.
    """
    rows, _ = state_rows([state_to_bytes(s) for s in states], config)
    outcomes, _ = run_round_rows(rows, range(len(states)), ts_ns, values, config)
    return [state_from_bytes(row.tobytes(), config) for row in rows], outcomes


def split_round(n: int, buckets: Sequence[int] | None = None) -> tuple[int, ...]:
    """The bucket sizes that one contiguous round of n series is stepped in, largest first: whole
    largest buckets, then the split of the rest with the fewest padding rows plus `CALL_COST_ROWS` per
    call. Only the last call is padded.

    >>> split_round(175), split_round(200), split_round(300), split_round(1000), split_round(2100)
    ((128, 64), (256,), (256, 64), (1024,), (1024, 1024, 64))
    """
    sizes = tuple(BUCKETS if buckets is None else buckets)
    whole, rest = divmod(n, sizes[-1])
    return (sizes[-1],) * whole + (_split_rest(sizes)[rest] if rest else ())


@functools.cache
def _split_rest(buckets: tuple[int, ...]) -> list[tuple[int, ...]]:
    """For every n below the largest bucket, its cheapest split (a small dynamic programme)."""
    best: list[tuple[int, tuple[int, ...]]] = [(0, ())]
    for n in range(1, buckets[-1]):
        best.append(min((b + CALL_COST_ROWS + best[max(n - b, 0)][0], (b, *best[max(n - b, 0)][1]))
                        for b in buckets))
    return [tuple(sorted(split, reverse=True)) for _, split in best]


class RoundChunk(NamedTuple):
    """One compiled call's share of a round (`round_chunks`): the outcomes of the round's ticks from
    position `start` on, and the rows that its refused or alarmed ticks met, by position."""

    start: int
    outcomes: list[TickOutcome]
    before: dict[int, np.ndarray]


def round_chunks(rows: np.ndarray, first: int, n: int, ts_ns: Sequence[int], values: Sequence[float],
                 config: PredictorConfig) -> Iterator[RoundChunk]:
    """One tick to each of the series in rows[first:first + n] (`run_round_rows`' contiguous case), in
    the calls `split_round` chooses, all dispatched before the first result is read. Each chunk's rows
    are written back as it is yielded.

    Why a generator: JAX returns from a call before XLA has computed it, so while the caller handles
    one chunk's outcomes (a worker's predictions), XLA computes the next. The worker's micro-batches
    under backlog hold about 180 series, a round of 128 + 64 rows instead of 256: in-process,
    `PredictProcessor.process` took 23-24 µs of wall time per observation against 28-30 in one call.

    No write-back touches rows that a dispatched call still reads: only the last call is padded, by
    the rows after the round's, and the calls' real rows are disjoint.
    """
    step = _compiled_rows(config)
    calls: list[tuple[int, int, np.ndarray, Any, Any]] = []
    start = 0
    for size in split_round(n):
        k = min(size, n - start)
        lo = first + start
        if lo + size <= len(rows):
            chunk = rows[lo:lo + size]
        else:
            chunk = np.concatenate([rows[lo:lo + k], fresh_rows(size - k, config)])
        ts = np.zeros(size, np.int64)
        vals = np.zeros(size, np.float64)
        ts[:k] = ts_ns[start:start + k]
        vals[:k] = values[start:start + k]
        new_rows, matrix = step(np.ascontiguousarray(chunk), ts, vals)
        calls.append((start, k, chunk, new_rows, matrix))
        start += k
    for start, k, chunk, new_rows, matrix in calls:
        m = np.asarray(matrix)[:k]
        # Before the write below overwrites them (chunk is a view of rows): the rows a refusal's or an
        # alarm's message will read.
        before = {start + j: chunk[j].copy()
                  for j in np.flatnonzero((m[:, _ACCEPTED] == 0) | (m[:, _REGIME] != 0)).tolist()}
        rows[first + start:first + start + k] = np.asarray(new_rows)[:k]
        yield RoundChunk(start, _outcomes(m, k), before)


def run_round_rows(rows: np.ndarray, active: range, ts_ns: Sequence[int], values: Sequence[float],
                   config: PredictorConfig) -> tuple[list[TickOutcome], dict[int, np.ndarray]]:
    """`run_round` on encoded states: one tick to each series whose row index is in `active` (a range of
    step 1), updating those rows of `rows` (a `models.state.state_rows` matrix) in place. Returns the
    outcomes in input order and, for each tick that was refused or raised an alarm (whose message reads
    the state it met), the row as it was before the tick, keyed by the tick's position in the input.

    The worker's path: states go from the table's bytes to the compiled step and back as rows (decoded
    and encoded inside XLA), with no per-series pytree in between. The worker orders its series so that
    every round is a range, so the round's rows are a slice of `rows`: no gather before the step nor
    scatter after it, and where `rows` extends past the round (the worker's `spare` rows, or series idle
    this round) those rows pad the last call instead of copies of a fresh state; a padding row's
    results are dropped. This is `round_chunks`, collected (the worker iterates it itself).
    """
    if active.step != 1:
        raise ValueError(f"a round's rows must be consecutive, not {active!r}")
    outcomes: list[TickOutcome] = []
    before: dict[int, np.ndarray] = {}
    for part in round_chunks(rows, active.start, len(active), ts_ns, values, config):
        outcomes.extend(part.outcomes)
        before.update(part.before)
    return outcomes, before
