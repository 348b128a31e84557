"""The predict agent: usp.observations -> orchestrate_step_batch -> usp.predictions / usp.deadletter.

Per micro-batch: decode everything, refuse bad records to the deadletter topic with their raw bytes,
group the rest by series (order kept), run the rounds through the compiled batched step, write each
series' state once, and send one prediction per accepted observation. A bug in here must not crash
the worker (a crashing agent stops answering SIGTERM, KAFKA-NOTES.md pitfall 5), so an unexpected
error sends the whole batch to the deadletter topic as `internal_error`, raw bytes kept, and goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import EventT, TopicT

from models.batching import run_round, warm_up
from models.config import USPConfig
from models.state import SeriesState, StateLayoutError, init_state, state_from_bytes, state_to_bytes
from models.step import MODE_NAMES, REASON_NAMES
from streams import codecs
from streams.app import event_scope
from streams.codecs import ObservationIn, Refusal
from streams.output import OutputProducer
from streams.topics import DEADLETTER, EVENTS, PREDICTIONS

log = logging.getLogger(__name__)


@dataclass
class PredictCounters:
    """Running totals of what this worker has done (read by status and metrics)."""

    observations: int = 0
    predictions: int = 0
    deadletters: int = 0
    batches: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


@dataclass
class _SeriesBatch:
    ticks: list[ObservationIn] = field(default_factory=list)
    events: list[EventT] = field(default_factory=list)


class PredictProcessor:
    """Processes one micro-batch of observation events; owns no Faust machinery but the table."""

    def __init__(self, config: USPConfig, table: Any, output: OutputProducer) -> None:
        self.config = config
        self.table = table
        self.output = output
        self.counters = PredictCounters()

    def warm_up(self) -> None:
        warm_up(self.config.orchestration)

    async def process(self, events: Sequence[EventT]) -> None:
        """Handle one micro-batch; returns once every output of it is acknowledged by the broker."""
        try:
            await self._process(events)
        except Exception as exc:  # the worker must outlive any bug in one batch
            log.exception("batch of %d failed; sending it to the deadletter topic", len(events))
            refusal = Refusal("internal_error", f"{type(exc).__name__}: {exc}")
            for event in events:
                await self._deadletter(event, refusal)
        await self.output.flush()

    async def _process(self, events: Sequence[EventT]) -> None:
        self.counters.batches += 1
        self.counters.observations += len(events)
        groups: dict[str, _SeriesBatch] = {}
        for event in events:
            msg = event.message
            decoded = codecs.decode_observation(msg.key, msg.value)
            if isinstance(decoded, Refusal):
                await self._deadletter(event, decoded)
                continue
            group = groups.setdefault(decoded.series_id, _SeriesBatch())
            group.ticks.append(decoded)
            group.events.append(event)
        if not groups:
            return

        series = list(groups)
        states = {sid: self._load(sid, groups[sid].events[0]) for sid in series}
        changed: set[str] = set()
        orch = self.config.orchestration
        version = self.config.version
        depth = max(len(g.ticks) for g in groups.values())
        for r in range(depth):
            active = [sid for sid in series if len(groups[sid].ticks) > r]
            ticks = [groups[sid].ticks[r] for sid in active]
            new_states, outcomes = run_round(
                [states[sid] for sid in active], [t.ts_ns for t in ticks], [t.value for t in ticks], orch
            )
            for sid, tick, state, out in zip(active, ticks, new_states, outcomes, strict=True):
                if not out.accepted:
                    reason = REASON_NAMES[out.reason]
                    detail = ("ts is not after the series' last accepted ts" if reason == "stale"
                              else "the update would make the series' state non-finite")
                    await self._deadletter(groups[sid].events[r], Refusal(reason, detail, sid))
                    continue
                states[sid] = state
                changed.add(sid)
                message = codecs.prediction_dict(
                    sid, tick.ts_ns, out.prediction, out.lower, out.upper,
                    weights=(1.0, 0.0, 0.0, 0.0), mode=MODE_NAMES[out.mode], regime_change=False,
                    cusum_statistic=0.0, cusum_threshold=0.0,
                    anomaly_score=min(max(out.anomaly_score, 0.0), 1.0), config_version=version,
                )
                await self.output.send(PREDICTIONS, sid.encode(), codecs.dumps(message))
                self.counters.predictions += 1
        for sid in changed:
            with event_scope(groups[sid].events[-1]):
                self.table[sid.encode()] = state_to_bytes(states[sid])

    def _load(self, series_id: str, event: EventT) -> SeriesState:
        with event_scope(event):
            raw = self.table.get(series_id.encode())
        if raw is None:
            return init_state()
        try:
            return state_from_bytes(raw)
        except StateLayoutError as exc:
            log.warning("series %r: stored state unusable (%s); starting it afresh", series_id, exc)
            return init_state()

    async def _deadletter(self, event: EventT, refusal: Refusal) -> None:
        msg = event.message
        record = codecs.deadletter_dict(refusal, msg.value, msg.topic, msg.partition, msg.offset)
        key = refusal.series_id.encode() if refusal.series_id else None
        await self.output.send(DEADLETTER, key, codecs.dumps(record))
        self.counters.deadletters += 1
        self.counters.by_reason[refusal.reason] = self.counters.by_reason.get(refusal.reason, 0) + 1


def register_predict_agent(app: faust.App, processor: PredictProcessor, source: TopicT) -> None:
    """Attach the micro-batching predict agent to `app`."""
    streams = processor.config.streams
    within = max(streams.batch_within_ms, 1) / 1000.0

    @app.agent(source, name="usp.predict")
    async def predict(stream: faust.StreamT) -> None:
        await processor.output.start()
        try:
            async for events in stream.take_events(  # type: ignore[attr-defined]  # on Stream, not StreamT
                    streams.max_batch, within=within):
                await processor.process(events)
        finally:
            await processor.output.stop()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # Faust's signal stub wants signal=
    async def announce_ready(sender: Any, **kwargs: Any) -> None:
        assigned = sorted(tp.partition for tp in app.consumer.assignment()
                          if tp.topic == source.get_topic_name())
        event = codecs.event_dict("worker_ready", None, "info",
                                  {"partitions": assigned, "pid": os.getpid()})
        await processor.output.send(EVENTS, None, codecs.dumps(event))
        await processor.output.flush()



