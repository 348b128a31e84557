"""`usp backtest`: a timestamp,value CSV through the production step, one output row per input row (in
time order)."""

from __future__ import annotations

import argparse
import csv
import itertools
import math
from pathlib import Path

import numpy as np
import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from models.backtest import backtest, summarize
from models.config import load_config
from models.step import MODE_NAMES, REASON_NAMES
from streams.csv_input import CsvReport, in_time_order, read_csv

COLUMNS = ("timestamp", "value", "prediction", "lower", "upper", "anomaly_score", "regime_change", "mode",
           "w_a", "w_b", "w_c", "w_d", "cusum", "cusum_threshold", "status")


def _fmt(x: float) -> str:
    return "" if math.isnan(x) else repr(float(x))


def cmd_backtest(args: argparse.Namespace, console: Console) -> int:
    config = load_config(args.config)
    path = Path(args.file)
    if not path.is_file():
        console.print(f"[red]error:[/] {escape(str(path))} {'is a directory' if path.is_dir() else 'does not exist'}",
                      highlight=False)
        return 2
    report = CsvReport()
    try:
        rows = list(read_csv(path, path.stem, report, pre_epoch=True, time_column=args.time_column,
                             value_column=args.value_column))
    except (ValueError, OSError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    if report.guessed:
        console.print(f"reading column {report.columns[0]!r} as the time and {report.columns[1]!r} as the value",
                      highlight=False)
    for lineno, why in report.bad[:20]:
        console.print(f"[yellow]skipped line {lineno}:[/] {escape(why)}", highlight=False)
    if len(report.bad) > 20:
        console.print(f"[yellow]... and {len(report.bad) - 20} more bad lines[/]", highlight=False)
    if not rows:
        console.print(f"[red]error:[/] {path}: no readable rows ({len(report.bad)} bad lines)", highlight=False)
        return 2
    if report.backwards:
        # A newest-first export would otherwise be refused row by row as stale (a replay).
        rows = in_time_order(rows)
        console.print(f"the rows were not in time order ({report.backwards} earlier than the row before): "
                      "back-tested and written in time order", highlight=False)
    repeats = sum(a.ts_ns == b.ts_ns for a, b in itertools.pairwise(rows))
    if repeats:
        console.print(f"[yellow]{repeats} rows repeat the time of the row before:[/] refused as stale, "
                      "as the stream refuses a replayed observation", highlight=False)

    ts = np.fromiter((r.ts_ns for r in rows), dtype=np.int64, count=len(rows))
    values = np.fromiter((r.value for r in rows), dtype=np.float64, count=len(rows))
    with Progress(TextColumn("backtest"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("rows", total=len(rows))
        result = backtest(ts, values, config.predictor,
                          progress=lambda done, total: bar.update(task, completed=done))

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for i, row in enumerate(rows):
            w = result.weights[i]
            writer.writerow([
                row.ts, repr(row.value), _fmt(result.prediction[i]), _fmt(result.lower[i]), _fmt(result.upper[i]),
                _fmt(result.anomaly_score[i]), int(result.regime_change[i]), MODE_NAMES[int(result.mode[i])],
                _fmt(w[0]), _fmt(w[1]), _fmt(w[2]), _fmt(w[3]), _fmt(result.cusum[i]),
                _fmt(result.cusum_threshold[i]), REASON_NAMES[int(result.reason[i])],
            ])
    summary = summarize(values, result, config.orchestration.warmup_steps)
    summary["bad_rows"] = len(report.bad)
    summary["compile_s"] = round(result.compile_s, 3)
    console.print(f"wrote {len(rows)} rows to {out}", highlight=False)
    print(orjson.dumps(summary).decode(), flush=True)
    return 0
