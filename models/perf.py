"""Figures for the numeric core: batched step cost per series-tick and back-test throughput.

A benchmark, not a test: it prints what it measures and asserts nothing. Run it with
`python -m models.perf` (or `make bench-numeric`); the last stdout line is one JSON object.
Each figure is the best of a few repetitions after compilation, on a random-walk workload whose
per-series values differ (so vmapped while-loops see realistic, not identical, convergence).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
import orjson

from models.backtest import backtest
from models.config import PredictorConfig
from models.state import init_state, stack_states, state_bytes
from models.step import Observation, orchestrate_step_batch

DEFAULT_SIZES = (1, 64, 1024)
#: Five-minute stamps from 2026-01-01 UTC, so the series choose and learn a daily season as real ones do.
T0_NS, STEP_NS = 1_767_225_600 * 10**9, 300 * 10**9


def _tick(batch: int, t: int, values: np.ndarray) -> Observation:
    return Observation(np.full(batch, T0_NS + t * STEP_NS, np.int64), values[t])


def step_us_per_series_tick(batch: int, config: PredictorConfig, ticks: int = 50, repeats: int = 3) -> float:
    """Microseconds per series-tick of `orchestrate_step_batch` at batch size `batch`."""
    rng = np.random.default_rng(0)
    values = 100.0 + np.cumsum(rng.normal(size=(ticks + 60, batch)), axis=0)
    states = stack_states([init_state(config)], batch, config)
    for t in range(60):  # warm past the first ticks so every kernel is active
        states, _ = orchestrate_step_batch(states, _tick(batch, t, values), config)
    jax.block_until_ready(states)
    best = float("inf")
    for _ in range(repeats):
        s = states
        start = time.perf_counter()
        for t in range(60, 60 + ticks):
            s, _ = orchestrate_step_batch(s, _tick(batch, t, values), config)
        jax.block_until_ready(s)
        best = min(best, (time.perf_counter() - start) / ticks / batch * 1e6)
    return best


def longest_nab_series(root: Path) -> Path:
    return max(root.rglob("*.csv"), key=lambda p: sum(1 for _ in p.open()))


def backtest_ticks_per_s(path: Path, config: PredictorConfig, repeats: int = 3) -> tuple[int, float, float]:
    """(rows, best ticks/s over repeats, compile seconds) for a back-test of one NAB CSV, with its own
    timestamps (so the series gets its season, as in a worker)."""
    values = np.loadtxt(path, delimiter=",", skiprows=1, usecols=1)
    stamps = np.loadtxt(path, delimiter=",", skiprows=1, usecols=0, dtype=str)
    ts = stamps.astype("datetime64[ns]").astype(np.int64)
    first = backtest(ts, values, config)
    best = max(len(values) / backtest(ts, values, config).run_s for _ in range(repeats))
    return len(values), best, first.compile_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nab", default="../shared/data/nab/data", help="NAB data folder")
    args = parser.parse_args(argv)
    config = PredictorConfig()
    figures: dict[str, float | int | str] = {}
    for b in DEFAULT_SIZES:
        figures[f"step_us_b{b}"] = round(step_us_per_series_tick(b, config), 2)
        print(f"orchestrate_step_batch B={b:5d}: {figures[f'step_us_b{b}']:8.2f} us per series-tick", flush=True)
    path = longest_nab_series(Path(args.nab))
    rows, tps, compile_s = backtest_ticks_per_s(path, config)
    figures.update(backtest_series=path.name, backtest_rows=rows, backtest_ticks_s=round(tps),
                   backtest_compile_s=round(compile_s, 2), state_bytes_per_series=state_bytes(config))
    print(f"backtest {path.name} ({rows} rows): {tps:,.0f} ticks/s (compile {compile_s:.2f} s)")
    print(f"state: {figures['state_bytes_per_series']} bytes per series")
    print(orjson.dumps(figures).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
