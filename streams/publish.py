"""Publishing time,value CSV files (such as NAB's) to usp.observations.

Rows come from `streams.csv_input` (bad lines are counted and reported, never fatal) and are sent with
RFC 3339 stamps ('Z'; NAB's carry no zone and are read as UTC).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from pathlib import Path

from models.config import StreamsConfig
from streams import codecs
from streams.csv_input import CsvReport, Row, read_csv
from streams.output import OutputProducer
from streams.topics import OBSERVATIONS

__all__ = ["DEMO_SERIES", "CsvReport", "Row", "demo_path", "interleave", "publish_rows", "read_csv"]

log = logging.getLogger(__name__)

DEMO_SERIES = {
    "machine_temperature": "machine_temperature_system_failure.csv",
    "nyc_taxi": "nyc_taxi.csv",
}


def demo_path(name: str) -> Path:
    """Path of a bundled demo CSV (see streams/data/README.md)."""
    return Path(str(resources.files("streams.data").joinpath(DEMO_SERIES[name])))


def interleave(*streams: Iterable[Row]) -> Iterator[Row]:
    """Merge several series as if they had all started at the same moment and run live side by side.

    Recorded series rarely overlap in time (the bundled two are months apart), so the merge key is
    the time since each series' first row; each series keeps its own file order.
    """

    def aligned(rows: Iterable[Row], index: int) -> Iterator[tuple[int, int, int, Row]]:
        start: int | None = None
        for seq, row in enumerate(rows):
            start = row.ts_ns if start is None else start
            yield row.ts_ns - start, index, seq, row

    merged = heapq.merge(*(aligned(rows, i) for i, rows in enumerate(streams)))
    return (item[3] for item in merged)


#: How long a row may wait in its partition's open batch before the batch goes to the broker (a
#: producer's linger): long enough to batch a fast stream, short beside the worker's own latency.
LINGER_S = 0.005
#: Rows in flight before the publisher waits for the broker's acknowledgements (bounds its memory).
IN_FLIGHT = 20_000


def publish_rows(
    url: str,
    streams: StreamsConfig,
    rows: Iterable[Row],
    *,
    rate: float | None = None,
    limit: int | None = None,
    on_sent: Callable[[Row, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    topic: str = OBSERVATIONS,
) -> int:
    """Send rows keyed by series_id; pace to `rate` rows/s if given. Returns how many were sent, all
    acknowledged by the broker.

    Rows go through the workers' own batching producer (`streams.output`): each row joins its
    partition's open batch, and open batches go to the broker every `LINGER_S` and before each paced
    pause. kafka-python's producer, used before, built batches and CRCs in pure Python and woke its
    sender thread per record: 437 µs of CPU per row against 149 here (README, "Performance"), on the
    cores the worker it feeds runs on. `on_sent(row, wall_time)` is called as each row is handed over,
    so callers can measure latency from publish to prediction. Runs its own event loop (call it from a
    thread of its own where one is running).
    """
    return asyncio.run(_publish(url, streams, rows, rate, limit, on_sent, should_stop, topic))


async def _publish(url: str, streams: StreamsConfig, rows: Iterable[Row], rate: float | None, limit: int | None,
                   on_sent: Callable[[Row, float], None] | None, should_stop: Callable[[], bool] | None,
                   topic: str) -> int:
    out = OutputProducer(url, streams)
    await out.start()
    sent = 0
    try:
        start = last_submit = time.monotonic()
        for row in rows:
            if (limit is not None and sent >= limit) or (should_stop is not None and should_stop()):
                break
            now = time.monotonic()
            if rate and start + sent / rate > now:
                await out.submit()  # what is due goes out before the pause, as a lingering producer's would
                await asyncio.sleep(max(start + sent / rate - time.monotonic(), 0.0))  # after the hand-over
                last_submit = now = time.monotonic()
            elif now - last_submit >= LINGER_S:
                await out.submit()
                last_submit = now
            await out.send(topic, row.series_id.encode(),
                           codecs.encode_observation(row.series_id, row.ts, row.value))
            if on_sent is not None:
                on_sent(row, time.time())
            sent += 1
            if sent % IN_FLIGHT == 0:
                await out.flush()
        await out.flush()
    finally:
        await out.stop()
    return sent
