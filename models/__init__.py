"""The predictor as a domain: config, per-series state, orchestrate_step. Pure Python over `native`."""

from models.config import OrchestrationConfig, StreamsConfig, USPConfig, load_config
from models.state import SeriesState, init_state, state_from_bytes, state_to_bytes
from models.step import (
    MODE_NAMES,
    REASON_NAMES,
    Observation,
    StepResult,
    orchestrate_step,
    orchestrate_step_batch,
)

__all__ = [
    "MODE_NAMES",
    "REASON_NAMES",
    "Observation",
    "OrchestrationConfig",
    "SeriesState",
    "StepResult",
    "StreamsConfig",
    "USPConfig",
    "init_state",
    "load_config",
    "orchestrate_step",
    "orchestrate_step_batch",
    "state_from_bytes",
    "state_to_bytes",
]
