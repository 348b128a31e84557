"""`usp worker`: one Faust worker running the predict agent. Several may share one broker."""

from __future__ import annotations

import logging
from pathlib import Path

import faust

from agents.predict import PredictProcessor, register_predict_agent
from streams.app import USPApp, WorkerSettings, create_app, observations_topic, state_table
from streams.kafka import ensure_topics
from streams.output import OutputProducer

log = logging.getLogger(__name__)


def build_worker_app(settings: WorkerSettings) -> tuple[USPApp, PredictProcessor]:
    """The app with its topics, table and agents, ready for `faust.Worker`."""
    app = create_app(settings)
    partitions = settings.config.streams.partitions
    source = observations_topic(app, partitions)
    table = state_table(app, partitions)
    processor = PredictProcessor(settings.config, table, OutputProducer(settings.broker, settings.config.streams))
    register_predict_agent(app, processor, source)
    return app, processor


def run_worker(settings: WorkerSettings, loglevel: str = "warning") -> None:
    """Run one worker in the foreground until SIGTERM/SIGINT."""
    ensure_topics(settings.broker, settings.config.streams.partitions)
    app, processor = build_worker_app(settings)
    seconds = processor.warm_up()
    log.info("compiled %d batch buckets in %.1f s (%s)", len(seconds), sum(seconds.values()),
             ", ".join(f"B={size}: {s:.2f} s" for size, s in seconds.items()))
    log.info("worker on %s, data in %s, web on 127.0.0.1:%d", settings.broker, settings.data_dir,
             settings.web_port)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    # Faust's terminal spinner hooks a DEBUG-level handler into the root logger, which turns every
    # aiokafka debug call into a formatted record: about 9% of a worker's time in a profile.
    worker.spinner = None
    worker.execute_from_commandline()


def default_data_dir(web_port: int) -> Path:
    return Path(".usp") / f"worker-{web_port}"
