"""Running many series' ticks through `orchestrate_step_batch` without recompiling.

A micro-batch holds a few ticks of many series. Ticks of one series must be applied in order, so the
batch is cut into rounds (round r holds the r-th tick of every series that has one), and each round is
padded up to one of a few bucket sizes: JAX compiles once per shape, so a handful of buckets compiled
at start-up cover every batch, and no compile ever lands on a message's latency.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.config import OrchestrationConfig
from models.state import SeriesState, init_state, stack_states, unstack_state
from models.step import Observation, orchestrate_step_batch

BUCKETS: tuple[int, ...] = (1, 4, 16, 64, 256, 1024)


def bucket_for(n: int) -> int:
    """Smallest bucket that holds n rows (n <= BUCKETS[-1]).

    >>> bucket_for(1), bucket_for(5), bucket_for(1024)
    (1, 16, 1024)
    """
    return BUCKETS[bisect.bisect_left(BUCKETS, n)]


def warm_up(config: OrchestrationConfig) -> None:
    """Compile every bucket now, at worker start, rather than on the first message of each size."""
    for size in BUCKETS:
        states = stack_states([init_state()], size)
        obs = Observation(np.zeros(size, np.int64), np.zeros(size, np.float64))
        orchestrate_step_batch(states, obs, config)


@dataclass(frozen=True, slots=True)
class TickOutcome:
    """Result of one tick, as plain Python numbers."""

    accepted: bool
    reason: int
    prediction: float
    lower: float
    upper: float
    mode: int
    anomaly_score: float


def run_round(states: Sequence[SeriesState], ts_ns: Sequence[int], values: Sequence[float],
              config: OrchestrationConfig) -> tuple[list[SeriesState], list[TickOutcome]]:
    """Apply one tick to each of len(states) distinct series, padded into bucket-sized calls."""
    new_states: list[SeriesState] = []
    outcomes: list[TickOutcome] = []
    top = BUCKETS[-1]
    for start in range(0, len(states), top):
        chunk = states[start:start + top]
        n = len(chunk)
        size = bucket_for(n)
        ts = np.zeros(size, np.int64)
        vals = np.zeros(size, np.float64)
        ts[:n] = ts_ns[start:start + n]
        vals[:n] = values[start:start + n]
        batch, result = orchestrate_step_batch(stack_states(list(chunk), size), Observation(ts, vals), config)
        batch = SeriesState(*(np.asarray(leaf) for leaf in batch))
        cols = [np.asarray(c)[:n].tolist() for c in (result.accepted, result.reason, result.prediction,
                                                      result.lower, result.upper, result.mode,
                                                      result.anomaly_score)]
        for i in range(n):
            new_states.append(unstack_state(batch, i))
            outcomes.append(TickOutcome(*(col[i] for col in cols)))
    return new_states, outcomes
