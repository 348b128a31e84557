"""The predict agent's prediction record (`PredictProcessor._put_prediction`): it must satisfy the
published schema even where the step's float noise steps a weight or the anomaly score out of [0, 1]."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import fastjsonschema
import orjson
import pytest

import schemas
from agents.predict import PredictProcessor
from models.batching import TickOutcome
from models.config import USPConfig
from streams.codecs import ObservationIn
from streams.topics import PREDICTIONS


class Captured:
    """The one edge of the unit: the producer's `put`, recorded instead of sent."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes]] = []

    def put(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.records.append((topic, key, value))


def _outcome(weights: tuple[float, float, float, float], anomaly: float) -> TickOutcome:
    return TickOutcome(True, 0, 10.5, 9.0, 12.0, 1, anomaly, weights, False, 0.3, 5.0, False)


@pytest.mark.parametrize(("weights", "anomaly"), [
    ((0.1, 0.2, 0.3, 0.4), 0.5),  # inside: passed through unchanged
    ((-1e-17, 0.5, 0.5, 1.0 + 2e-16), -3e-18),  # float noise just outside
    ((0.0, 0.0, 0.0, 1.0), 1.0 + 1e-12),
])
def test_prediction_record_fits_the_schema(weights: tuple[float, float, float, float], anomaly: float) -> None:
    output = Captured()
    processor = PredictProcessor(USPConfig(), SimpleNamespace(), output)  # type: ignore[arg-type]
    processor._put_prediction("s-1", ObservationIn("s-1", 1_767_225_600 * 10**9, 10.0), _outcome(weights, anomaly))
    [(topic, key, value)] = output.records
    assert (topic, key) == (PREDICTIONS, b"s-1")
    record: dict[str, Any] = orjson.loads(value)
    fastjsonschema.compile(schemas.load("prediction"))(record)  # raises if out of range
    assert record["weights"] == pytest.approx([min(max(w, 0.0), 1.0) for w in weights], abs=0)
    assert record["anomaly_score"] == min(max(anomaly, 0.0), 1.0)
    assert processor.counters.predictions == 1
