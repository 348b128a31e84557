"""The `usp` command line. Each subcommand's --help ends with an example."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
from kafka.errors import KafkaError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from agents.backtest import cmd_backtest
from models.config import ConfigError, USPConfig, load_config
from streams.broker import BrokerError, EmbeddedBroker, free_port
from streams.kafka import bootstrap_servers

log = logging.getLogger("usp")


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _config(args: argparse.Namespace) -> USPConfig:
    return load_config(getattr(args, "config", None))


@contextlib.contextmanager
def broker_for(url: str | None, console: Console) -> Iterator[str]:
    """The given broker URL (or $USP_BROKER); with neither, an embedded broker for this command."""
    url = url or os.environ.get("USP_BROKER")
    if url:
        try:
            bootstrap_servers(url)
        except ValueError as exc:
            raise BrokerError(str(exc)) from None
        yield url
        return
    with EmbeddedBroker() as broker:
        console.print(f"no --broker given: started an embedded broker on {broker.url} "
                      "(memory only; it stops with this command)", highlight=False)
        yield broker.url


def cmd_broker(args: argparse.Namespace, console: Console) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedBroker(port=args.port) as broker:
        print(broker.url, flush=True)
        console.print(f"embedded broker (tansu, memory storage) on {broker.url}; Ctrl-C stops it",
                      highlight=False)
        try:
            while not stop.wait(0.5):
                if broker._proc is not None and broker._proc.poll() is not None:
                    console.print(f"broker exited unexpectedly:\n{broker.log_tail()}")
                    return 1
        except KeyboardInterrupt:
            pass
    return 0


def cmd_evaluate(args: argparse.Namespace, console: Console) -> int:
    # Imported here: the evaluation data loaders pull in pandas and statsmodels (about 0.2 s), which no
    # other command needs, a worker's start least of all.
    from agents.evaluate import cmd_evaluate as evaluate

    return evaluate(args, console)


def cmd_bench(args: argparse.Namespace, console: Console) -> int:
    from agents.bench import cmd_bench as bench

    return bench(args, console)


def cmd_worker(args: argparse.Namespace, console: Console) -> int:
    from agents.worker import default_data_dir, run_worker
    from streams.app import WorkerSettings

    config = _config(args)
    web_port = args.web_port or free_port()
    with broker_for(args.broker, console) as url:
        settings = WorkerSettings(broker=url, data_dir=Path(args.data_dir or default_data_dir(web_port)),
                                  web_port=web_port, config=config)
        run_worker(settings, loglevel=args.loglevel, noop=args.noop, echo=args.echo)
    return 0


def cmd_publish(args: argparse.Namespace, console: Console) -> int:
    from streams.kafka import ensure_topics
    from streams.publish import CsvReport, publish_rows, read_csv

    config = _config(args)
    path = Path(args.file)
    if not path.is_file():
        console.print(f"[red]no such file:[/] {path}")
        return 2
    series_id = args.series_id or path.stem
    with open(path, "rb") as fh:
        total = max(sum(1 for _ in fh) - 1, 0)
    if args.limit is not None:
        total = min(total, args.limit)
    report = CsvReport()
    try:
        rows = read_csv(path, series_id, report, time_column=args.time_column, value_column=args.value_column)
    except (ValueError, OSError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    with broker_for(args.broker, console) as url:
        ensure_topics(url, config.streams.partitions)
        progress = Progress(TextColumn("publishing"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console,
                            disable=not console.is_terminal)
        with progress:
            task = progress.add_task("publish", total=total, rate="")
            sent = publish_rows(url, config.streams, rows, rate=args.rate,
                                limit=args.limit,
                                on_sent=lambda row, wall: progress.advance(task))
    if report.guessed:
        console.print(f"read column {report.columns[0]!r} as the time and {report.columns[1]!r} as the value",
                      highlight=False)
    for lineno, why in report.bad[:10]:
        console.print(f"[yellow]skipped line {lineno}:[/] {escape(why)}", highlight=False)
    if report.stale:
        console.print(f"[yellow]{report.stale} rows were not later than an earlier row[/] (out of order, or a "
                      "time read twice): the worker refuses them as stale, to the dead-letter topic; sort the "
                      "file by time first (`usp backtest` does)", highlight=False)
    print(orjson.dumps({"series_id": series_id, "published": sent, "skipped_rows": len(report.bad),
                        "out_of_order_rows": report.stale}).decode())
    return 0


def cmd_tail(args: argparse.Namespace, console: Console) -> int:
    from streams.tail import tail

    with broker_for(args.broker, console) as url:
        try:
            for rec in tail(url, args.topic, args.n, args.follow):
                value = rec.value.decode("utf-8", "replace") if rec.value is not None else "null"
                print(value, flush=True)
        except LookupError as exc:
            console.print(f"[red]{escape(str(exc))}[/]")
            return 2
        except KeyboardInterrupt:
            pass
    return 0


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from agents.run import RunError, run

    config = _config(args)
    if (args.time_column or args.value_column) and not args.input:
        console.print("[red]error:[/] --time-column and --value-column name the columns of an --input file")
        return 2
    try:
        summary = run(input_csv=Path(args.input) if args.input else None, series_id=args.series_id,
                      max_observations=args.max_observations, rate=args.rate, config=config,
                      config_path=Path(args.config) if args.config else None, console=console,
                      columns=(args.time_column, args.value_column))
    except RunError as exc:
        console.print(f"[red]usp run failed:[/] {escape(str(exc))}", highlight=False)
        return 1
    print(orjson.dumps(summary).decode(), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="usp", description="USP: a real-time streaming monitor and predictor on Kafka and Faust.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  usp run --max-observations 5000")
    parser.add_argument("--log-level", default=os.environ.get("USP_LOG_LEVEL", "WARNING"),
                        help="Python log level for USP's own messages (default $USP_LOG_LEVEL, else WARNING)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, epilog=f"example:\n  {example}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    def broker_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--broker", help="kafka://HOST:PORT of a running broker or cluster "
                       "(default: $USP_BROKER, else an embedded broker started for this command)")

    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="config.toml (default: built-in defaults)")

    def column_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--time-column", metavar="NAME", help="the CSV's time column (default: found by name)")
        p.add_argument("--value-column", metavar="NAME",
                       help="the CSV's value column, e.g. Close in a price export (default: found by name)")

    p = add("run", "Everything on one machine: embedded broker, a worker, a replay of a real stream, "
            "live status; prints a JSON summary as the last line.", "usp run --max-observations 5000")
    p.add_argument("--max-observations", type=int, help="stop after N observations are handled")
    p.add_argument("--input", help="replay this timestamp,value CSV instead of the bundled NAB series")
    p.add_argument("--series-id", help="series id for --input (default: the file name)")
    p.add_argument("--rate", type=_positive, help="publish at most R observations/s (default: as fast as possible)")
    column_args(p)
    config_arg(p)
    p.set_defaults(func=cmd_run)

    p = add("worker", "Run one Faust worker (predict agent). Start several against one broker to scale.",
            "usp worker --broker kafka://127.0.0.1:9092")
    broker_arg(p)
    config_arg(p)
    p.add_argument("--data-dir", help="table store directory; one per worker (default .usp/worker-PORT)")
    p.add_argument("--web-port", type=int, help="Faust web port on 127.0.0.1 (default: a free port)")
    p.add_argument("--loglevel", default="warning", help="Faust log level (default warning)")
    p.add_argument("--noop", action="store_true",
                   help="run a no-op agent with the same app settings instead of predict (usp bench's ceiling)")
    p.add_argument("--echo", action="store_true",
                   help="run a no-op agent that writes each observation as it came to usp.predictions "
                        "(usp bench's latency floor)")
    p.set_defaults(func=cmd_worker)

    p = add("broker", "Run the embedded Kafka-protocol broker (tansu, memory only) in the foreground.",
            "usp broker --port 9092")
    p.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one, printed)")
    p.set_defaults(func=cmd_broker)

    p = add("publish", "Publish a timestamp,value CSV to usp.observations.",
            "usp publish data.csv --series-id cpu-1 --rate 100 --broker kafka://127.0.0.1:9092")
    p.add_argument("file", help="CSV with time and value columns, e.g. a 'timestamp,value' header (see README)")
    p.add_argument("--series-id", help="series id (default: the file name without extension)")
    p.add_argument("--rate", type=_positive, help="observations per second (default: as fast as possible)")
    p.add_argument("--limit", type=int, help="publish at most N rows")
    column_args(p)
    broker_arg(p)
    config_arg(p)
    p.set_defaults(func=cmd_publish)

    p = add("backtest", "Run a timestamp,value CSV through the predictor offline; writes one row per input "
            "row (forecast made from earlier rows only) and prints a JSON summary as the last line.",
            "usp backtest data.csv --output out.csv --config config.toml")
    p.add_argument("file", help="CSV with time and value columns, e.g. a 'timestamp,value' header (see README); "
                                    "bad rows are reported and skipped")
    p.add_argument("--output", "-o", required=True, help="where to write the per-row CSV")
    column_args(p)
    config_arg(p)
    p.set_defaults(func=cmd_backtest)

    p = add("evaluate", "Score USP against baselines: forecast (MASE, coverage, Winkler), change points (F1, "
            "covering) and anomalies (NAB-style), with tables, an optional JSON report and plots.",
            "usp evaluate --suite all --json eval.json --plot plots/")
    p.add_argument("--suite", choices=("forecast", "changepoint", "anomaly", "all"), default="all",
                   help="which suite to run (default all)")
    p.add_argument("--json", metavar="OUT", help="write the full report (every series, every method) here")
    p.add_argument("--plot", metavar="DIR", help="write one PNG per series: forecast, band, alarms, truth")
    p.add_argument("--nab", metavar="DIR", help="NAB data folder (default: $USP_NAB_DATA or ../shared/data/nab)")
    p.add_argument("--max-rows", type=int, metavar="N", help="score only the first N rows of each series (quick runs)")
    p.add_argument("--split", choices=("all", "tune", "test"), default="all",
                   help="score every row (all), the first half of each series (tune) or the second (test); "
                        "pick parameters on tune, report test (walk-forward)")
    p.add_argument("--series", action="append", metavar="TEXT",
                   help="only series whose name contains TEXT (repeatable), e.g. --series nile --series nyc_taxi")
    config_arg(p)
    p.set_defaults(func=cmd_evaluate)

    p = add("bench", "Measure throughput, latency, step cost, back-test speed, memory and scaling on this "
            "machine (a benchmark: prints a table and a JSON line, asserts nothing).", "usp bench --quick")
    p.add_argument("--quick", action="store_true",
                   help="CI-sized run (under 2 minutes); memory scaled from 4,000 series")
    p.add_argument("--nab", default=os.environ.get("USP_NAB_DATA", "../shared/data/nab") + "/data",
                   help="NAB data folder whose longest series is back-tested (default ../shared/data/nab/data)")
    config_arg(p)
    p.set_defaults(func=cmd_bench)

    p = add("tail", "Print the last N records of a topic as JSON lines (optionally follow).",
            "usp tail usp.predictions --n 5 --broker kafka://127.0.0.1:9092")
    p.add_argument("topic", help="e.g. usp.predictions, usp.deadletter, usp.events")
    p.add_argument("--n", type=_count, default=10, help="records to show (default 10; 0 with --follow: new ones only)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    broker_arg(p)
    p.set_defaults(func=cmd_tail)
    return parser


def _enable_compile_cache() -> None:
    """Keep compiled steps on disk: a worker or back-test started again skips seconds of XLA compiles.
    $USP_JAX_CACHE picks the folder; USP_JAX_CACHE=off turns it off."""
    where = os.environ.get("USP_JAX_CACHE", str(Path.home() / ".cache" / "usp" / "jax"))
    if where.lower() == "off":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _enable_compile_cache()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console = Console(stderr=True, soft_wrap=True)  # one message, one line: logs and grep stay whole
    try:
        return int(args.func(args, console))
    except ConfigError as exc:
        console.print(f"[red]config error:[/] {escape(str(exc))}", highlight=False)
        return 2
    except BrokerError as exc:
        console.print(f"[red]broker error:[/] {escape(str(exc))}", highlight=False)
        return 1
    except KafkaError as exc:  # the clients' own: an address that does not answer, above all
        console.print(f"[red]broker error:[/] {escape(str(exc))} (is a broker running at that address?)",
                      highlight=False)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
