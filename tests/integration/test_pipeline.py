"""End to end through the embedded broker and real `usp worker` processes."""

from __future__ import annotations

import asyncio
import base64
import functools
import time
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import orjson
import pytest
from kafka import KafkaProducer

from agents.supervise import ChildProcess
from models.config import StreamsConfig, load_config
from models.state import init_state
from models.step import MODE_NAMES, REASON_NAMES, Observation, orchestrate_step
from streams import codecs
from streams.app import STATE_TABLE
from streams.ends import true_end_offsets
from streams.kafka import bootstrap_servers, make_consumer
from streams.tail import partitions_of
from streams.topics import DEADLETTER, EVENTS, PREDICTIONS

from .conftest import Collector, send

pytestmark = [
    pytest.mark.integration,
    # The reference runs JAX in this process before later tests fork workers. The fork is safe: the
    # child only calls prctl (streams.broker._die_with_parent) before exec, touching no JAX lock.
    pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning"),
]

T0 = 1_700_000_000


def make_series(n_series: int, n_ticks: int, seed: int) -> dict[str, list[tuple[int, float]]]:
    rng = np.random.default_rng(seed)
    return {f"s{seed}-{i}": [(T0 + 60 * t, float(v)) for t, v in
                             enumerate(np.cumsum(rng.normal(size=n_ticks)) * (i + 1) + 100)]
            for i in range(n_series)}


class Tick(NamedTuple):
    """What the worker should do with one observation: a prediction (for an accepted tick), or a
    deadletter with `reason`, and the events the tick raises, in order."""

    ts_ns: int
    reason: str
    prediction: dict[str, Any] | None
    events: list[str]


@functools.cache
def single_step() -> Any:
    return jax.jit(orchestrate_step, static_argnames="config")


def reference(ticks: list[tuple[int, float]], config_file: Path) -> list[Tick]:
    """The offline reference: the un-batched step over one series, with the worker's rules around it
    (events on a regime change and on each change of the degraded flag)."""
    cfg = load_config(config_file).predictor
    state, degraded, out = init_state(cfg), False, []
    for ts, value in ticks:
        ts_ns = ts * 10**9
        new, r = single_step()(state, Observation(np.int64(ts_ns), np.float64(value)), config=cfg)
        reason = REASON_NAMES[int(r.reason)]
        state, events = new, []
        prediction = None
        if bool(r.accepted):
            prediction = {"prediction": float(r.prediction), "lower": float(r.lower), "upper": float(r.upper),
                          "weights": r.weights.tolist(), "mode": MODE_NAMES[int(r.mode)],
                          "regime_change": bool(r.regime_change), "anomaly_score": float(r.anomaly_score),
                          "cusum": {"statistic": float(r.cusum), "threshold": float(r.cusum_threshold)}}
            if prediction["regime_change"]:
                events.append("regime_change")
        if bool(r.degraded) != degraded:
            degraded = bool(r.degraded)
            events.append("degraded_enter" if degraded else "degraded_exit")
        out.append(Tick(ts_ns, reason, prediction, events))
    return out


def publish(producer: KafkaProducer, series: dict[str, list[tuple[int, float]]], lo: int, hi: int) -> None:
    """Ticks lo..hi-1 of every series, interleaved across series as a live feed would be."""
    for t in range(lo, hi):
        for sid, ticks in series.items():
            ts, value = ticks[t]
            send(producer, sid.encode(), codecs.encode_observation(sid, ts, value))
    producer.flush()


def handled(collector: Collector, series_id: str) -> int:
    """Observations of a series the worker is done with: predictions plus deadletters."""
    return len(collector.predictions_for(series_id)) + len(collector.deadletters_for(series_id))


def wait_for_series(collector: Collector, series: dict[str, list[tuple[int, float]]], config_file: Path,
                    worker: ChildProcess, extra: int = 0) -> None:
    """Wait until every observation of `series` is handled (plus `extra` replays) and every event the
    reference expects has arrived."""
    expected_events = {sid: sum(len(t.events) for t in reference(ticks, config_file))
                       for sid, ticks in series.items()}
    total = sum(len(ticks) for ticks in series.values()) + extra
    collector.wait_for(lambda: sum(handled(collector, sid) for sid in series) >= total
                       and all(len(collector.events_for(sid)) >= n for sid, n in expected_events.items()),
                       60, f"{total} observations handled and their events", worker)


def deadletter_ts(record: dict[str, Any]) -> int:
    decoded = codecs.decode_observation(record["series_id"].encode(), base64.b64decode(record["raw_b64"]))
    assert not isinstance(decoded, codecs.Refusal)
    return decoded.ts_ns


def check_against_reference(collector: Collector, series: dict[str, list[tuple[int, float]]],
                            config_file: Path) -> None:
    """Predictions, deadletters and events of every series agree with the offline reference. Stale
    deadletters beyond the reference's must be replays of observations already handled."""
    version = load_config(config_file).version
    validate = {name: codecs.validator(name) for name in ("prediction", "deadletter", "event")}
    for sid, ticks in series.items():
        expected = reference(ticks, config_file)
        preds = collector.predictions_for(sid)
        accepted = [t for t in expected if t.prediction is not None]
        assert [p["ts"] for p in preds] == [t.ts_ns for t in accepted], f"{sid} out of order or lost"
        for p, t in zip(preds, accepted, strict=True):
            validate["prediction"](p)
            assert t.prediction is not None
            ref = t.prediction
            assert p["prediction"] == pytest.approx(ref["prediction"], rel=1e-9)
            assert p["lower"] == pytest.approx(ref["lower"], rel=1e-9, abs=1e-9)
            assert p["upper"] == pytest.approx(ref["upper"], rel=1e-9, abs=1e-9)
            assert p["weights"] == pytest.approx(ref["weights"], abs=1e-9)
            assert p["anomaly_score"] == pytest.approx(ref["anomaly_score"], abs=1e-9)
            assert p["cusum"]["statistic"] == pytest.approx(ref["cusum"]["statistic"], rel=1e-9, abs=1e-9)
            assert p["cusum"]["threshold"] == pytest.approx(ref["cusum"]["threshold"], rel=1e-9)
            assert (p["mode"], p["regime_change"]) == (ref["mode"], ref["regime_change"])
            assert p["config_version"] == version
        dead = collector.deadletters_for(sid)
        for d in dead:
            validate["deadletter"](d)
            assert d["detail"]
        refused = [(t.ts_ns, t.reason) for t in expected if t.prediction is None]
        got = [(deadletter_ts(d), d["reason"]) for d in dead]
        replays = [(ts, reason) for ts, reason in got if (ts, reason) not in refused]
        assert [g for g in got if g in refused] == refused, f"{sid}: deadletters differ from the reference"
        assert all(reason == "stale" for _, reason in replays), replays
        assert {ts for ts, _ in replays} <= {t.ts_ns for t in expected}
        events = collector.events_for(sid)
        for e in events:
            validate["event"](e)
        assert [(e["kind"], e["details"]["observation_ts"]) for e in events] == \
            [(kind, t.ts_ns) for t in expected for kind in t.events], f"{sid}: events differ from the reference"


def test_every_observation_gives_one_prediction_in_order(start_worker, producer, collector,
                                                         config_file) -> None:
    worker = start_worker("w1")
    series = make_series(n_series=6, n_ticks=60, seed=1)
    publish(producer, series, 0, 60)
    wait_for_series(collector, series, config_file, worker)
    check_against_reference(collector, series, config_file)
    assert len(collector.records[PREDICTIONS]) == 360
    assert collector.records[DEADLETTER] == []


def test_a_few_busy_series_are_scanned_and_still_match_the_reference(start_worker, producer, collector,
                                                                     config_file) -> None:
    """Two series with a backlog of 300 ticks each, published before the worker starts: its
    micro-batches hold dozens of ticks of each, which go through one compiled scan per series
    (`agents.predict.SCAN_MIN_TICKS`, `models.batching.run_series_rows`) rather than one round call per
    tick. The outputs must still be the reference's, in order. (With `run_series_rows` made to raise,
    this test failed.)"""
    series = make_series(n_series=2, n_ticks=300, seed=3)
    publish(producer, series, 0, 300)
    worker = start_worker("w")
    wait_for_series(collector, series, config_file, worker)
    check_against_reference(collector, series, config_file)


def test_bad_input_goes_to_deadletter_and_the_worker_keeps_going(start_worker, producer, collector) -> None:
    worker = start_worker("w1")
    good = lambda i: codecs.encode_observation("g", T0 + i, float(i))  # noqa: E731
    bad: list[tuple[bytes | None, bytes, str]] = [
        (b"g", b"{this is not json", "malformed_json"),
        (b"g", b"\xff\xfe\x00binary", "malformed_json"),
        (b"g", orjson.dumps({"series_id": "g", "ts": T0}), "schema"),
        (b"g", orjson.dumps({"series_id": "g", "ts": "2024-01-01T00:00:00", "value": 1}), "bad_timestamp"),
        (b"other", good(100), "key_mismatch"),
        (b"g", codecs.encode_observation("g", T0 + 1, 5.0), "stale"),  # ts already seen
        (b"g", codecs.encode_observation("g", T0 + 5, 1e120), "out_of_range"),  # > max_abs_value
    ]
    for i in range(5):
        send(producer, b"g", good(i))
    producer.flush()
    for key, value, _ in bad:
        send(producer, key, value)
    for i in range(5, 10):
        send(producer, b"g", good(i))
    producer.flush()
    collector.wait_for(lambda: len(collector.predictions_for("g")) >= 10
                       and len(collector.records[DEADLETTER]) >= len(bad)
                       and len(collector.events_for("g", "degraded_exit")) >= 1, 60,
                       "10 predictions, the deadletters and the end of degraded mode", worker)
    assert [p["ts"] for p in collector.predictions_for("g")] == [(T0 + i) * 10**9 for i in range(10)]
    dead = collector.records[DEADLETTER]
    assert Counter(d["reason"] for d in dead) == Counter(reason for _, _, reason in bad)
    validate = codecs.validator("deadletter")
    sent_raw = {value for _, value, _ in bad}
    for d in dead:
        validate(d)
        assert d["topic"] == "usp.observations"
        assert base64.b64decode(d["raw_b64"]) in sent_raw
        assert d["detail"]
    # A stale record changes nothing; the out-of-range one puts the series in degraded mode, which the
    # clean ticks after it end (recovery_steps = 3 in the test config).
    assert [(e["kind"], e["details"].get("reason")) for e in collector.events_for("g")] == \
        [("degraded_enter", "out_of_range"), ("degraded_exit", None)]
    assert worker.alive()


def test_restarted_worker_continues_each_series_state(start_worker, producer, collector,
                                                      config_file) -> None:
    # 24 series over 8 partitions: a micro-batch writes several states to one changelog partition in
    # one record batch, and only recovery's fetched ends (streams.ends) let it read past that batch's
    # first record on tansu (quirk B).
    series = make_series(n_series=24, n_ticks=42, seed=2)

    def phase(worker: ChildProcess, start: int, stop: int) -> None:
        publish(producer, series, start, stop)
        collector.wait_for(lambda: len(collector.records[PREDICTIONS]) >= 24 * stop, 60, f"ticks to {stop}", worker)
        assert worker.stop() == 0

    phase(start_worker("w1"), 0, 14)
    # a new data directory: the state must come back from the changelog topic, not local files
    phase(start_worker("w2"), 14, 28)
    # the same data directory again: its store holds the changelog offset it wrote last, which Faust's
    # recovery checks against the changelog's end (a short end would fail that check)
    phase(start_worker("w2"), 28, 42)
    # offsets not yet committed when a worker stopped are replayed; the stale check refuses them, and a
    # replay changes no state: no degraded mode, no event (check_against_reference checks both)
    assert {d["reason"] for d in collector.records[DEADLETTER]} <= {"stale"}
    check_against_reference(collector, series, config_file)


def test_recovery_ends_are_the_changelogs_true_ends_after_batched_state_writes(start_worker, producer, collector,
                                                                                broker) -> None:
    """tansu reports a partition's end as its last batch's first offset + 1 (quirk B), and Faust's
    recovery reads a changelog up to the end it is given. The worker writes a micro-batch's states to a
    partition as one record batch; after it stops, the ends recovery is given (`true_end_offsets` over
    ListOffsets, as the worker's consumer computes them) are the offsets after each partition's last
    record, as reading the changelog to its end finds them."""
    series = make_series(n_series=24, n_ticks=12, seed=5)
    worker = start_worker("w")
    publish(producer, series, 0, 12)
    collector.wait_for(lambda: len(collector.records[PREDICTIONS]) >= 24 * 12, 60, "every prediction", worker)
    assert worker.stop() == 0
    consumer = make_consumer(broker.url, StreamsConfig(), group_id=None)
    try:
        tps = partitions_of(consumer, f"usp-{STATE_TABLE}-changelog")
        consumer.assign(tps)
        consumer.seek_to_beginning()
        ends = asyncio.run(true_end_offsets(consumer.end_offsets(tps), bootstrap_servers(broker.url)))
        read: Counter[int] = Counter()
        keys: set[bytes] = set()
        deadline = time.monotonic() + 30
        while any(consumer.highwater(tp) is None or consumer.position(tp) < consumer.highwater(tp) for tp in tps):
            assert time.monotonic() < deadline, "could not read the changelog to its end"
            for tp, recs in consumer.poll(timeout_ms=200).items():
                read[tp.partition] += len(recs)
                keys.update(r.key for r in recs)
        true_end = {tp.partition: consumer.highwater(tp) for tp in tps}
    finally:
        consumer.close()
    assert keys == {sid.encode() for sid in series}  # every series' state was written
    assert {tp.partition: ends[tp] for tp in tps} == true_end
    assert dict(read) == {p: n for p, n in true_end.items() if n}  # nothing before the end is missing


def test_frozen_signal_and_level_shift_raise_deadletters_and_events(start_worker, producer, collector,
                                                                    config_file) -> None:
    rng = np.random.default_rng(3)
    walk = 100.0 + np.cumsum(rng.normal(size=20))
    stuck = walk[-1] + 0.5
    # 20 ticks of a random walk, then one value 11 times: the first frozen_steps = 5 are accepted and
    # the rest refused; then the walk again, whose recovery_steps = 3 clean ticks end degraded mode
    frozen = [*walk, *[stuck] * 11, *(stuck + np.cumsum(rng.normal(size=8)))]
    # 60 ticks of noise around 50, then the level jumps by about 100 sigmas: outlier_patience = 3
    # refuses the first two as outliers and takes the third as a level shift, a CUSUM alarm
    shifted = [*(50.0 + rng.normal(size=60)), *(150.0 + rng.normal(size=12))]
    series = {name: [(T0 + 60 * t, float(v)) for t, v in enumerate(values)]
              for name, values in (("frozen", frozen), ("shift", shifted))}
    worker = start_worker("w1")
    publish(producer, {"frozen": series["frozen"]}, 0, len(frozen))
    publish(producer, {"shift": series["shift"]}, 0, len(shifted))
    wait_for_series(collector, series, config_file, worker)
    check_against_reference(collector, series, config_file)

    dead = collector.deadletters_for("frozen")
    assert {d["reason"] for d in dead} == {"frozen"} and 5 <= len(dead) <= 6  # the count is the core's
    assert "frozen_steps = 5" in dead[0]["detail"]
    kinds = [(e["kind"], e["severity"], e["details"].get("reason")) for e in collector.events_for("frozen")]
    assert kinds == [("degraded_enter", "warning", "frozen"), ("degraded_exit", "info", None)]
    enter, leave = collector.events_for("frozen")
    assert enter["details"]["observation_ts"] == deadletter_ts(dead[0])
    preds = collector.predictions_for("frozen")
    after = [p for p in preds if p["ts"] > deadletter_ts(dead[-1])]
    assert leave["details"]["observation_ts"] == after[2]["ts"]  # the third clean tick
    assert [p["mode"] for p in after[:2]] == ["calibration"] * 2 and after[2]["mode"] == "inference"

    assert [d["reason"] for d in collector.deadletters_for("shift")] == ["outlier"] * 2
    assert all("outlier_z = 25.0" in d["detail"] for d in collector.deadletters_for("shift"))
    alarms = collector.events_for("shift", "regime_change")
    assert len(alarms) == 1 and alarms[0]["severity"] == "warning"
    details = alarms[0]["details"]
    assert details["cusum_statistic"] > details["cusum_threshold"] > 0
    assert details["alarms"] == 1
    flagged = [p for p in collector.predictions_for("shift") if p["regime_change"]]
    assert [p["ts"] for p in flagged] == [details["observation_ts"]] == [(T0 + 60 * 62) * 10**9]
    assert flagged[0]["weights"] == [0.25] * 4  # an alarm resets the weights to uniform
    assert flagged[0]["cusum"]["statistic"] == details["cusum_statistic"]
    assert [e["kind"] for e in collector.events_for("shift")] == \
        ["degraded_enter", "regime_change", "degraded_exit"]
    assert all(e["kind"] == "worker_ready" for e in collector.records[EVENTS] if e["series_id"] is None)
