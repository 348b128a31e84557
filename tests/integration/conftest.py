"""Real parts for integration tests: the embedded broker and `usp worker` processes.

Nothing sleeps to synchronise: `Collector` reads topics in a background thread and tests wait on
conditions with deadlines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from agents.supervise import ChildProcess
from models.config import StreamsConfig
from streams.broker import EmbeddedBroker, free_port
from streams.kafka import ensure_topics, make_consumer
from streams.tail import partitions_of
from streams.topics import DEADLETTER, EVENTS, OBSERVATIONS, PREDICTIONS

PARTITIONS = 4
#: Deadline for a worker to announce its partitions (process start, bucket compiles, group join).
WORKER_READY_S = 180


class Collector:
    """Reads usp.predictions, usp.deadletter and usp.events from the start into lists."""

    def __init__(self, url: str) -> None:
        self.records: dict[str, list[dict[str, Any]]] = {PREDICTIONS: [], DEADLETTER: [], EVENTS: []}
        self._stop = threading.Event()
        self._consumer = make_consumer(url, StreamsConfig(), group_id=None)
        self._consumer.assign([tp for t in self.records for tp in partitions_of(self._consumer, t)])
        self._consumer.seek_to_beginning()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for tp, recs in self._consumer.poll(timeout_ms=100).items():
                for rec in recs:
                    self.records[tp.topic].append(orjson.loads(rec.value))

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str,
                 worker: ChildProcess | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if worker is not None and not worker.alive():
                raise AssertionError(f"worker died while waiting for {what}:\n{worker.log_tail()}")
            if time.monotonic() > deadline:
                detail = worker.log_tail() if worker is not None else ""
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{detail}")
            self._stop.wait(0.05)

    def ready_events(self) -> int:
        return sum(1 for e in self.records[EVENTS] if e["kind"] == "worker_ready")

    def predictions_for(self, series_id: str) -> list[dict[str, Any]]:
        return [p for p in self.records[PREDICTIONS] if p["series_id"] == series_id]

    def deadletters_for(self, series_id: str) -> list[dict[str, Any]]:
        return [d for d in self.records[DEADLETTER] if d["series_id"] == series_id]

    def events_for(self, series_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.records[EVENTS]
                if e["series_id"] == series_id and (kind is None or e["kind"] == kind)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        ensure_topics(b.url, PARTITIONS)
        yield b


@pytest.fixture
def collector(broker: EmbeddedBroker) -> Iterator[Collector]:
    c = Collector(broker.url)
    yield c
    c.close()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    # Every integration test shares this config, so a worker start compiles (or loads from JAX's
    # persistent cache) one set of buckets. frozen_steps and recovery_steps are small so a short test
    # series can be frozen and then recover; frozen_season_fraction = 0 so frozen_steps alone decides
    # (minute rows have a daily season, and a flat run up to half of it would otherwise be allowed).
    path.write_text(f"[streams]\npartitions = {PARTITIONS}\n"
                    "[orchestration]\nwarmup_steps = 5\nfrozen_steps = 5\nfrozen_season_fraction = 0.0\n"
                    "recovery_steps = 3\n")
    return path


@pytest.fixture
def start_worker(broker: EmbeddedBroker, collector: Collector, config_file: Path,
                 tmp_path: Path) -> Iterator[Callable[[str], ChildProcess]]:
    """Start a worker (data dir named `name`) and wait until it announces its partitions."""
    workers: list[ChildProcess] = []

    def start(name: str) -> ChildProcess:
        before = collector.ready_events()
        worker = ChildProcess(["worker", "--broker", broker.url, "--config", str(config_file),
                               "--data-dir", str(tmp_path / name), "--web-port", str(free_port())],
                              name)
        workers.append(worker)
        started = time.monotonic()
        # A cold start compiles eight batch buckets of the step (about 40 s on a 2-core machine); a start
        # with JAX's persistent cache warm takes a few seconds.
        collector.wait_for(lambda: collector.ready_events() > before, WORKER_READY_S, f"{name} to be ready",
                           worker)
        ready = [e for e in collector.records[EVENTS] if e["kind"] == "worker_ready"][-1]
        print(f"{name} ready in {time.monotonic() - started:.1f} s "
              f"(compile warm-up {ready['details'].get('warm_up_s')} s)")
        return worker

    yield start
    for w in workers:
        w.stop()
        w.cleanup()


@pytest.fixture
def producer(broker: EmbeddedBroker) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    yield p
    p.close(5)


def send(producer: KafkaProducer, key: bytes | None, value: bytes) -> None:
    producer.send(OBSERVATIONS, key=key, value=value)
