"""USP's topics. Every topic but usp.control is keyed by series_id, so one series is always on one
partition and so with one worker; scaling out is more partitions and more workers."""

from __future__ import annotations

from typing import Final

OBSERVATIONS: Final = "usp.observations"
PREDICTIONS: Final = "usp.predictions"
EVENTS: Final = "usp.events"
DEADLETTER: Final = "usp.deadletter"
CONTROL: Final = "usp.control"

ALL_TOPICS: Final = (OBSERVATIONS, PREDICTIONS, EVENTS, DEADLETTER, CONTROL)
COMPACTED: Final = frozenset({CONTROL})
