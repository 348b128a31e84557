"""`usp run`: the whole pipeline on one machine. Embedded broker, one worker, a replay of real data,
live status, and a JSON summary as the last line of stdout.

Latency is measured from the moment a row is handed to the producer to the broker timestamp of its
prediction (set by the worker's producer when it sends), so it covers broker, worker and batching.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from agents.supervise import ChildProcess
from models.config import USPConfig
from streams import codecs
from streams.broker import EmbeddedBroker, free_port
from streams.kafka import ensure_topics
from streams.publish import CsvReport, Row, demo_path, interleave, publish_rows, read_csv
from streams.tail import FollowedRecord, follow
from streams.topics import DEADLETTER, EVENTS, PREDICTIONS


class RunError(RuntimeError):
    """`usp run` could not complete; the message says why and what the worker logged."""


@dataclass
class RunStats:
    """Live counters shared by the publisher and monitor threads (ints under the GIL)."""

    published: int = 0
    predictions: int = 0
    deadletters: int = 0
    regime_changes: int = 0
    ready: bool = False
    first_publish: float | None = None
    last_prediction: float | None = None
    sent_at: dict[tuple[str, int], float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        handled = self.predictions + self.deadletters
        elapsed = ((self.last_prediction or time.time()) - self.first_publish) if self.first_publish else 0.0
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.asarray([np.nan])
        return {
            "observations": handled,
            "predictions": self.predictions,
            "deadletters": self.deadletters,
            "regime_changes": self.regime_changes,
            "elapsed_s": round(elapsed, 3),
            "throughput_obs_s": round(handled / elapsed, 1) if elapsed > 0 else 0.0,
            "latency_p50_ms": _round(float(np.percentile(lat, 50))),
            "latency_p99_ms": _round(float(np.percentile(lat, 99))),
        }


def _round(x: float) -> float | None:
    return None if np.isnan(x) else round(x, 2)


def _monitor(url: str, stats: RunStats, stop: threading.Event) -> None:
    def on_record(topic: str, rec: FollowedRecord) -> None:
        if topic == PREDICTIONS:
            msg = codecs.loads(rec.value)
            stats.predictions += 1
            stats.regime_changes += bool(msg.get("regime_change"))
            sent = stats.sent_at.pop((msg["series_id"], msg["ts"]), None)
            if sent is not None:
                stats.latencies_ms.append(rec.timestamp - sent * 1000.0)
            stats.last_prediction = rec.timestamp / 1000.0  # when the worker wrote it, not when seen here
        elif topic == DEADLETTER:
            stats.deadletters += 1
            stats.last_prediction = rec.timestamp / 1000.0
        elif codecs.loads(rec.value).get("kind") == "worker_ready":
            stats.ready = True

    follow(url, (PREDICTIONS, DEADLETTER, EVENTS), on_record, stop)


def _status_table(stats: RunStats, limit: int | None) -> Table:
    s = stats.summary()
    table = Table(title="USP run (Ctrl-C stops)", show_header=False, min_width=48)
    table.add_row("worker", "ready" if stats.ready else "starting (joining group, compiling)")
    table.add_row("published", f"{stats.published}" + (f" / {limit}" if limit else ""))
    table.add_row("predictions", str(stats.predictions))
    table.add_row("deadletters", str(stats.deadletters))
    table.add_row("regime changes (alarms)", str(stats.regime_changes))
    table.add_row("throughput obs/s", str(s["throughput_obs_s"]))
    table.add_row("latency p50 / p99 ms", f"{s['latency_p50_ms']} / {s['latency_p99_ms']}")
    return table


def _join_if_started(thread: threading.Thread, timeout_s: float) -> None:
    if thread.is_alive():
        thread.join(timeout_s)


def demo_rows(report: CsvReport) -> Iterator[Row]:
    """The bundled NAB series, interleaved by time as a live feed would deliver them."""
    return interleave(*(read_csv(demo_path(name), name, report) for name in ("machine_temperature",
                                                                             "nyc_taxi")))


def run(
    *, input_csv: Path | None, series_id: str | None, max_observations: int | None,
    rate: float | None, config: USPConfig, config_path: Path | None, console: Console,
    ready_timeout_s: float = 120.0, columns: tuple[str | None, str | None] = (None, None),
) -> dict[str, Any]:
    """Run everything until the input is exhausted, the limit is reached, or Ctrl-C/SIGTERM. `columns`:
    the time and value columns of `input_csv` by name, where not found by the reader's own names."""
    if input_csv is not None and not input_csv.is_file():
        raise RunError(f"input file {input_csv} does not exist")
    stats = RunStats()
    stop = threading.Event()
    report = CsvReport()
    try:
        rows = (read_csv(input_csv, series_id or input_csv.stem, report, time_column=columns[0],
                         value_column=columns[1]) if input_csv else demo_rows(report))
    except (ValueError, OSError) as exc:
        raise RunError(str(exc)) from exc
    data_dir = Path(tempfile.mkdtemp(prefix="usp-run-"))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    worker: ChildProcess | None = None
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, data_dir, True)
        cleanup.callback(signal.signal, signal.SIGTERM, previous)
        broker = cleanup.enter_context(EmbeddedBroker())
        console.print(f"[bold]embedded broker[/] on {broker.url}", highlight=False)
        ensure_topics(broker.url, config.streams.partitions)
        worker_args = ["worker", "--broker", broker.url, "--data-dir", str(data_dir),
                       "--web-port", str(free_port())]
        if config_path is not None:
            worker_args += ["--config", str(config_path)]
        worker = ChildProcess(worker_args, "worker")
        cleanup.callback(worker.cleanup)
        cleanup.callback(worker.stop)
        monitor = threading.Thread(target=_monitor, args=(broker.url, stats, stop), daemon=True)
        monitor.start()
        cleanup.callback(monitor.join, 5)
        cleanup.callback(stop.set)

        def on_sent(row: Row, wall: float) -> None:
            stats.sent_at[(row.series_id, row.ts_ns)] = wall
            stats.published += 1
            if stats.first_publish is None:
                stats.first_publish = wall

        publisher_done = threading.Event()
        publisher_error: list[BaseException] = []

        def publish() -> None:
            try:
                publish_rows(broker.url, config.streams, rows, rate=rate, limit=max_observations, on_sent=on_sent,
                             should_stop=stop.is_set)
            except Exception as exc:  # reported by the main loop
                publisher_error.append(exc)
            finally:
                publisher_done.set()

        publisher = threading.Thread(target=publish, daemon=True)
        # Before the broker stops: the publisher sees `stop`, flushes what it holds and closes its producer.
        cleanup.callback(_join_if_started, publisher, 5.0)
        live = Live(_status_table(stats, max_observations), console=console, refresh_per_second=4,
                    transient=False) if console.is_terminal else None
        last_line = 0.0
        with live if live is not None else contextlib.nullcontext():
            try:
                deadline = time.monotonic() + ready_timeout_s
                while not stats.ready and not stop.is_set():
                    if not worker.alive():
                        raise RunError(f"worker exited early with code {worker.proc.returncode}:\n"
                                       f"{worker.log_tail()}")
                    if time.monotonic() > deadline:
                        raise RunError(f"worker not ready after {ready_timeout_s:.0f} s:\n{worker.log_tail()}")
                    stop.wait(0.1)
                    _refresh(live, stats, max_observations)
                publisher.start()
                while not stop.is_set():
                    handled = stats.predictions + stats.deadletters
                    if max_observations is not None and handled >= max_observations:
                        break
                    if publisher_error:
                        raise RunError(f"publishing the input failed: {publisher_error[0]}")
                    if publisher_done.is_set() and handled >= stats.published:
                        break
                    if not worker.alive():
                        raise RunError(f"worker died with code {worker.proc.returncode}:\n{worker.log_tail()}")
                    stop.wait(0.1)
                    _refresh(live, stats, max_observations)
                    if live is None and time.monotonic() - last_line > 2.0:
                        last_line = time.monotonic()
                        s = stats.summary()
                        console.print(f"published {stats.published} predictions {stats.predictions} "
                                      f"deadletters {stats.deadletters} throughput {s['throughput_obs_s']} "
                                      f"obs/s p99 {s['latency_p99_ms'] if s['latency_p99_ms'] is not None else '-'} ms",
                                      highlight=False)
            except KeyboardInterrupt:
                console.print("interrupted: stopping worker and broker")
            finally:
                stop.set()
                _refresh(live, stats, max_observations)
    if report.bad:
        console.print(f"{len(report.bad)} CSV rows skipped, first: line {report.bad[0][0]}: {report.bad[0][1]}")
    if report.stale:
        advice = ("sort the file by time first" if input_csv
                  else "the bundled machine_temperature steps back 55 minutes once")
        console.print(f"{report.stale} CSV rows were not later than an earlier row (refused as stale: {advice})",
                      highlight=False)
    return stats.summary()


def _refresh(live: Live | None, stats: RunStats, limit: int | None) -> None:
    if live is not None:
        live.update(_status_table(stats, limit))
