"""`usp worker`: one Faust worker running the predict agent. Several may share one broker."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import faust
from jax._src import xla_bridge  # only for `backends_are_initialized`, which jax.extend does not export

from agents.predict import PredictProcessor, register_predict_agent
from agents.ready import announce_ready
from streams import codecs
from streams.app import USPApp, WorkerSettings, create_app, observations_topic, state_table
from streams.kafka import ensure_topics
from streams.output import OutputProducer
from streams.take import adaptive_take_events, batch_sizer, freeze_heap, release_free_heap
from streams.topics import EVENTS, PREDICTIONS

log = logging.getLogger(__name__)


def pin_step_runtime(threads: int) -> bool:
    """Run the process's compiled steps on `threads` XLA threads (0: XLA's default, one per core).
    Returns False, and changes nothing, once JAX has made its CPU client: XLA sizes that client's
    thread pool from the NPROC environment variable when it makes it (`DefaultThreadPoolSize` in
    xla/pjrt/utils.cc), once per process.

    Why one (`streams.step_threads` says more): the worker's event loop waits for each step, and a
    second thread cost more CPU than it saved. Measured in-process on the 2-core machine, µs per
    series-tick, wall / CPU, XLA's default against one thread:
    - at a round of 16 series: 21.4 / 24.3 against 18.4 / 17.7;
    - at 256 series: 8.3 / 12.0 against 8.1 / 8.1;
    - at 1,024 series: 7.4 / 10.7 against 8.4 / 8.4 (the one case where two threads shorten the wait).
    Dispatch stays asynchronous: `models.batching.round_chunks` relies on it.
    """
    if xla_bridge.backends_are_initialized():
        log.warning("JAX is already running: streams.step_threads = %d not applied", threads)
        return False
    if threads > 0:
        os.environ["NPROC"] = str(threads)
    return True


def build_worker_app(settings: WorkerSettings) -> tuple[USPApp, PredictProcessor]:
    """The app with its topics, table and agents, ready for `faust.Worker`."""
    app = create_app(settings)
    partitions = settings.config.streams.partitions
    source = observations_topic(app, partitions)
    table = state_table(app, partitions)
    processor = PredictProcessor(settings.config, table, OutputProducer(settings.broker, settings.config.streams))
    register_predict_agent(app, processor, source)
    return app, processor


def build_noop_app(settings: WorkerSettings, echo: bool = False) -> USPApp:
    """The worker's app (same settings, topic and table) with a no-op agent in place of predict.

    It takes micro-batches as the predict agent does and only counts them: one `bench_progress` event
    per batch says how many it took. `usp bench` drains a backlog with it to measure what Faust itself
    can do on this machine, the ceiling the pipeline is compared with. With `echo` it also writes each
    observation, as it came, to usp.predictions (one output per input, as predict writes): the latency
    of that is the floor the pipeline's latency is compared with.
    """
    app = create_app(settings)
    streams = settings.config.streams
    source = observations_topic(app, streams.partitions)
    state_table(app, streams.partitions)
    output = OutputProducer(settings.broker, streams)
    sizer = batch_sizer(streams)

    @app.agent(source, name="usp.noop")
    async def noop(stream: faust.StreamT) -> None:
        await output.start()
        freeze_heap()  # as the predict agent does, so the ceiling is measured under the same collector
        try:
            async for events in adaptive_take_events(stream, sizer):
                if echo:
                    for each in events:
                        await output.send(PREDICTIONS, each.message.key, each.message.value or b"")
                event = codecs.event_dict("bench_progress", None, "info", {"count": len(events)})
                await output.send(EVENTS, None, codecs.dumps(event))
                await output.flush()
        finally:
            await output.stop()

    announce_ready(app, output, source)
    return app


def run_worker(settings: WorkerSettings, loglevel: str = "warning", noop: bool = False, echo: bool = False) -> None:
    """Run one worker in the foreground until SIGTERM/SIGINT (`noop`: the benchmark's no-op agent,
    `echo`: one that echoes each observation to usp.predictions)."""
    ensure_topics(settings.broker, settings.config.streams.partitions)
    pin_step_runtime(settings.config.streams.step_threads)
    if noop or echo:
        app = build_noop_app(settings, echo=echo)
    else:
        app, processor = build_worker_app(settings)
        seconds = processor.warm_up()
        release_free_heap()
        log.info("compiled %d batch buckets and the one-series scan in %.1f s (%s)", len(seconds) - 1,
                 sum(seconds.values()),
                 ", ".join(f"B={size}: {s:.2f} s" if size > 0 else f"scan of {-size}: {s:.2f} s"
                           for size, s in seconds.items()))
    log.info("worker on %s, data in %s, web on 127.0.0.1:%d", settings.broker, settings.data_dir,
             settings.web_port)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    # Faust's terminal spinner hooks a DEBUG-level handler into the root logger, which turns every
    # aiokafka debug call into a formatted record: about 9% of a worker's time in a profile.
    worker.spinner = None
    worker.execute_from_commandline()


def default_data_dir(web_port: int) -> Path:
    return Path(".usp") / f"worker-{web_port}"
