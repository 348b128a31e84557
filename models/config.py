"""USP's configuration: TOML in, validated frozen dataclasses out, versioned by content hash.

A typo in a config file must fail loudly at load time, never silently fall back to a default, so
unknown sections and keys are errors, and every value is type- and range-checked with a message that
names the section and key.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from statistics import NormalDist
from typing import Any


class ConfigError(ValueError):
    """A configuration file or value that USP refuses, with the section.key at fault."""


@dataclass(frozen=True)
class StreamsConfig:
    """Kafka-side settings. The defaults carry KAFKA-NOTES.md's workarounds for the embedded broker.

    partitions: partitions of every USP topic; the most workers that can share the load.
    max_batch: most observations a worker takes into one micro-batch.
    batch_within_ms: longest a micro-batch waits to fill; bounds the latency added under light load.
    fetch_max_wait_ms: how long a fetch waits for data; tansu answers a waiting fetch only when this
        runs out (quirk C), so it bounds latency. Faust hard-codes 1500 ms; USP overrides it.
    session_timeout_s, heartbeat_s: consumer-group liveness; a group join on tansu takes about half
        the session timeout (quirk A), so 6 s / 2 s gives a 3 s join.
    producer_max_batch_bytes: aiokafka producer batch size. 1 sends each record as its own batch, which
        makes tansu's end offsets exact (quirk B) so changelog recovery restores every state; on a
        real Kafka cluster raise it (e.g. 16384) for throughput.
    """

    partitions: int = 8
    max_batch: int = 500
    batch_within_ms: int = 10
    fetch_max_wait_ms: int = 20
    session_timeout_s: float = 6.0
    heartbeat_s: float = 2.0
    producer_max_batch_bytes: int = 1


@dataclass(frozen=True)
class OrchestrationConfig:
    """Settings of the per-series predictor.

    ewma_alpha: weight of the newest observation in the level estimate (0, 1].
    variance_alpha: weight of the newest squared residual in the residual variance (0, 1].
    interval_level: nominal coverage of the [lower, upper] interval, in (0, 1).
    warmup_steps: ticks a series spends in calibration mode before its intervals are trusted.
    """

    ewma_alpha: float = 0.3
    variance_alpha: float = 0.05
    interval_level: float = 0.95
    warmup_steps: int = 10

    @property
    def interval_z(self) -> float:
        """Two-sided standard-normal quantile for interval_level."""
        return NormalDist().inv_cdf(0.5 + self.interval_level / 2.0)


@dataclass(frozen=True)
class USPConfig:
    """The whole configuration. `version` is the SHA-256 of its canonical JSON, first 12 hex digits."""

    streams: StreamsConfig = field(default_factory=StreamsConfig)
    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)

    def __post_init__(self) -> None:
        _check_ranges(self)

    @property
    def version(self) -> str:
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> USPConfig:
        """Build from a parsed TOML mapping; unknown sections or keys are errors.

        >>> USPConfig.from_mapping({"streams": {"partitions": 4}}).streams.partitions
        4
        >>> USPConfig.from_mapping({"stream": {}})
        Traceback (most recent call last):
        ...
        models.config.ConfigError: unknown section [stream]; known: orchestration, streams
        """
        sections: dict[str, type[Any]] = {"streams": StreamsConfig, "orchestration": OrchestrationConfig}
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise ConfigError(f"unknown section [{unknown[0]}]; known: {', '.join(sorted(sections))}")
        built: dict[str, Any] = {}
        for name, klass in sections.items():
            built[name] = _build_section(name, klass, data.get(name, {}))
        return cls(**built)


def _build_section(name: str, klass: type[Any], raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table, got {type(raw).__name__}")
    known = {f.name: f for f in fields(klass)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown key {name}.{key}; known: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        default = getattr(klass(), key)
        if isinstance(default, bool) or isinstance(value, bool):
            ok = isinstance(value, bool) and isinstance(default, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int)
        elif isinstance(default, float):
            ok = isinstance(value, int | float)
            value = float(value) if ok else value
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ConfigError(f"{name}.{key} must be {type(default).__name__}, got {value!r}")
        values[key] = value
    return klass(**values)


def _check_ranges(config: USPConfig) -> None:
    s, o = config.streams, config.orchestration
    checks: list[tuple[bool, str]] = [
        (1 <= s.partitions <= 1024, "streams.partitions must be in [1, 1024]"),
        (1 <= s.max_batch <= 100_000, "streams.max_batch must be in [1, 100000]"),
        (0 <= s.batch_within_ms <= 10_000, "streams.batch_within_ms must be in [0, 10000]"),
        (1 <= s.fetch_max_wait_ms <= 10_000, "streams.fetch_max_wait_ms must be in [1, 10000]"),
        (0 < s.heartbeat_s < s.session_timeout_s, "streams.heartbeat_s must be in (0, session_timeout_s)"),
        (s.producer_max_batch_bytes >= 1, "streams.producer_max_batch_bytes must be >= 1"),
        (0 < o.ewma_alpha <= 1, "orchestration.ewma_alpha must be in (0, 1]"),
        (0 < o.variance_alpha <= 1, "orchestration.variance_alpha must be in (0, 1]"),
        (0 < o.interval_level < 1, "orchestration.interval_level must be in (0, 1)"),
        (0 <= o.warmup_steps <= 1_000_000, "orchestration.warmup_steps must be in [0, 1000000]"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    for value in (s.session_timeout_s, s.heartbeat_s, o.ewma_alpha, o.variance_alpha, o.interval_level):
        if not math.isfinite(value):
            raise ConfigError("config values must be finite")


def load_config(path: str | Path | None) -> USPConfig:
    """Load and validate a TOML file; None gives the defaults."""
    if path is None:
        return USPConfig()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        return USPConfig.from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
