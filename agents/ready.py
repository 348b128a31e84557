"""The `worker_ready` event: a worker says on usp.events which partitions it holds after each rebalance.

`usp run`, `usp bench` and the integration tests wait for it instead of sleeping: it is sent once the
consumer group has assigned partitions, so records published after it are consumed at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import faust
from faust.types import TopicT

from streams import codecs
from streams.output import OutputProducer
from streams.topics import EVENTS


def announce_ready(app: faust.App, output: OutputProducer, source: TopicT,
                   extra: Callable[[], dict[str, Any]] = dict) -> None:
    """After every completed rebalance, send `worker_ready` with this worker's source partitions, pid and
    CPU seconds so far (all threads; a benchmark counts the worker's CPU from this moment, which its
    own monitor may only see later), plus `extra()`."""

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # Faust's signal stub wants signal=
    async def on_rebalance_complete(sender: Any, **kwargs: Any) -> None:
        assigned = sorted(tp.partition for tp in app.consumer.assignment()
                          if tp.topic == source.get_topic_name())
        details: dict[str, Any] = {"partitions": assigned, "pid": os.getpid(), "cpu_s": time.process_time(),
                                   **extra()}
        event = codecs.event_dict("worker_ready", None, "info", details)
        await output.send(EVENTS, None, codecs.dumps(event))
        await output.flush()
