"""The predict agent: usp.observations -> the vmapped step (models.batching) -> usp.predictions,
usp.deadletter, usp.events.

Per micro-batch: decode everything, refuse bad records to the deadletter topic with their raw bytes,
group the rest by series (order kept), run the rounds through the compiled batched step (a few busy
series each through one compiled scan of their ticks instead), write each
series' state once, and send one prediction per accepted observation. A tick the step refuses (stale,
frozen, outlier, out_of_range, non_finite) goes to the deadletter topic with the step's reason; a CUSUM
alarm and every change of a series' degraded flag also go to usp.events. A bug in here must not crash
the worker (a crashing agent stops answering SIGTERM, KAFKA-NOTES.md pitfall 5), so an unexpected
error sends the whole batch to the deadletter topic as `internal_error`, raw bytes kept, and goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
import numpy as np
from faust.types import TP, EventT, TopicT

from agents.ready import announce_ready
from models.batching import TickOutcome, round_chunks, run_series_rows, split_round, warm_up
from models.config import PredictorConfig, USPConfig
from models.state import SeriesState, rows_leaf, state_from_bytes, state_rows
from models.step import MODE_NAMES, REASON_NAMES, REASON_STALE
from streams import codecs
from streams.codecs import ObservationIn, Refusal
from streams.output import OutputProducer
from streams.store import ChangelogBackedStore
from streams.take import HeapTrimmer, adaptive_take_events, batch_sizer, freeze_heap
from streams.topics import DEADLETTER, EVENTS, PREDICTIONS

log = logging.getLogger(__name__)

#: A series with at least this many ticks in a micro-batch goes through `run_series_rows` (one compiled
#: scan per 32 ticks) rather than one round call per tick, when at most SCAN_MAX_SERIES series are that
#: busy: a round costs about half a millisecond whether it steps 1 series or 16, so rounds pay for
#: many series side by side (a backlog of many series), scans for a few with many ticks each.
SCAN_MIN_TICKS = 8
SCAN_MAX_SERIES = 8


def _unit(x: float) -> float:
    """x clamped to [0, 1]: a prediction's weights and anomaly score, whose float noise may step out.

    >>> _unit(-1e-17), _unit(0.25), _unit(1.0000000000000002)
    (0.0, 0.25, 1.0)
    """
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def _spare_rows(rounds: int, scanned: int) -> int:
    """Fresh rows to follow a batch's states so that its first (widest) round's last call, as
    `split_round` cuts it, is padded in place (the scanned series' rows count towards them).

    >>> _spare_rows(1000, 0), _spare_rows(1000, 30), _spare_rows(1030, 0), _spare_rows(175, 0), _spare_rows(0, 2)
    (24, 0, 10, 17, 0)
    """
    return max(0, sum(split_round(rounds)) - rounds - scanned)


@dataclass
class PredictCounters:
    """Running totals of what this worker has done (read by status and metrics)."""

    observations: int = 0
    predictions: int = 0
    deadletters: int = 0
    batches: int = 0
    regime_changes: int = 0
    events: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


@dataclass
class _SeriesBatch:
    ticks: list[ObservationIn] = field(default_factory=list)
    events: list[EventT] = field(default_factory=list)


def refusal_detail(reason: str, tick: ObservationIn, before: SeriesState, after: SeriesState,
                   config: PredictorConfig) -> str:
    """A sentence saying why the step refused `tick`, from the series' state before and after it.

    >>> from models.state import init_state
    >>> cfg = PredictorConfig()
    >>> s = init_state(cfg)._replace(last_ts=5)
    >>> refusal_detail("stale", ObservationIn("a", 5, 2.0), s, s, cfg)
    "ts 5 is not after the series' last accepted ts 5 (a replay or an out-of-order record)"
    """
    o = config.orchestration
    if reason == "stale":
        return (f"ts {tick.ts_ns} is not after the series' last accepted ts {int(before.last_ts)} "
                "(a replay or an out-of-order record)")
    if reason == "frozen":
        return (f"value {tick.value!r} is identical value number {int(after.ingest.frozen_run) + 1} in a row, "
                f"more than orchestration.frozen_steps = {o.frozen_steps} allows (a frozen signal)")
    if reason == "outlier":
        sigma = (float(before.upper) - float(before.prediction)) / o.interval_z
        z = abs(tick.value - float(before.prediction)) / sigma if sigma > 0 else float("inf")
        return (f"value {tick.value!r} is {z:.1f} predictive sigmas from the prediction "
                f"{float(before.prediction)!r} (orchestration.outlier_z = {o.outlier_z}); outlier "
                f"{int(after.ingest.outlier_run)} in a row, and orchestration.outlier_patience = "
                f"{o.outlier_patience} in a row are taken as a level shift")
    if reason == "out_of_range":
        return f"|value| {abs(tick.value)!r} exceeds orchestration.max_abs_value = {o.max_abs_value!r}"
    if reason == "non_finite":
        return ("the update would put a non-finite or out-of-bounds number in the series' state; "
                "the series keeps its last good state")
    return f"refused by the predictor ({reason})"


class PredictProcessor:
    """Processes one micro-batch of observation events; owns no Faust machinery but the table."""

    def __init__(self, config: USPConfig, table: Any, output: OutputProducer) -> None:
        self.config = config
        self.predictor = config.predictor
        self.version = config.version  # a SHA-256 of the whole config: computed once, not per message
        self.table = table
        self.output = output
        self.counters = PredictCounters()
        self.warm_up_s: float | None = None

    def warm_up(self) -> dict[int, float]:
        """Compile every batch bucket and the one-series scan; returns seconds per bucket (the scan's under
        -SERIES_SCAN; their sum is kept in `warm_up_s`)."""
        seconds = warm_up(self.predictor)
        self.warm_up_s = sum(seconds.values())
        return seconds

    async def process(self, events: Sequence[EventT]) -> None:
        """Handle one micro-batch; returns once every output and state write of it is acknowledged.

        Outputs are acknowledged before any state is written: a crash in between replays the batch
        against the old states (repeating outputs), where the other order would refuse the replay as
        stale and lose the outputs. A failed delivery is not a bug in the batch: it propagates.
        """
        states: dict[str, tuple[EventT, bytes]] = {}
        try:
            states = await self._process(events)
        except Exception as exc:  # the worker must outlive any bug in one batch
            log.exception("batch of %d failed; sending it to the deadletter topic", len(events))
            refusal = Refusal("internal_error", f"{type(exc).__name__}: {exc}")
            for event in events:
                await self._deadletter(event, refusal)
        await self.output.flush()
        await self._write_states(states)

    async def _process(self, events: Sequence[EventT]) -> dict[str, tuple[EventT, bytes]]:
        """Queue the batch's outputs; returns each changed series' new state (and an event of it)."""
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
            return {}

        # Rounds take the r-th tick of every series that has one; with the series ordered by tick count,
        # most first (stable), round r's series are a prefix of that order, so each round's states are
        # a slice of the matrix (`round_chunks`). A few series with many ticks each
        # go through one compiled scan apiece instead; their rows follow the rounds'.
        busy = [sid for sid, group in groups.items() if len(group.ticks) >= SCAN_MIN_TICKS]
        busy = busy if len(busy) <= SCAN_MAX_SERIES else []
        scanned = set(busy)
        rest = sorted((sid for sid in groups if sid not in scanned), key=lambda sid: -len(groups[sid].ticks))
        series = rest + busy
        rows = self._load_rows(series, groups, spare=_spare_rows(len(rest), len(busy)))
        degraded = dict(zip(series, rows_leaf(rows[:len(series)], lambda s: s.ingest.degraded,
                                              self.predictor).astype(bool).tolist(), strict=True))
        changed: set[str] = set()
        await self.output.learn(PREDICTIONS)
        for offset, sid in enumerate(busy, start=len(rest)):
            group = groups[sid]
            outcomes, before_rows, after = run_series_rows(rows[offset], [t.ts_ns for t in group.ticks],
                                                           [t.value for t in group.ticks], self.predictor)
            rows[offset] = after
            for r, (tick, out) in enumerate(zip(group.ticks, outcomes, strict=True)):
                after_tick = before_rows[r + 1] if r + 1 < len(before_rows) else after
                await self._outcome(sid, tick, group.events[r], out, before_rows[r], after_tick, degraded, changed)
        depth = len(groups[rest[0]].ticks) if rest else 0
        active = len(rest)
        for r in range(depth):
            while len(groups[rest[active - 1]].ticks) <= r:
                active -= 1
            ticks = [groups[sid].ticks[r] for sid in rest[:active]]
            # Chunk by chunk: XLA computes the next chunk while this loop handles one's outcomes. before:
            # the states the chunk's refusals and alarms met, by position (their messages read them).
            for start, outcomes, before in round_chunks(rows, 0, active, [t.ts_ns for t in ticks],
                                                        [t.value for t in ticks], self.predictor):
                for k, out in enumerate(outcomes, start=start):
                    sid, tick = rest[k], ticks[k]
                    if out.accepted and not out.regime_change and out.degraded == degraded[sid]:
                        changed.add(sid)  # the common tick, inline: one prediction, nothing else
                        self._put_prediction(sid, tick, out)
                    else:
                        await self._outcome(sid, tick, groups[sid].events[r], out, before.get(k), rows[k],
                                            degraded, changed)
        return {sid: (groups[sid].events[-1], rows[i].tobytes()) for i, sid in enumerate(series) if sid in changed}

    async def _outcome(self, sid: str, tick: ObservationIn, event: EventT, out: TickOutcome,
                       before: np.ndarray | None, after: np.ndarray, degraded: dict[str, bool],
                       changed: set[str]) -> None:
        """The messages of one tick: its prediction (and a regime change), or its refusal; a change of
        degraded mode. `before` / `after` are the series' encoded states around the tick, decoded only
        for a refusal's or an alarm's message (`before` may be None for any other tick)."""
        if out.reason != REASON_STALE:  # the step leaves state as it was: no table write
            changed.add(sid)
        if out.accepted:
            self._put_prediction(sid, tick, out)
            if out.regime_change:
                await self._regime_change(sid, tick, self._decode(before), self._decode(after), out)
        else:
            reason = REASON_NAMES[out.reason]
            detail = refusal_detail(reason, tick, self._decode(before), self._decode(after), self.predictor)
            await self._deadletter(event, Refusal(reason, detail, sid))
        if out.degraded != degraded[sid]:
            degraded[sid] = out.degraded
            await self._degraded_change(sid, tick, out)

    async def _write_states(self, states: dict[str, tuple[EventT, bytes]]) -> None:
        """One write per changed series: to the table's local store under its source partition (the
        partition of its events), and to the changelog through the worker's batching
        producer rather than Faust's per-record path: one record batch per partition, not one send
        each (recovery reads the true end of such batches: `streams.ends`). The store then records
        the changelog offset it holds, as Faust's own changelog callback does, so a restart on the
        same data directory reads only what it lacks."""
        if not states:
            return
        topic = self.table.changelog_topic.get_topic_name()
        store = self._store()
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for sid, (event, data) in states.items():
            by_partition.setdefault(event.message.partition, []).append((sid.encode(), data))
        for partition, items in by_partition.items():
            store.set_many_in(partition, items)  # the store alone: no Faust changelog record
            for key, data in items:
                self.output.put_to(topic, partition, key, data)
        await self.output.flush()
        for (name, partition), offset in self.output.last_offsets.items():
            if name == topic:
                store.set_persisted_offset(TP(topic, partition), offset)

    def _store(self) -> ChangelogBackedStore:
        # Reads and writes name each series' partition, so no Faust "current event" decides it.
        store = self.table.data
        if not isinstance(store, ChangelogBackedStore):
            raise TypeError(f"the state table's store is {type(store).__name__}, not ChangelogBackedStore")
        return store

    def _decode(self, row: np.ndarray | None) -> SeriesState:
        if row is None:
            raise RuntimeError("a refusal or an alarm without the state it met (round_chunks kept none)")
        return state_from_bytes(row.tobytes(), self.predictor)

    def _put_prediction(self, sid: str, tick: ObservationIn, out: TickOutcome) -> None:
        """Queue the tick's prediction (`output.learn(PREDICTIONS)` has run)."""
        weights: Sequence[float] = out.weights  # on the simplex up to float noise; the schema wants [0, 1]
        if not (min(weights) >= 0.0 and max(weights) <= 1.0):
            weights = tuple(map(_unit, weights))
        message = codecs.prediction_dict(
            sid, tick.ts_ns, out.prediction, out.lower, out.upper,
            weights=weights, mode=MODE_NAMES[out.mode],
            regime_change=out.regime_change, cusum_statistic=out.cusum, cusum_threshold=out.cusum_threshold,
            anomaly_score=_unit(out.anomaly_score), config_version=self.version,
        )
        self.output.put(PREDICTIONS, sid.encode(), codecs.dumps(message))
        self.counters.predictions += 1

    async def _regime_change(self, sid: str, tick: ObservationIn, before: SeriesState, after: SeriesState,
                             out: TickOutcome) -> None:
        self.counters.regime_changes += 1
        await self._event("regime_change", sid, "warning", {
            "observation_ts": tick.ts_ns,
            "value": tick.value,
            "residual": tick.value - float(before.prediction),
            "cusum_statistic": out.cusum,
            "cusum_threshold": out.cusum_threshold,
            "alarms": int(after.alarms),
            "grace_period_steps": self.predictor.cusum.grace_period_steps,
        })

    async def _degraded_change(self, sid: str, tick: ObservationIn, out: TickOutcome) -> None:
        if out.degraded:
            await self._event("degraded_enter", sid, "warning", {
                "observation_ts": tick.ts_ns, "reason": REASON_NAMES[out.reason]})
        else:
            await self._event("degraded_exit", sid, "info", {
                "observation_ts": tick.ts_ns, "clean_ticks": self.predictor.orchestration.recovery_steps})

    async def _event(self, kind: str, sid: str, severity: str, details: dict[str, Any]) -> None:
        event = codecs.event_dict(kind, sid, severity, details)
        await self.output.send(EVENTS, sid.encode(), codecs.dumps(event))
        self.counters.events += 1

    def _load_rows(self, series: list[str], groups: dict[str, _SeriesBatch], spare: int = 0) -> np.ndarray:
        """The batch's series' states as encoded rows (then `spare` fresh ones); a series without one (or
        with one of another layout, e.g. written under a different config) starts afresh."""
        store = self._store()
        by_partition: dict[int, list[int]] = {}
        for i, sid in enumerate(series):
            by_partition.setdefault(groups[sid].events[0].message.partition, []).append(i)
        raws: list[bytes | None] = [None] * len(series)
        for partition, members in by_partition.items():
            for i, raw in zip(members, store.get_many_in(partition, [series[i].encode() for i in members]),
                              strict=True):
                raws[i] = raw
        rows, unusable = state_rows(raws, self.predictor, spare)
        for i in unusable:
            log.warning("series %r: stored state unusable (not this config's layout); starting it afresh",
                        series[i])
        return rows

    async def _deadletter(self, event: EventT, refusal: Refusal) -> None:
        msg = event.message
        record = codecs.deadletter_dict(refusal, msg.value, msg.topic, msg.partition, msg.offset)
        key = refusal.series_id.encode() if refusal.series_id else None
        await self.output.send(DEADLETTER, key, codecs.dumps(record))
        self.counters.deadletters += 1
        self.counters.by_reason[refusal.reason] = self.counters.by_reason.get(refusal.reason, 0) + 1


def register_predict_agent(app: faust.App, processor: PredictProcessor, source: TopicT) -> None:
    """Attach the micro-batching predict agent to `app`."""
    sizer = batch_sizer(processor.config.streams)
    # Batches free their arrays into glibc's arenas, which otherwise stay resident: trimming them took
    # a worker's growth per series held from 4.5 to 3.5 KB (20,000 new series). Under backlog once a
    # second suffices; a batch under the minimum size means the stream is quiet, and then every time.
    trim = HeapTrimmer(1.0)

    @app.agent(source, name="usp.predict")
    async def predict(stream: faust.StreamT) -> None:
        await processor.output.start()
        freeze_heap()  # the app's services are up: what lives now lives as long as the worker
        try:
            async for events in adaptive_take_events(stream, sizer):
                await processor.process(events)
                trim(quiet=len(events) < processor.config.streams.min_batch)
        finally:
            await processor.output.stop()

    def warm_up_figure() -> dict[str, Any]:
        return {} if processor.warm_up_s is None else {"warm_up_s": round(processor.warm_up_s, 3)}

    announce_ready(app, processor.output, source, warm_up_figure)
