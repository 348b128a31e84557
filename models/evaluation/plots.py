"""PNG plots for `usp evaluate --plot`: a series with USP's forecast, its interval band, the alarms it
raised, and the truth (anomaly windows shaded, change points dashed), so a number can be checked by eye."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from models.backtest import BacktestResult
from models.evaluation.datasets import Series

MAX_POINTS = 20_000  # beyond this a line plot is a solid block; thin evenly for the picture only


def _filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") + ".png"


def plot_series(series: Series, result: BacktestResult, out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on workers or CI
    import matplotlib.pyplot as plt

    n = len(series.values)
    step = max(1, n // MAX_POINTS)
    rows = np.arange(0, n, step)
    fig, ax = plt.subplots(figsize=(14, 4.5), dpi=100)
    for start, end in series.anomaly_windows:
        ax.axvspan(start, end, color="tab:red", alpha=0.12, lw=0)
    ax.fill_between(rows, result.lower[rows], result.upper[rows], color="tab:blue", alpha=0.25, lw=0,
                    label="95% interval")
    ax.plot(rows, series.values[rows], color="black", lw=0.7, label="value")
    ax.plot(rows, result.prediction[rows], color="tab:blue", lw=0.7, label="USP forecast")
    for i, cp in enumerate(series.change_points):
        ax.axvline(cp, color="tab:green", ls="--", lw=1.2, label="true change point" if i == 0 else "_nolegend_")
    for i, a in enumerate(np.flatnonzero(result.regime_change)):
        label = "regime_change alarm" if i == 0 else "_nolegend_"
        ax.axvline(float(a), color="tab:orange", lw=0.9, alpha=0.8, label=label)
    if series.anomaly_windows:
        ax.plot([], [], color="tab:red", alpha=0.3, lw=6, label="anomaly window")
    ax.set_title(series.name)
    ax.set_xlabel("row")
    ax.legend(loc="upper left", fontsize=8, ncols=3)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / _filename(series.name)
    fig.savefig(path)
    plt.close(fig)
    return path
