"""`usp bench`: the performance figures of issue 5, measured in one run on this machine.

A benchmark, not a test: it prints a table and, as its last stdout line, one JSON object; it asserts
nothing. Every end-to-end figure runs real processes over the embedded broker, each on a fresh broker so
no run sees another's records:

- `noop_faust_obs_s` and `pipeline_obs_s`: a backlog of synthetic observations is published first, then
  one worker (`usp worker --noop`, a no-op agent with the same app settings, or the real `usp worker`)
  starts and drains it. Throughput is the backlog over the time from the worker's `worker_ready` event
  (the group has assigned it every partition) to the broker timestamp of its last output. The full
  run drains three no-op / pipeline pairs, each pair back to back, and reports the medians, with
  `pipeline_vs_noop` the median of the pairs' ratios (all three in `pipeline_vs_noop_pairs`): the
  machine's speed moves by tens of percent within minutes, as much as the ratio's margin. `--quick`
  drains one pair.
  `noop_cpu_us_per_obs` / `pipeline_cpu_us_per_obs`: the worker's CPU time (all threads, /proc) over
  the same drain, per observation; `pipeline_vs_noop_cpu` is their ratio, the throughput ratio the two
  would have with a core each, steadier than the rates on a machine whose speed moves.
- `latency_p50_ms` / `latency_p99_ms`: the first pipeline worker, now warm, is fed at half its drain's
  rate (`latency_rate_obs_s`);
  latency is from handing a row to the producer to the broker timestamp of its prediction.
  `noop_latency_p50_ms` / `noop_latency_p99_ms`: the same two stages (the backlog, then the paced rows
  at the same rate) on a fresh broker with a no-op agent that echoes each observation to the
  predictions topic (`usp worker --echo`): the latency Faust and the broker give before any USP work,
  the floor the pipeline's is compared with (`latency_p99_vs_noop`). On the embedded broker the tail of
  both grows with the topics' record batches (quirk D), so both run after the same backlog.
- `rss_mb_100k_series`: the same worker is then sent one observation each for that many new series and
  its resident memory is read from /proc. `--quick` sends 4,000 and scales the growth to 100,000
  (the JSON says which with `rss_series_measured`).
- `scale_2w_vs_1w`: throughput of two workers splitting the 8 partitions over one worker's, both
  measured the same way, each on a fresh broker: workers ready first, then rows of new series published
  as fast as the producer goes. (Until stop 19 the one-worker side ran on the pipeline stage's broker,
  just after the paced stage's tens of thousands of small record batches, which make a fetch dearer on
  the embedded broker, quirk D: the ratio read 2.16-2.29.)
- `step_us_b*`, `backtest_ticks_s`, `state_bytes_per_series`: the numeric core in this process
  (`models.perf`), run first while the machine is otherwise idle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

from agents.supervise import ChildProcess
from models import perf
from models.config import PredictorConfig, USPConfig, load_config
from models.state import state_bytes
from streams import codecs
from streams.broker import EmbeddedBroker, free_port
from streams.kafka import ensure_topics
from streams.publish import publish_items
from streams.tail import FollowedRecord, follow
from streams.take import resident_mb
from streams.topics import DEADLETTER, EVENTS, PREDICTIONS

#: Five-minute rows from 2026-01-01 UTC (as models.perf): every series gets its daily season.
T0_NS, STEP_NS = perf.T0_NS, perf.STEP_NS


class BenchError(RuntimeError):
    """A benchmark stage could not complete; the message says which and what the worker logged."""


@dataclass(frozen=True)
class Plan:
    """How much each stage does. `series` spreads the backlog over that many series, round robin, so a
    micro-batch holds many series (the batched step's case) and each series sees several ticks."""

    observations: int
    series: int
    latency_s: float
    rss_series: int
    step_ticks: int
    step_repeats: int
    backtest_repeats: int
    #: no-op / pipeline drains run back to back, each pair on fresh brokers; the figures are their medians
    drain_pairs: int = 1


QUICK = Plan(observations=10_000, series=300, latency_s=5.0, rss_series=4_000, step_ticks=20, step_repeats=2,
             backtest_repeats=1)
FULL = Plan(observations=40_000, series=1_000, latency_s=30.0, rss_series=100_000, step_ticks=50,
            step_repeats=3, backtest_repeats=3, drain_pairs=3)


@dataclass
class Workload:
    """Pre-encoded observations: random walks on a five-minute clock, `series` of them interleaved."""

    prefix: str
    series: int
    next_tick: int = 0
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    level: np.ndarray | None = None

    def rows(self, n: int) -> list[tuple[bytes, bytes, str, int]]:
        if self.level is None:
            self.level = 100.0 + 10.0 * self.rng.standard_normal(self.series)
        out = []
        for k in range(n):
            i = k % self.series
            if i == 0 and k:
                self.next_tick += 1
            self.level[i] += self.rng.standard_normal()
            sid = f"{self.prefix}-{i:06d}"
            ts = T0_NS + (self.next_tick + 1) * STEP_NS
            out.append((sid.encode(), codecs.encode_observation(sid, ts, float(self.level[i])), sid, ts))
        self.next_tick += 1
        return out


class Ready(NamedTuple):
    """A worker's latest `worker_ready`: its broker time, the partitions it holds, its CPU seconds then."""

    broker_ms: int
    partitions: list[int]
    cpu_s: float


@dataclass
class Outputs:
    """What a monitor thread has seen on the output topics (ints and lists under the GIL)."""

    outputs: int = 0
    last_output_ms: int = 0
    progress: int = 0  # observations the no-op agent reports having taken
    ready: dict[int, Ready] = field(default_factory=dict)  # pid -> its latest worker_ready
    sent_at: dict[tuple[str, int], float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)


def _monitor(url: str, seen: Outputs, stop: threading.Event) -> None:
    def on_record(topic: str, rec: FollowedRecord) -> None:
        if topic == EVENTS:
            event = codecs.loads(rec.value)
            if event["kind"] == "worker_ready":
                details = event["details"]
                seen.ready[details["pid"]] = Ready(rec.timestamp, details["partitions"], details["cpu_s"])
            elif event["kind"] == "bench_progress":
                seen.progress += event["details"]["count"]
                seen.last_output_ms = max(seen.last_output_ms, rec.timestamp)
            return
        if topic == PREDICTIONS and seen.sent_at:
            msg = codecs.loads(rec.value)
            sent = seen.sent_at.pop((msg["series_id"], msg["ts"]), None)
            if sent is not None:
                seen.latencies_ms.append(rec.timestamp - sent * 1000.0)
        seen.outputs += 1
        seen.last_output_ms = max(seen.last_output_ms, rec.timestamp)

    follow(url, (PREDICTIONS, DEADLETTER, EVENTS), on_record, stop)


class Stack(contextlib.ExitStack):
    """A fresh embedded broker with USP's topics, a monitor of its output topics, and workers."""

    def __init__(self, config: USPConfig, config_path: Path | None) -> None:
        super().__init__()
        self.config = config
        self.config_path = config_path
        self.seen = Outputs()
        self.workers: list[ChildProcess] = []

    def __enter__(self) -> Stack:
        super().__enter__()
        broker = self.enter_context(EmbeddedBroker())
        self.url = broker.url
        ensure_topics(self.url, self.config.streams.partitions)
        self.data_dir = Path(tempfile.mkdtemp(prefix="usp-bench-"))
        self.callback(shutil.rmtree, self.data_dir, True)
        stop = threading.Event()
        monitor = threading.Thread(target=_monitor, args=(self.url, self.seen, stop), daemon=True)
        monitor.start()
        self.callback(monitor.join, 5)
        self.callback(stop.set)
        return self

    def start_worker(self, noop: bool = False, echo: bool = False) -> ChildProcess:
        n = len(self.workers)
        args = ["worker", "--broker", self.url, "--data-dir", str(self.data_dir / f"w{n}"),
                "--web-port", str(free_port())]
        if self.config_path is not None:
            args += ["--config", str(self.config_path)]
        worker = ChildProcess(args + (["--noop"] if noop else []) + (["--echo"] if echo else []), f"bench-w{n}")
        self.callback(worker.cleanup)
        self.callback(worker.stop)
        self.workers.append(worker)
        return worker

    def wait(self, what: str, done: Callable[[], bool], timeout_s: float) -> None:
        """Poll `done` until true; fail with the workers' logs if one dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while not done():
            for w in self.workers:
                if not w.alive():
                    raise BenchError(f"{what}: worker exited with code {w.proc.returncode}:\n{w.log_tail()}")
            if time.monotonic() > deadline:
                logs = "\n".join(w.log_tail(10) for w in self.workers)
                raise BenchError(f"{what}: not done after {timeout_s:.0f} s\n{logs}")
            time.sleep(0.02)

    def ready_split(self, workers: int) -> bool:
        """True once `workers` workers' latest assignments cover every partition, each held once."""
        if len(self.seen.ready) < workers:
            return False
        held = [p for ready in self.seen.ready.values() for p in ready.partitions]
        return sorted(held) == list(range(self.config.streams.partitions)) and all(
            ready.partitions for ready in self.seen.ready.values())

    def drain_backlog(self, work: Workload, n: int, noop: bool = False, echo: bool = False) -> Drain:
        """Publish a backlog of n rows of `work`, then start one worker and time its drain. The clock
        runs from the worker's `worker_ready` to the broker time of its last output; the worker's CPU
        time (all its threads) from the figure its `worker_ready` carries to a /proc reading once the
        monitor has seen the last output (the monitor sees records up to its fetch wait late: reading
        /proc at the start too would miss the first part of a short drain)."""
        self.publish(work.rows(n))
        worker = self.start_worker(noop=noop, echo=echo)
        self.wait("worker start (joining group, compiling)", lambda: self.ready_split(1), 300)
        ready = self.seen.ready[worker.proc.pid]
        cpu_start, start_ms = ready.cpu_s, ready.broker_ms
        self.wait("drain", lambda: (self.seen.progress if noop or echo else self.seen.outputs) >= n, 600)
        cpu = _cpu_s(worker.proc.pid) - cpu_start
        return Drain(n / max((self.seen.last_output_ms - start_ms) / 1000.0, 1e-3), cpu / n * 1e6, worker)

    def paced_latencies(self, work: Workload, rate: float, seconds: float, done: int) -> np.ndarray:
        """Publish `seconds` of `work` at `rate`/s to the ready worker, which has put out `done` records
        so far; returns each row's latency (ms) from its due time to its output's broker timestamp."""
        paced = max(int(rate * seconds), 10)
        before = len(self.seen.latencies_ms)
        self.publish(work.rows(paced), rate=rate, track=True)
        self.wait("paced run", lambda: self.seen.outputs >= done + paced, 120)
        return np.asarray(self.seen.latencies_ms[before:])

    def live_rate(self, n: int, series: int) -> float:
        """Obs/s for n rows of new series published as fast as the producer goes to the ready workers."""
        done = self.seen.outputs
        first = self.publish(Workload("live", series).rows(n))
        self.wait("live drain", lambda: self.seen.outputs >= done + n, 600)
        return n / max(self.seen.last_output_ms / 1000.0 - first, 1e-3)

    def publish(self, rows: list[tuple[bytes, bytes, str, int]], rate: float | None = None,
                track: bool = False) -> float:
        """Send rows (paced to `rate`/s if given) with `streams.publish.publish_items`, as `usp publish`
        does; returns the wall time of the first send. With `track`, each row's send time (paced: the
        time it fell due, so the producer's linger counts in the latency) is kept for the monitor."""

        def sent(row: tuple[bytes, bytes, str, int], wall: float) -> None:
            self.seen.sent_at[(row[2], row[3])] = wall

        first = time.time()
        publish_items(self.url, self.config.streams, rows, lambda row: (row[0], row[1]), rate=rate,
                      on_sent=sent if track else None)
        return first


class Drain(NamedTuple):
    """One worker draining a backlog: observations/s, its CPU microseconds per observation (less
    sensitive than the rate to what else the machine runs), and the worker."""

    obs_s: float
    cpu_us_per_obs: float
    worker: ChildProcess


def _worker_rss_mb(worker: ChildProcess) -> float:
    """The worker's resident set; `resident_mb` answers 0 where /proc has none, which is no figure."""
    rss = resident_mb(worker.proc.pid)
    if rss <= 0:
        raise BenchError(f"no resident set for worker pid {worker.proc.pid} (exited?):\n{worker.log_tail()}")
    return rss


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backlog_drain(config: USPConfig, config_path: Path | None, n: int, series: int, noop: bool) -> Drain:
    """The no-op worker (`noop`) or the real one draining a backlog of n published before it starts."""
    with Stack(config, config_path) as stack:
        return stack.drain_backlog(Workload("drain", series), n, noop=noop)


@dataclass
class PipelineFigures:
    pipeline_obs_s: float
    pipeline_cpu_us_per_obs: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_samples: int
    rss_mb_measured: float
    rss_series_measured: int
    rss_mb_100k_series: float


def pipeline_run(config: USPConfig, config_path: Path | None, plan: Plan, console: Console) -> PipelineFigures:
    """The real worker: drain a backlog, then a paced run at half that rate, then many new series for
    its memory."""
    with Stack(config, config_path) as stack:
        n = plan.observations
        work = Workload("drain", plan.series)
        rate, cpu_us, worker = stack.drain_backlog(work, n)
        console.print(f"pipeline drained {n:,} observations: {rate:,.0f} obs/s, {cpu_us:,.0f} µs of worker "
                      "CPU each", highlight=False)

        console.print(f"latency: {max(int(rate / 2 * plan.latency_s), 10):,} observations at {rate / 2:,.0f} "
                      "obs/s", highlight=False)
        lat = stack.paced_latencies(work, rate / 2, plan.latency_s, n)

        rss_start = _worker_rss_mb(worker)
        many = Workload("rss", plan.rss_series, rng=np.random.default_rng(1))
        console.print(f"memory: one observation for each of {plan.rss_series:,} new series", highlight=False)
        done = stack.seen.outputs
        stack.publish(many.rows(plan.rss_series))
        stack.wait("new series", lambda: stack.seen.outputs >= done + plan.rss_series, 900)
        rss = _worker_rss_mb(worker)
        held = 2 * plan.series + plan.rss_series
        # Never below zero: a heap trim between the two readings can make the second the lower (a quick
        # run read 765 MB at 4,600 series, and the negative growth scaled that down to 630 at 100,000).
        per_series = max(rss - rss_start, 0.0) / plan.rss_series
        at_100k = rss if held >= 100_000 else rss + per_series * (100_000 - held)
        return PipelineFigures(
            pipeline_obs_s=rate, pipeline_cpu_us_per_obs=cpu_us,
            latency_p50_ms=_percentile(lat, 50), latency_p99_ms=_percentile(lat, 99), latency_samples=int(lat.size),
            rss_mb_measured=rss, rss_series_measured=held, rss_mb_100k_series=at_100k)


def _median(values: Iterable[float]) -> float:
    return float(np.median(list(values)))


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else float("nan")


def noop_latency(config: USPConfig, config_path: Path | None, plan: Plan, rate: float) -> tuple[float, float]:
    """(p50, p99) ms of the echoing no-op worker: the pipeline's backlog and paced stages, same rate."""
    with Stack(config, config_path) as stack:
        n = plan.observations
        work = Workload("drain", plan.series)
        stack.drain_backlog(work, n, echo=True)
        lat = stack.paced_latencies(work, rate, plan.latency_s, n)
        return _percentile(lat, 50), _percentile(lat, 99)


def live_rate(config: USPConfig, config_path: Path | None, workers: int, n: int, series: int) -> float:
    """`Stack.live_rate` on a fresh broker with `workers` workers splitting the partitions, all ready
    first: the two sides of `scale_2w_vs_1w` measured alike."""
    with Stack(config, config_path) as stack:
        for _ in range(workers):
            stack.start_worker()
        stack.wait(f"{workers} worker(s) sharing the partitions", lambda: stack.ready_split(workers), 300)
        return stack.live_rate(n, series)


def numeric(plan: Plan, config: PredictorConfig, nab: Path, console: Console) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for b in perf.DEFAULT_SIZES:
        figures[f"step_us_b{b}"] = perf.step_us_per_series_tick(b, config, plan.step_ticks, plan.step_repeats)
        console.print(f"orchestrate_step_batch B={b}: {figures[f'step_us_b{b}']:.2f} us per series-tick",
                      highlight=False)
    path = perf.longest_nab_series(nab)
    rows, tps, _ = perf.backtest_ticks_per_s(path, config, plan.backtest_repeats)
    figures.update(backtest_series=path.name, backtest_rows=rows, backtest_ticks_s=tps,
                   state_bytes_per_series=state_bytes(config))
    console.print(f"backtest {path.name} ({rows:,} rows): {tps:,.0f} ticks/s", highlight=False)
    return figures


TARGETS: dict[str, tuple[str, float]] = {
    "pipeline_vs_noop": (">=", 0.7), "latency_p99_ms": ("<=", 100.0), "step_us_b1024": ("<=", 10.0),
    "backtest_ticks_s": (">=", 50_000.0), "state_bytes_per_series": ("<=", 4096.0),
    "rss_mb_100k_series": ("<=", 1024.0),
}


def report_table(figures: dict[str, Any]) -> Table:
    table = Table(title="usp bench")
    for col in ("figure", "value", "target", "met"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    for key, value in figures.items():
        if isinstance(value, (str, list)):
            continue
        op, bound = TARGETS.get(key, ("", float("nan")))
        met = "" if not op else ("yes" if (value >= bound if op == ">=" else value <= bound) else "no")
        table.add_row(key, f"{value:,.2f}" if isinstance(value, float) else f"{value:,}",
                      f"{op} {bound:g}" if op else "", met)
    return table


def _quiet_fork_warning() -> None:
    # Workers are started with fork+exec (so they die with this process); the fork happens in a process
    # where JAX's threads run, which Python warns about, but exec follows at once and nothing is shared.
    warnings.filterwarnings("ignore", message="os.fork\\(\\) was called", category=RuntimeWarning)


def bench(*, quick: bool, config: USPConfig, config_path: Path | None, nab: Path,
          console: Console) -> dict[str, Any]:
    """Run every stage; returns the figures (the CLI prints them)."""
    plan = QUICK if quick else FULL
    _quiet_fork_warning()
    started = time.monotonic()
    figures: dict[str, Any] = {"mode": "quick" if quick else "full"}
    figures.update(numeric(plan, config.predictor, nab, console))
    n = plan.observations
    noop = backlog_drain(config, config_path, n, plan.series, noop=True)
    console.print(f"no-op Faust agent drained {n:,} observations: {noop.obs_s:,.0f} obs/s, "
                  f"{noop.cpu_us_per_obs:,.0f} µs of worker CPU each", highlight=False)
    pipe = pipeline_run(config, config_path, plan, console)
    floor_p50, floor_p99 = noop_latency(config, config_path, plan, pipe.pipeline_obs_s / 2)
    console.print(f"no-op agent echoing each observation at the same rate: latency p50 {floor_p50:,.0f} ms, "
                  f"p99 {floor_p99:,.0f} ms", highlight=False)
    # The machine's speed moves by tens of percent within minutes, as much as the ratio's margin: more
    # pairs, each measured back to back, and the medians.
    noops = [(noop.obs_s, noop.cpu_us_per_obs)]
    pipes = [(pipe.pipeline_obs_s, pipe.pipeline_cpu_us_per_obs)]
    for pair in range(2, plan.drain_pairs + 1):
        for side, drains in (("no-op", noops), ("pipeline", pipes)):
            drain = backlog_drain(config, config_path, n, plan.series, noop=side == "no-op")
            drains.append((drain.obs_s, drain.cpu_us_per_obs))
            console.print(f"drain pair {pair}, {side}: {drain.obs_s:,.0f} obs/s, {drain.cpu_us_per_obs:,.0f} µs "
                          "of worker CPU each", highlight=False)
    one = live_rate(config, config_path, 1, n, plan.series)
    two = live_rate(config, config_path, 2, n, plan.series)
    console.print(f"live publish, 1 worker {one:,.0f} obs/s, 2 workers {two:,.0f} obs/s", highlight=False)
    figures.update(
        noop_faust_obs_s=_median(o for o, _ in noops), pipeline_obs_s=_median(p for p, _ in pipes),
        pipeline_vs_noop=_median(p / o for (p, _), (o, _) in zip(pipes, noops, strict=True)),
        pipeline_vs_noop_pairs=[round(p / o, 3) for (p, _), (o, _) in zip(pipes, noops, strict=True)],
        # The same ratio from worker CPU per observation: what the rate ratio would be if each worker had
        # a core to itself (the rates also move with whatever else the machine runs).
        noop_cpu_us_per_obs=_median(c for _, c in noops), pipeline_cpu_us_per_obs=_median(c for _, c in pipes),
        pipeline_vs_noop_cpu=_median(o / p for (_, p), (_, o) in zip(pipes, noops, strict=True)),
        latency_p50_ms=pipe.latency_p50_ms, latency_p99_ms=pipe.latency_p99_ms,
        latency_rate_obs_s=pipe.pipeline_obs_s / 2,  # half the first pipeline drain's rate, in its stack
        latency_samples=pipe.latency_samples, noop_latency_p50_ms=floor_p50, noop_latency_p99_ms=floor_p99,
        latency_p99_vs_noop=pipe.latency_p99_ms / floor_p99, rss_mb_100k_series=pipe.rss_mb_100k_series,
        rss_mb_measured=pipe.rss_mb_measured, rss_series_measured=pipe.rss_series_measured,
        live_1w_obs_s=one, live_2w_obs_s=two, scale_2w_vs_1w=two / one,
        observations=n, series=plan.series, cpus=os.cpu_count() or 0,
        elapsed_s=time.monotonic() - started,
    )
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in figures.items()}


def cmd_bench(args: Any, console: Console) -> int:
    config_path = Path(args.config) if args.config else None
    try:
        figures = bench(quick=args.quick, config=load_config(config_path), config_path=config_path,
                        nab=Path(args.nab), console=console)
    except BenchError as exc:
        console.print(f"[red]usp bench failed:[/] {exc}", highlight=False)
        return 1
    console.print(report_table(figures))
    print(orjson.dumps(figures).decode(), flush=True)
    return 0
