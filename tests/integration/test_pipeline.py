"""End to end through the embedded broker and real `usp worker` processes."""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer

from models.config import load_config
from models.state import init_state
from models.step import MODE_NAMES, Observation, orchestrate_step
from streams import codecs
from streams.topics import DEADLETTER

from .conftest import Collector, send

pytestmark = pytest.mark.integration

T0 = 1_700_000_000


def make_series(n_series: int, n_ticks: int, seed: int) -> dict[str, list[tuple[int, float]]]:
    rng = np.random.default_rng(seed)
    return {f"s{seed}-{i}": [(T0 + 60 * t, float(v)) for t, v in
                             enumerate(np.cumsum(rng.normal(size=n_ticks)) * (i + 1) + 100)]
            for i in range(n_series)}


def reference(ticks: list[tuple[int, float]], config_file: Path) -> list[tuple[float, float, float, str]]:
    cfg = load_config(config_file).orchestration
    state, out = init_state(), []
    for ts, value in ticks:
        state, r = orchestrate_step(state, Observation(np.int64(ts * 10**9), np.float64(value)), cfg)
        out.append((float(r.prediction), float(r.lower), float(r.upper), MODE_NAMES[int(r.mode)]))
    return out


def publish(producer: KafkaProducer, series: dict[str, list[tuple[int, float]]], lo: int, hi: int) -> None:
    """Ticks lo..hi-1 of every series, interleaved across series as a live feed would be."""
    for t in range(lo, hi):
        for sid, ticks in series.items():
            ts, value = ticks[t]
            send(producer, sid.encode(), codecs.encode_observation(sid, ts, value))
    producer.flush()


def check_against_reference(collector: Collector, series: dict[str, list[tuple[int, float]]],
                            config_file: Path) -> None:
    version = load_config(config_file).version
    validate = codecs.validator("prediction")
    for sid, ticks in series.items():
        preds = collector.predictions_for(sid)
        assert [p["ts"] for p in preds] == [ts * 10**9 for ts, _ in ticks], f"{sid} out of order or lost"
        for p, (pred, lo, hi, mode) in zip(preds, reference(ticks, config_file), strict=True):
            validate(p)
            assert p["prediction"] == pytest.approx(pred, rel=1e-9)
            assert p["lower"] == pytest.approx(lo, rel=1e-9, abs=1e-9)
            assert p["upper"] == pytest.approx(hi, rel=1e-9, abs=1e-9)
            assert p["mode"] == mode
            assert p["config_version"] == version


def test_every_observation_gives_one_prediction_in_order(start_worker, producer, collector,
                                                         config_file) -> None:
    worker = start_worker("w1")
    series = make_series(n_series=6, n_ticks=60, seed=1)
    publish(producer, series, 0, 60)
    collector.wait_for(lambda: len(collector.records["usp.predictions"]) >= 360, 60,
                       "360 predictions", worker)
    check_against_reference(collector, series, config_file)
    assert len(collector.records["usp.predictions"]) == 360
    assert collector.records[DEADLETTER] == []


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
                       and len(collector.records[DEADLETTER]) >= len(bad), 60,
                       "10 predictions and the deadletters", worker)
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
    assert worker.alive()


def test_restarted_worker_continues_each_series_state(start_worker, producer, collector,
                                                      config_file) -> None:
    series = make_series(n_series=4, n_ticks=40, seed=2)
    first = start_worker("w1")
    publish(producer, series, 0, 20)
    collector.wait_for(lambda: len(collector.records["usp.predictions"]) >= 80, 60, "first half", first)
    assert first.stop() == 0
    # a new data directory: the state must come back from the changelog topic, not local files
    second = start_worker("w2")
    publish(producer, series, 20, 40)
    collector.wait_for(lambda: len(collector.records["usp.predictions"]) >= 160, 60, "second half", second)
    check_against_reference(collector, series, config_file)
    # offsets not yet committed when w1 stopped are replayed; the stale check refuses them
    assert {d["reason"] for d in collector.records[DEADLETTER]} <= {"stale"}
