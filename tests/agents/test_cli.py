"""The `usp` command line, run as a user would: real subprocesses, real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from agents.cli import build_parser
from streams.broker import EmbeddedBroker
from streams.publish import demo_path

ROOT = Path(__file__).resolve().parents[2]
RUN_KEYS = {"observations", "predictions", "deadletters", "regime_changes", "elapsed_s",
            "throughput_obs_s", "latency_p50_ms", "latency_p99_ms"}


def usp(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "USP_BROKER"}
    return subprocess.run([sys.executable, "-m", "agents.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)


def test_every_subcommand_help_has_an_example() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():  # type: ignore[union-attr]
        assert "example:" in p.format_help(), name
        assert f"usp {name}" in p.format_help(), name


def test_backtest_reads_a_historical_spreadsheet_export(tmp_path: Path) -> None:
    """Monthly records from 1949 (before the stream's epoch), a byte-order mark and column names of
    their own, as an analyst's CSV arrives: every row is back-tested, the stamps are kept."""
    months = [f"{1949 + i // 12}-{i % 12 + 1:02d}" for i in range(144)]
    values = [100 + i + 20 * ((i % 12) in (5, 6, 7)) for i in range(144)]
    path = tmp_path / "airline.csv"
    rows = "".join(f"{m},{v}\r\n" for m, v in zip(months, values, strict=True))
    path.write_text("\ufeffMonth,#Passengers\r\n" + rows, encoding="utf-8")
    out = tmp_path / "out.csv"
    result = usp("backtest", str(path), "--output", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'Month' as the time and '#Passengers' as the value" in (result.stdout + result.stderr).replace("\n", " ")
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 144 and summary["bad_rows"] == 0 and summary["refused"] == 0
    # A trend with a summer bump: USP learns both, the last value lags every month.
    assert summary["mase"] is not None and summary["mae"] < summary["naive_mae"]
    lines = out.read_text().splitlines()
    assert len(lines) == 145 and lines[1].startswith("1949-01-01T00:00:00Z,100.0,")
    assert lines[-1].startswith("1960-12-01T00:00:00Z,")


def test_backtest_puts_a_newest_first_export_in_time_order(tmp_path: Path) -> None:
    """Finance exports list the newest day first (and name their columns Date, Open, ..., Close); the
    stream would refuse every row after the first as stale (a replay), so the back-test sorts the file
    and says so."""
    days = [f"{d:02d}-Jan-24" for d in range(31, 0, -1)] + [f"{d:02d}-Dec-23" for d in range(31, 0, -1)]
    path = tmp_path / "msft.csv"
    path.write_text("Date,Open,Close\n" + "".join(f"{d},1,{100 + 0.5 * i}\n" for i, d in enumerate(days)))
    out = tmp_path / "out.csv"
    result = usp("backtest", str(path), "--output", str(out), "--value-column", "Close")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not in time order" in " ".join((result.stdout + result.stderr).split())
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 62 and summary["refused"] == 0 and summary["bad_rows"] == 0
    lines = out.read_text().splitlines()
    assert lines[1].startswith("2023-12-01T00:00:00Z,130.5,") and lines[-1].startswith("2024-01-31T00:00:00Z,100.0,")


def test_backtest_says_which_rows_repeat_a_time_once_sorted(tmp_path: Path) -> None:
    path = tmp_path / "twice.csv"
    path.write_text("timestamp,value\n2024-01-01,1\n2024-01-02,2\n2024-01-01,1.5\n2024-01-02,2.5\n")
    result = usp("backtest", str(path), "--output", str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 rows repeat the time of the row before" in " ".join((result.stdout + result.stderr).split())
    assert orjson.loads(result.stdout.strip().splitlines()[-1])["refused"] == 2


def test_run_refuses_column_names_without_an_input_file() -> None:
    result = usp("run", "--value-column", "Close")
    assert result.returncode == 2
    assert "name the columns of an --input file" in " ".join((result.stdout + result.stderr).split())


def test_mistakes_get_one_line_errors_not_tracebacks_or_hangs(tmp_path: Path) -> None:
    """A new user's slips: a negative rate (the publisher never fell due: it hung), a broker URL of
    the wrong scheme (a traceback), a config section name rich took for markup (printed empty), a
    series filter that matches nothing (`{}` and exit 0), a directory given as the file."""
    path = tmp_path / "x.csv"
    path.write_text("timestamp,value\n2024-01-01,1\n")
    rate = usp("publish", str(path), "--rate", "-5", "--broker", "kafka://127.0.0.1:9")
    assert rate.returncode == 2 and "must be a number above 0" in rate.stderr
    scheme = usp("publish", str(path), "--broker", "http://127.0.0.1:9")
    out = " ".join((scheme.stdout + scheme.stderr).split())
    assert scheme.returncode == 1 and "broker error: broker URL must start with kafka://" in out
    assert "Traceback" not in out
    config = tmp_path / "c.toml"
    config.write_text("[stream]\npartitions = 4\n")
    bad = usp("backtest", str(path), "-o", str(tmp_path / "o.csv"), "--config", str(config))
    assert bad.returncode == 2 and "unknown section [stream]" in " ".join(bad.stderr.split())
    nothing = usp("evaluate", "--suite", "changepoint", "--series", "no-such-series")
    assert nothing.returncode == 2 and "matched" in nothing.stderr
    folder = usp("backtest", str(tmp_path), "-o", str(tmp_path / "o.csv"))
    assert folder.returncode == 2 and "is a directory" in " ".join(folder.stderr.split())


def test_backtest_of_a_file_without_a_readable_row_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("timestamp,value\nyesterday,1\n")
    result = usp("backtest", str(path), "--output", str(tmp_path / "out.csv"))
    assert result.returncode == 2
    assert "no readable rows (1 bad lines)" in " ".join((result.stdout + result.stderr).split())
    assert not (tmp_path / "out.csv").exists()


def test_publish_refuses_a_file_without_time_and_value_columns_before_starting_anything(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n2024-01-01,1,2\n")
    result = usp("publish", str(path), "--broker", "kafka://127.0.0.1:9")  # nothing listens there
    assert result.returncode == 2
    assert "expected a header with a time column" in result.stdout + result.stderr


@pytest.mark.integration
def test_usp_run_ends_with_the_summary_line() -> None:
    result = usp("run", "--max-observations", "400")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary) == RUN_KEYS
    assert summary["observations"] >= 400
    assert summary["predictions"] + summary["deadletters"] == summary["observations"]
    assert summary["predictions"] >= 390
    assert 0 < summary["latency_p50_ms"] <= summary["latency_p99_ms"]
    assert summary["throughput_obs_s"] > 0


@pytest.mark.integration
def test_usp_run_reports_a_bad_input_file() -> None:
    result = usp("run", "--input", "/nonexistent/file.csv", "--max-observations", "10")
    assert result.returncode != 0


@pytest.mark.integration
def test_publish_then_tail(tmp_path: Path) -> None:
    with EmbeddedBroker() as broker:
        published = usp("publish", str(demo_path("nyc_taxi")), "--series-id", "taxi", "--limit", "50",
                        "--broker", broker.url)
        assert published.returncode == 0, published.stderr[-2000:]
        assert orjson.loads(published.stdout.strip().splitlines()[-1]) == {
            "series_id": "taxi", "published": 50, "skipped_rows": 0, "out_of_order_rows": 0}
        tailed = usp("tail", "usp.observations", "--n", "5", "--broker", broker.url)
        assert tailed.returncode == 0, tailed.stderr[-2000:]
        lines = [orjson.loads(line) for line in tailed.stdout.strip().splitlines()]
        assert len(lines) == 5
        assert all(m["series_id"] == "taxi" for m in lines)
        none = usp("tail", "usp.observations", "--n", "0", "--broker", broker.url)
        assert none.returncode == 0 and none.stdout == ""
        missing = usp("tail", "no.such.topic", "--broker", broker.url)
        assert missing.returncode == 2
