"""Per-series state: a fixed-shape pytree of arrays, and its byte encoding for a Faust table.

Fixed shapes let `orchestrate_step_batch` vmap over many series and make the encoding a plain
concatenation of leaves. Shapes depend on the config (window length, lags, hidden units, signature
depth), so the encoding starts with a fingerprint of the layout: a worker that meets state written
under another layout refuses it (and starts the series afresh) instead of misreading it.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

import native  # noqa: F401  (float64 on before any array is made)
from models.config import PredictorConfig
from native.cusum import CusumState
from native.ewma import EwmKurtosis
from native.kernels.density import MLPParams, mlp_init
from native.kernels.jump_diffusion import JumpDiffusionState
from native.kernels.krr import KRRState
from native.kernels.logsig import LOGSIG_DIM, RLSState
from native.season import SeasonState, season_init

#: A pytree leaf: a NumPy array or scalar between ticks, a jax.Array inside a traced step.
Leaf = Any

N_KERNELS = 4


class IngestState(NamedTuple):
    """degraded: 1 while the series is in degraded mode; clean_run: accepted ticks in a row (for
    hysteresis); frozen_run: identical values in a row; outlier_run: outliers refused in a row;
    outlier_ts: when the current run of outliers began (a level shift is learnt as starting there);
    seen_ts: the last tick's ts, refused or not (stale ones aside): the stream's own sampling step;
    flat_max: the longest run of identical values (in values) the series has come out of by itself,
    shorter than its season: a flat spell it is known to have."""

    degraded: Leaf
    clean_run: Leaf
    frozen_run: Leaf
    outlier_run: Leaf
    outlier_ts: Leaf
    seen_ts: Leaf
    flat_max: Leaf


class SeriesState(NamedTuple):
    """What USP remembers about one series between ticks.

    n_obs, rejected: accepted and refused observations. last_ts (epoch ns, -1 before the first) and
    last_value: of the last accepted one. window: the last `window` accepted values, oldest first.
    vol_short, vol_long: EWMA of squared increments (value units squared).
    ingest: input-check counters. krr, mlp, jd, rls: kernel A-D states. feat_b, feat_d: the inputs
    kernels B and D predicted from, kept to train them once the next value arrives.
    kernel_pred: each kernel's predicted next increment, in units of `unit`; kernel_loss: EWMA of each
    kernel's squared error (same units); disagreement: EWMA of squared differences between kernels'
    predictions, the transport cost between them. rho: fusion weights; f, g: Sinkhorn potentials (warm start).
    resid: moments of the standardised residual (for kurtosis). cusum: CUSUM sums and grace counter.
    log_mult: log of the conformal width multiplier. unit: the volatility unit predictions were made in.
    surprise: the decaying envelope of recent evidence behind anomaly_score (see orchestrate_step).
    range_lo, range_hi: the least and greatest accepted value so far. range_beyond_at: the tick count
    (accepted and refused, replays aside) when a value last fell beyond that range (0: never).
    season: the seasonal profile of increments by phase of the series' day, week or year (a kernel input).
    season_fit: EWMA of (s u, s s), the seasonal input s against the increment u that followed it (volatility
    units): their ratio is how much of the profile the series follows (the season's gain, in [0, 1]).
    spread: the fused predictive standard deviation in units of `unit`.
    prediction, lower, upper: the forecast for the next tick. alarms: regime changes so far.
    """

    n_obs: Leaf
    rejected: Leaf
    last_ts: Leaf
    last_value: Leaf
    window: Leaf
    vol_short: Leaf
    vol_long: Leaf
    ingest: IngestState
    krr: KRRState
    mlp: MLPParams
    jd: JumpDiffusionState
    rls: RLSState
    feat_b: Leaf
    feat_d: Leaf
    kernel_pred: Leaf
    kernel_loss: Leaf
    disagreement: Leaf
    rho: Leaf
    f: Leaf
    g: Leaf
    resid: EwmKurtosis
    cusum: CusumState
    log_mult: Leaf
    surprise: Leaf
    range_lo: Leaf
    range_hi: Leaf
    range_beyond_at: Leaf
    season: SeasonState
    season_fit: Leaf
    unit: Leaf
    spread: Leaf
    prediction: Leaf
    lower: Leaf
    upper: Leaf
    alarms: Leaf


@functools.cache
def _template(config: PredictorConfig) -> SeriesState:
    # Built from jnp values (typed as the native states expect), then held as NumPy between ticks.
    o, k = config.orchestration, config.kernels
    f = jnp.float64(0.0)
    i = jnp.int64(0)
    n_in = k.krr_lags + 2  # lags, distance from the window mean, seasonal increment
    n_d = 2 + LOGSIG_DIM[k.logsig_depth]  # bias, log-signature, seasonal increment
    state = SeriesState(
        n_obs=i,
        rejected=i,
        last_ts=jnp.int64(-1),
        last_value=f,
        window=jnp.zeros(o.window),
        vol_short=f,
        vol_long=f,
        ingest=IngestState(degraded=i, clean_run=i, frozen_run=i, outlier_run=i, outlier_ts=i,
                            seen_ts=jnp.int64(-1), flat_max=i),
        krr=KRRState(alpha=jnp.zeros(o.window - 1 - k.krr_lags)),
        mlp=mlp_init(jax.random.PRNGKey(o.seed), n_in, k.density_hidden),
        jd=JumpDiffusionState(theta=f, sxy=f, sxx=f, diff_var=jnp.float64(1.0), jump_rate=f, jump_mean=f,
                              jump_m2=f),
        rls=RLSState(w=jnp.zeros(n_d), P=jnp.eye(n_d)),
        feat_b=jnp.zeros(n_in),
        feat_d=jnp.zeros(n_d),
        kernel_pred=jnp.zeros(N_KERNELS),
        kernel_loss=jnp.ones(N_KERNELS),
        disagreement=jnp.zeros((N_KERNELS, N_KERNELS)),
        rho=jnp.full(N_KERNELS, 1.0 / N_KERNELS),
        f=jnp.zeros(N_KERNELS),
        g=jnp.zeros(N_KERNELS),
        resid=EwmKurtosis(m2=jnp.float64(1.0), m4=jnp.float64(3.0)),
        cusum=CusumState(pos=f, neg=f, grace=i),
        log_mult=f,
        surprise=f,
        range_lo=f,
        range_hi=f,
        range_beyond_at=i,
        season=season_init(max(o.season_bins, 1)),
        season_fit=jnp.zeros(2),
        unit=jnp.float64(1.0),
        spread=f,
        prediction=f,
        lower=f,
        upper=f,
        alarms=i,
    )
    held: SeriesState = jax.tree_util.tree_map(np.asarray, state)
    return held


def init_state(config: PredictorConfig | None = None) -> SeriesState:
    """State of a series USP has not seen yet (NumPy leaves; shapes follow the config).

    >>> s = init_state()
    >>> int(s.n_obs), int(s.last_ts), s.window.shape, s.rho.tolist()
    (0, -1, (32,), [0.25, 0.25, 0.25, 0.25])
    """
    return _template(config or PredictorConfig())


class StateLayoutError(ValueError):
    """Bytes that are not a SeriesState of this config's layout."""


class _Layout(NamedTuple):
    """Everything the codec needs, worked out once per state structure (not once per call: state is
    read and written for every series of every batch)."""

    treedef: Any
    specs: tuple[tuple[np.dtype[Any], tuple[int, ...], int, int], ...]  # dtype, shape, count, offset
    fingerprint: bytes
    nbytes: int


_MAGIC = b"USPS"
_HEADER = struct.Struct("<4s8s")


@functools.cache
def _layout_for(treedef: Any, shapes: tuple[tuple[str, tuple[int, ...]], ...]) -> _Layout:
    skeleton = jax.tree_util.tree_unflatten(treedef, list(range(len(shapes))))
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(skeleton)[0]]
    fingerprint = hashlib.sha256(repr((paths, list(shapes))).encode()).digest()[:8]
    specs = []
    offset = _HEADER.size
    for dtype_str, shape in shapes:
        dtype = np.dtype(dtype_str)
        count = int(np.prod(shape))
        specs.append((dtype, shape, count, offset))
        offset += dtype.itemsize * count
    return _Layout(treedef, tuple(specs), fingerprint, offset)


def _leaves_and_layout(state: SeriesState) -> tuple[list[np.ndarray], _Layout]:
    leaves, treedef = jax.tree_util.tree_flatten(state)
    arrays = [np.asarray(leaf) for leaf in leaves]
    return arrays, _layout_for(treedef, tuple((a.dtype.str, a.shape) for a in arrays))


@functools.cache
def _layout(config: PredictorConfig) -> _Layout:
    return _leaves_and_layout(_template(config))[1]


def state_bytes(config: PredictorConfig | None = None) -> int:
    """Size of one encoded state under `config`.

    >>> state_bytes() <= 4096
    True
    """
    return _layout(config or PredictorConfig()).nbytes


def state_to_bytes(state: SeriesState) -> bytes:
    """Encode one series' state (unbatched) as bytes.

    >>> len(state_to_bytes(init_state())) == state_bytes()
    True
    """
    arrays, layout = _leaves_and_layout(state)
    return b"".join([_HEADER.pack(_MAGIC, layout.fingerprint), *(a.tobytes() for a in arrays)])


def state_from_bytes(data: bytes, config: PredictorConfig | None = None) -> SeriesState:
    """Decode bytes written by `state_to_bytes` under the same config; StateLayoutError otherwise.

    >>> s = state_from_bytes(state_to_bytes(init_state()))
    >>> int(s.last_ts)
    -1
    """
    layout = _layout(config or PredictorConfig())
    if len(data) != layout.nbytes:
        raise StateLayoutError(f"state is {len(data)} bytes, expected {layout.nbytes}")
    magic, fingerprint = _HEADER.unpack_from(data)
    if magic != _MAGIC or fingerprint != layout.fingerprint:
        raise StateLayoutError("state was written with a different layout")
    leaves = [np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape).copy()
              for dtype, shape, count, offset in layout.specs]
    result: SeriesState = jax.tree_util.tree_unflatten(layout.treedef, leaves)
    return result


def stack_states(states: list[SeriesState], size: int | None = None,
                 config: PredictorConfig | None = None) -> SeriesState:
    """Stack states along a new leading axis, padding with fresh states up to `size`."""
    padded = list(states)
    if size is not None:
        padded.extend([init_state(config)] * (size - len(states)))
    stacked: SeriesState = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *padded)
    return stacked


def unstack_state(batch: SeriesState, index: int) -> SeriesState:
    """The `index`-th state of a stacked batch, as NumPy arrays."""
    one: SeriesState = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf[index]), batch)
    return one


# Row codecs: many series' encoded states as one (n, state_bytes) uint8 matrix. A worker's micro-batch
# holds hundreds of series; decoding and encoding them column by column (one NumPy operation per leaf
# for the whole batch) instead of leaf by leaf per series is what keeps the codec off the profile.

def state_rows(raws: Sequence[bytes | None], config: PredictorConfig | None = None,
               spare: int = 0) -> tuple[np.ndarray, list[int]]:
    """Encoded states as rows of a uint8 matrix; a missing (None) or unusable state becomes a fresh one.
    Returns the matrix and the indices of the unusable ones (for the caller to report). `spare` fresh
    rows follow the states' (padding a compiled round can use in place: `run_round_rows`).

    >>> m, bad = state_rows([state_to_bytes(init_state()), None, b"junk"])
    >>> m.shape == (3, state_bytes()), bad
    (True, [2])
    """
    layout = _layout(config or PredictorConfig())
    fresh = _fresh_bytes(config or PredictorConfig())
    header = fresh[:_HEADER.size]
    bad = [i for i, raw in enumerate(raws)
           if raw is not None and (len(raw) != layout.nbytes or raw[:_HEADER.size] != header)]
    unusable = set(bad)
    rows = [fresh if raw is None or i in unusable else raw for i, raw in enumerate(raws)]
    rows += [fresh] * spare
    # bytearray's join makes the one writable copy (bytes' join, then a copy, made two)
    return np.frombuffer(bytearray().join(rows), np.uint8).reshape(len(rows), layout.nbytes), bad


@functools.cache
def _fresh_bytes(config: PredictorConfig) -> bytes:
    return state_to_bytes(_template(config))


def fresh_rows(k: int, config: PredictorConfig | None = None) -> np.ndarray:
    """k encoded fresh states (padding for a bucket)."""
    fresh = np.frombuffer(_fresh_bytes(config or PredictorConfig()), np.uint8)
    return np.broadcast_to(fresh, (k, fresh.size))


def rows_to_batch(rows: np.ndarray, config: PredictorConfig | None = None) -> SeriesState:
    """A stacked SeriesState (leading axis = rows) from a matrix made by `state_rows`/`batch_to_rows`.

    The host-side (NumPy) codec. The worker decodes inside XLA instead (`decode_rows_traced`); this one
    is the independent reference that path is tested against, and a way to inspect stored rows."""
    layout = _layout(config or PredictorConfig())
    n = rows.shape[0]
    leaves = [np.ascontiguousarray(rows[:, offset:offset + dtype.itemsize * count]).view(dtype).reshape((n, *shape))
              for dtype, shape, count, offset in layout.specs]
    batch: SeriesState = jax.tree_util.tree_unflatten(layout.treedef, leaves)
    return batch


def rows_leaf(rows: np.ndarray, pick: Callable[[SeriesState], Any],
              config: PredictorConfig | None = None) -> np.ndarray:
    """One leaf of every row's state (leading axis = rows), read from its columns alone: `rows_to_batch`
    would copy every leaf to get one.

    >>> m, _ = state_rows([state_to_bytes(init_state()._replace(n_obs=np.int64(7))), None])
    >>> rows_leaf(m, lambda s: s.n_obs).tolist()
    [7, 0]
    """
    layout = _layout(config or PredictorConfig())
    where = pick(jax.tree_util.tree_unflatten(layout.treedef, list(range(len(layout.specs)))))
    dtype, shape, count, offset = layout.specs[where]
    column = np.ascontiguousarray(rows[:, offset:offset + dtype.itemsize * count])
    return column.view(dtype).reshape((rows.shape[0], *shape))


def decode_rows_traced(rows: Array, config: PredictorConfig) -> SeriesState:
    """`rows_to_batch` inside a compiled function: the whole matrix crosses into XLA as one array and
    each leaf is a bitcast of its columns there (one argument instead of one per leaf)."""
    layout = _layout(config)
    n = rows.shape[0]
    leaves = []
    for dtype, shape, count, offset in layout.specs:
        # Every leaf is a 4- or 8-byte number (bitcasts between equal widths keep the shape instead).
        cols = rows[:, offset:offset + dtype.itemsize * count].reshape(n, count, dtype.itemsize)
        leaves.append(jax.lax.bitcast_convert_type(cols, dtype).reshape((n, *shape)))
    batch: SeriesState = jax.tree_util.tree_unflatten(layout.treedef, leaves)
    return batch


def encode_rows_traced(batch: SeriesState, header_rows: Array, config: PredictorConfig) -> Array:
    """`batch_to_rows` inside a compiled function; `header_rows` supplies each row's header bytes."""
    layout = _layout(config)
    n = header_rows.shape[0]
    cols = [header_rows[:, :_HEADER.size]]
    for leaf, (dtype, _, count, _) in zip(jax.tree_util.tree_leaves(batch), layout.specs, strict=True):
        flat = jnp.asarray(leaf, dtype).reshape(n, count)
        cols.append(jax.lax.bitcast_convert_type(flat, jnp.uint8).reshape(n, count * dtype.itemsize))
    return jnp.concatenate(cols, axis=1)


def batch_to_rows(batch: SeriesState, n: int, config: PredictorConfig | None = None) -> np.ndarray:
    """The first n states of a stacked batch as encoded rows (each row equals `state_to_bytes`).

    The host-side counterpart of `encode_rows_traced` (the worker's path), kept as its test reference."""
    layout = _layout(config or PredictorConfig())
    header = np.frombuffer(_fresh_bytes(config or PredictorConfig())[:_HEADER.size], np.uint8)
    cols = [np.broadcast_to(header, (n, header.size))]
    for leaf, (dtype, _, count, _) in zip(jax.tree_util.tree_leaves(batch), layout.specs, strict=True):
        cols.append(np.ascontiguousarray(np.asarray(leaf)[:n], dtype=dtype).reshape(n, count).view(np.uint8))
    return np.concatenate(cols, axis=1)
