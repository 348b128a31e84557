"""Per-series state: a fixed-shape pytree of arrays, and its byte encoding for a Faust table.

Fixed shapes let `orchestrate_step_batch` vmap over many series and make the encoding a plain
concatenation of leaves. The encoding starts with a layout fingerprint, so a worker that meets state
written by an incompatible version refuses it (and starts the series afresh) instead of misreading it.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any, NamedTuple

import numpy as np

import native  # noqa: F401  (float64 on before any array is made)

#: A pytree leaf: a NumPy array or scalar between ticks, a jax.Array inside a traced step.
Leaf = Any


class SeriesState(NamedTuple):
    """What USP remembers about one series between ticks.

    n_obs: accepted observations so far.
    last_ts: epoch ns of the last accepted observation (-1 before the first).
    last_value: the last accepted value.
    level: EWMA level, which is also the next prediction.
    resid_var: EWMA of squared one-step residuals, the interval's scale.
    prediction, lower, upper: the forecast made for the next tick.
    rejected: observations refused for this series (stale or numerically unsafe).
    """

    n_obs: Leaf
    last_ts: Leaf
    last_value: Leaf
    level: Leaf
    resid_var: Leaf
    prediction: Leaf
    lower: Leaf
    upper: Leaf
    rejected: Leaf


def init_state() -> SeriesState:
    """State of a series USP has not seen yet.

    >>> s = init_state()
    >>> int(s.n_obs), int(s.last_ts)
    (0, -1)
    """
    f = np.float64(0.0)
    return SeriesState(
        n_obs=np.int64(0),
        last_ts=np.int64(-1),
        last_value=f,
        level=f,
        resid_var=f,
        prediction=f,
        lower=f,
        upper=f,
        rejected=np.int64(0),
    )


_TEMPLATE = init_state()
_LEAF_SPECS = tuple((np.asarray(leaf).dtype, np.asarray(leaf).shape) for leaf in _TEMPLATE)
_LAYOUT = hashlib.sha256(
    repr((SeriesState._fields, [(d.str, s) for d, s in _LEAF_SPECS])).encode()
).digest()[:8]
_MAGIC = b"USPS"
_HEADER = struct.Struct("<4s8s")
STATE_BYTES = _HEADER.size + sum(d.itemsize * int(np.prod(s)) for d, s in _LEAF_SPECS)


class StateLayoutError(ValueError):
    """Bytes that are not a SeriesState of this version's layout."""


def state_to_bytes(state: SeriesState) -> bytes:
    """Encode one series' state (unbatched) as bytes.

    >>> len(state_to_bytes(init_state())) == STATE_BYTES
    True
    """
    parts = [_HEADER.pack(_MAGIC, _LAYOUT)]
    for leaf, (dtype, shape) in zip(state, _LEAF_SPECS, strict=True):
        arr = np.asarray(leaf, dtype=dtype)
        if arr.shape != shape:
            raise StateLayoutError(f"leaf shape {arr.shape} != {shape}")
        parts.append(arr.tobytes())
    return b"".join(parts)


def state_from_bytes(data: bytes) -> SeriesState:
    """Decode bytes written by `state_to_bytes`; raises StateLayoutError on any mismatch.

    >>> s = state_from_bytes(state_to_bytes(init_state()))
    >>> int(s.last_ts)
    -1
    """
    if len(data) != STATE_BYTES:
        raise StateLayoutError(f"state is {len(data)} bytes, expected {STATE_BYTES}")
    magic, layout = _HEADER.unpack_from(data)
    if magic != _MAGIC or layout != _LAYOUT:
        raise StateLayoutError("state was written with a different layout")
    offset = _HEADER.size
    leaves = []
    for dtype, shape in _LEAF_SPECS:
        n = dtype.itemsize * int(np.prod(shape))
        leaves.append(np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=offset)
                      .reshape(shape).copy())
        offset += n
    return SeriesState(*leaves)


def stack_states(states: list[SeriesState], size: int | None = None) -> SeriesState:
    """Stack states along a new leading axis, padding with fresh states up to `size`."""
    padded = list(states)
    if size is not None:
        padded.extend([_TEMPLATE] * (size - len(states)))
    return SeriesState(*(np.stack([np.asarray(s[i]) for s in padded]) for i in range(len(_LEAF_SPECS))))


def unstack_state(batch: SeriesState, index: int) -> SeriesState:
    """The `index`-th state of a stacked batch, as NumPy arrays."""
    return SeriesState(*(np.asarray(leaf[index]) for leaf in batch))
