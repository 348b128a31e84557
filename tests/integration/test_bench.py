"""`usp bench` end to end on a tiny plan: every stage runs real workers over the embedded broker and
every figure the issue names comes back as a finite, positive number (the figures themselves are the
benchmark's to report, not a test's to judge)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from rich.console import Console

import agents.bench as bench
from models.config import USPConfig

NAB = Path(__file__).resolve().parents[3] / "shared/data/nab/data"
KEYS = ("noop_faust_obs_s", "pipeline_obs_s", "pipeline_vs_noop", "latency_p50_ms", "latency_p99_ms",
        "step_us_b1", "step_us_b64", "step_us_b1024", "backtest_ticks_s", "state_bytes_per_series",
        "rss_mb_100k_series", "scale_2w_vs_1w", "noop_cpu_us_per_obs", "pipeline_cpu_us_per_obs",
        "pipeline_vs_noop_cpu", "noop_latency_p50_ms", "noop_latency_p99_ms", "latency_p99_vs_noop")


@pytest.mark.skipif(not NAB.is_dir(), reason="needs ../shared/data/nab")
def test_bench_reports_every_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = bench.Plan(observations=400, series=40, latency_s=2.0, rss_series=300, step_ticks=2, step_repeats=1,
                      backtest_repeats=1, drain_pairs=2)
    monkeypatch.setattr(bench, "QUICK", tiny)
    figures = bench.bench(quick=True, config=USPConfig(), config_path=None, nab=NAB, console=Console(quiet=True))
    for key in KEYS:
        assert isinstance(figures[key], (int, float)) and math.isfinite(figures[key]) and figures[key] > 0, key
    pairs = figures["pipeline_vs_noop_pairs"]
    assert len(pairs) == 2 and all(r > 0 for r in pairs)
    assert figures["pipeline_vs_noop"] == pytest.approx(sum(pairs) / 2, rel=1e-2)  # the median of two
    assert figures["latency_rate_obs_s"] > 0
    assert figures["latency_p99_vs_noop"] == pytest.approx(figures["latency_p99_ms"] / figures["noop_latency_p99_ms"],
                                                           rel=1e-2)
    assert figures["latency_samples"] > 0 and figures["rss_series_measured"] == 2 * 40 + 300
    assert figures["backtest_rows"] == 22_695  # the longest bundled NAB series, machine_temperature
