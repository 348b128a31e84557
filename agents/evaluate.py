"""`usp evaluate`: the forecast, change-point and anomaly suites, with a progress bar, text tables, an
optional JSON report and plots. Thin glue: the suites and scorers live in models.evaluation."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from models.config import load_config
from models.evaluation import datasets
from models.evaluation.anomaly_suite import AnomalyReport, run_anomaly
from models.evaluation.changepoint_suite import ChangepointReport, run_changepoint
from models.evaluation.forecast_suite import COVERAGE_BAND, ForecastReport, run_forecast
from models.evaluation.plots import plot_series
from models.evaluation.runs import KERNEL_METHODS, RIVER_FORECASTERS, Runner

SUITES = ("forecast", "changepoint", "anomaly", "all")
# Short column headers so the forecast table fits a terminal; the JSON uses the full method names.
LABELS = {"kernel_a": "A krr", "kernel_b": "B dens", "kernel_c": "C jump", "kernel_d": "D sig",
          "holt_winters": "holt_w", "linear_lags": "lin_lags", "snarimax": "snarimax"}
NAB_TARGET = 65.0


def _f(x: float, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _truncate(series: list[datasets.Series], max_rows: int | None) -> list[datasets.Series]:
    if not max_rows:
        return series
    out = []
    for s in series:
        if len(s.values) <= max_rows:
            out.append(s)
            continue
        out.append(datasets.Series(
            s.name, s.source, s.ts[:max_rows], s.values[:max_rows],
            tuple(c for c in s.change_points if c < max_rows),
            tuple((a, min(b, max_rows - 1)) for a, b in s.anomaly_windows if a < max_rows), s.period))
    return out


def _select(series: list[datasets.Series], patterns: list[str] | None) -> list[datasets.Series]:
    if not patterns:
        return series
    return [s for s in series if any(p in s.name for p in patterns)]


def forecast_table(report: ForecastReport) -> Table:
    t = Table(title="forecast: one-step MASE per series (lower is better; naive about 1)")
    t.add_column("series", no_wrap=True)
    t.add_column("rows", justify="right")
    for m in report.methods:
        t.add_column(LABELS.get(m, m), justify="right")
    t.add_column("usp cov", justify="right")
    for s in report.series:
        best = min(s.scores[m].mase for m in report.methods)
        cells = [(f"[bold]{_f(s.scores[m].mase)}[/]" if s.scores[m].mase == best else _f(s.scores[m].mase))
                 for m in report.methods]
        t.add_row(s.series, str(s.rows), *cells, _f(s.scores["usp"].coverage) if "usp" in s.scores else "-")
    t.add_section()
    t.add_row("median MASE", "", *(_f(report.median_mase[m]) for m in report.methods), "")
    t.add_row("median coverage", "", *(_f(report.median_coverage[m]) for m in report.methods), "")
    lo, hi = COVERAGE_BAND
    t.add_row(f"coverage in [{lo:.2f},{hi:.2f}]", "", *(_f(report.in_band[m], 2) for m in report.methods), "")
    t.add_row("median Winkler/scale", "", *(_f(report.median_scaled_winkler[m], 2) for m in report.methods), "")
    return t


def changepoint_table(report: ChangepointReport) -> Table:
    t = Table(title="change points: F1 (margin 5) / covering per series (higher is better)")
    t.add_column("series", no_wrap=True)
    t.add_column("true", justify="right")
    for m in report.methods:
        t.add_column(m, justify="right")
    for s in report.series:
        t.add_row(s.series, str(len(s.truth)),
                  *(f"{_f(s.f1[m], 2)} / {_f(s.covering[m], 2)} ({len(s.alarms[m])})" for m in report.methods))
    t.add_section()
    t.add_row("mean F1 / covering", "",
              *(f"{_f(report.mean_f1[m])} / {_f(report.mean_covering[m])}" for m in report.methods))
    return t


def anomaly_table(report: AnomalyReport) -> Table:
    t = Table(title=f"anomaly: NAB-style score on {report.files} files, {report.windows} windows "
                    "(null 0, perfect 100; one threshold per profile over the corpus)")
    t.add_column("detector", no_wrap=True)
    for p in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        t.add_column(p, justify="right")
    t.add_column("threshold (std)", justify="right")
    t.add_column("TP/FP/FN (std)", justify="right")
    for m, by in report.scores.items():
        std = by["standard"]
        t.add_row(m, *(_f(by[p].normalized, 1) for p in ("standard", "reward_low_FP_rate", "reward_low_FN_rate")),
                  f"{std.threshold:.6g}", f"{std.tp}/{std.fp}/{std.fn}")
    return t


def targets(fc: ForecastReport | None, cp: ChangepointReport | None, an: AnomalyReport | None) -> dict[str, Any]:
    """The issue's acceptance targets, each with the figures it compares."""
    out: dict[str, Any] = {}
    if fc is not None:
        usp = fc.median_mase["usp"]
        kernels = [fc.median_mase[m] for m in KERNEL_METHODS if m in fc.median_mase]
        river = [fc.median_mase[m] for m in RIVER_FORECASTERS if m in fc.median_mase]
        if kernels:
            out["mase_beats_best_kernel"] = {"usp": usp, "best_kernel": min(kernels), "met": usp < min(kernels)}
        if river:
            out["mase_beats_best_river"] = {"usp": usp, "best_river": min(river), "met": usp < min(river)}
        out["coverage_in_band"] = {"fraction": fc.in_band["usp"], "met": fc.in_band["usp"] >= 0.9}
    if cp is not None:
        others = {m: v for m, v in cp.mean_f1.items() if m != "usp"}
        out["f1_beats_river_detectors"] = {"usp": cp.mean_f1["usp"], **others,
                                           "met": all(cp.mean_f1["usp"] > v for v in others.values())}
    if an is not None and "usp" in an.scores:
        std = an.scores["usp"]["standard"].normalized
        out["nab_standard"] = {"usp": std, "target": NAB_TARGET, "met": std >= NAB_TARGET}
    return out


def cmd_evaluate(args: argparse.Namespace, console: Console) -> int:
    config = load_config(args.config)
    if args.max_rows is not None and args.max_rows < 1:
        console.print("[red]error:[/] --max-rows must be a positive number of rows", highlight=False)
        return 2
    suites = ("forecast", "changepoint", "anomaly") if args.suite == "all" else (args.suite,)
    nab_root = datasets.find_nab_root(Path(args.nab) if args.nab else None)
    if nab_root is None and ("forecast" in suites or "anomaly" in suites):
        console.print("[yellow]NAB data not found[/] (give --nab DIR or set USP_NAB_DATA): "
                      "forecast runs on the package series only, anomaly is skipped", highlight=False)

    def pick(series: list[datasets.Series]) -> list[datasets.Series]:
        return _truncate(_select(series, args.series), args.max_rows)

    wants_nab = nab_root is not None and ("forecast" in suites or "anomaly" in suites)
    nab = pick(datasets.nab_series(nab_root)) if wants_nab and nab_root is not None else []
    forecast_series = (pick(datasets.package_series()) + nab) if "forecast" in suites else []
    cp_series = pick(datasets.changepoint_series()) if "changepoint" in suites else []
    anomaly_series = nab if "anomaly" in suites else []

    total = len(forecast_series) + len(cp_series) + len(anomaly_series)
    if total == 0:
        console.print(f"[red]error:[/] no series of the {escape(', '.join(suites))} suite(s) matched "
                      f"{escape(repr(args.series))}", highlight=False)
        return 2
    fc = cp = an = None
    with Progress(TextColumn("[bold]{task.fields[suite]}[/]"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.description}"), console=console, transient=True,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task("", total=total, suite="evaluate")
        runner = Runner(config.predictor, progress=lambda label: bar.update(task, description=label))

        def done(_: datasets.Series) -> None:
            bar.advance(task)

        if forecast_series:
            bar.update(task, suite="forecast")
            fc = run_forecast(runner, forecast_series, done=done, split=args.split)
        if cp_series:
            bar.update(task, suite="changepoint")
            cp = run_changepoint(runner, cp_series, done=done, split=args.split)
        if anomaly_series:
            bar.update(task, suite="anomaly")
            an = run_anomaly(runner, anomaly_series, done=done, split=args.split)

    out_console = Console(width=max(console.width, 160))
    for table in ([forecast_table(fc)] if fc else []) + ([changepoint_table(cp)] if cp else []) + \
                 ([anomaly_table(an)] if an else []):
        out_console.print(table)
    goals = targets(fc, cp, an)
    report: dict[str, Any] = {"suites": list(suites), "split": args.split, "targets": goals}
    if fc:
        report["forecast"] = fc.to_json()
    if cp:
        report["changepoint"] = cp.to_json()
    if an:
        report["anomaly"] = an.to_json()
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
        console.print(f"wrote {path}", highlight=False)
    if args.plot:
        plot_dir = Path(args.plot)
        seen: dict[str, datasets.Series] = {s.name: s for s in forecast_series + cp_series + anomaly_series}
        for s in seen.values():
            plot_series(s, runner.usp(s), plot_dir)
        console.print(f"wrote {len(seen)} plots to {plot_dir}", highlight=False)
    print(orjson.dumps({k: v["met"] for k, v in goals.items()}).decode(), flush=True)
    return 0
