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
import warnings
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
    min_batch, max_batch: bounds of the adaptive micro-batch size. It doubles while batches come back
        full (a backlog) and halves when one comes back short, so a quiet stream gets small batches
        (latency) and a backlog large ones (throughput).
    batch_within_ms, batch_within_max_ms: bounds of how long a micro-batch waits to fill. The wait
        doubles after a batch that filled to its limit (a backlog) and halves after any other, so a
        live stream keeps the minimum, which bounds the latency it adds.
    memory_limit_mb: above this resident set (MiB) the worker drops to the smallest batches (0: off).
    fetch_max_wait_ms: how long a fetch waits for data; tansu answers a waiting fetch only when this
        runs out (quirk C), so it bounds latency. Faust hard-codes 1500 ms; USP overrides it.
    session_timeout_s, heartbeat_s: consumer-group liveness; a group join on tansu takes about half
        the session timeout (quirk A), so 6 s / 2 s gives a 3 s join.
    producer_max_batch_bytes: batch size of the worker's producer (outputs and the state changelog):
        records are appended to one batch per partition, so room for a micro-batch's share of states
        and predictions means a few submissions per batch.
    step_threads: threads XLA runs a worker's compiled steps on (0: XLA's default, one per core).
        A worker's event loop waits for each step, so more threads only shorten that wait, and on
        two cores the second one cost more than it saved: 12.0 against 8.1 µs of CPU per series-tick
        at a round of 256 series, for about the same wall time. Scale out with workers instead.
    """

    partitions: int = 8
    min_batch: int = 32
    max_batch: int = 2000
    batch_within_ms: int = 10
    batch_within_max_ms: int = 100
    memory_limit_mb: int = 2048
    fetch_max_wait_ms: int = 20
    session_timeout_s: float = 6.0
    heartbeat_s: float = 2.0
    producer_max_batch_bytes: int = 524_288
    step_threads: int = 1


@dataclass(frozen=True)
class OrchestrationConfig:
    """How the four kernels are fused, how input is checked, and how the interval is calibrated.

    interval_level: nominal coverage of the [lower, upper] interval, in (0, 1).
    warmup_steps: accepted ticks a series spends in calibration mode; at least `window` so every kernel
        has seen a full window before its predictions are called inference.
    window: values kept per series (16, 32 or 64); kernels A and D and the Hölder estimate read it.
    volatility_alpha: EWMA weight of squared increments for the short-run volatility sigma_t.
    volatility_long_alpha: the same for the long-run volatility; sigma_t / long-run is the volatility ratio
        that couples epsilon, the JKO rate and the loss window, and the long-run value is the unit kernels
        work in.
    loss_alpha: EWMA weight of each kernel's squared error at volatility ratio 1 (the loss window is
        1 / alpha ticks, shorter when the series is more volatile than usual, capped at 0.5).
    fusion_beta: sharpness of the target weights, proportional to loss^-beta (1 = inverse variance).
    sinkhorn_eps0, sinkhorn_eps_min, sinkhorn_vol_coupling: epsilon_t = max(eps_min, eps0 (1 + coupling
        (ratio - 1)^+)), relative to the mean transport cost.
    sinkhorn_tol, sinkhorn_max_iter: stop on max marginal error <= tol, or after max_iter sweeps.
    jko_tau: JKO step towards the target weights per tick at volatility ratio 1 (smaller when volatile).
    jko_radius: trust region: the largest transport cost (in squared volatility units) one tick may move.
    conformal_gamma: step of the online conformal (ACI-style) update of the interval's log width
        multiplier; large enough (0.05) that a series of a few hundred rows is calibrated within them.
    spread_move_fraction: the fused predictive spread is at least this fraction of the predicted move
        (both in volatility units): the size of a forecast step is itself uncertain.
    anomaly_decay: per-tick decay of the envelope of recent anomaly evidence; anomaly_score is the rise
        above it, so an episode scores once at its start (0.998: the envelope halves in ~350 ticks).
    range_history: accepted ticks a series needs before a value beyond the range of all its accepted
        values so far scores as an anomaly (0: off). Under no change, a tick is beyond the range of the
        i before it with chance about 2 / i, so a long history makes such a value news; a run of them
        (a trend setting new highs) scores once, and again only after range_history / 8 ticks without one.
    range_margin: how far beyond the range, as a fraction of its width, a value must be to count.
    season_bins: phase bins of the seasonal profile (0: no season). The season (day, week or year) is
        chosen per series from its sampling interval; 288 holds a day of five-minute rows one row a bin,
        and a week of half-hourly rows at most two rows a bin (native/season.py).
    season_alpha: EWMA weight, across seasons, of each bin's increment (Holt-Winters' gamma).
    season_gain_alpha: EWMA weight of the fit of increments on the profile that sets how much of it
        kernels A, B and D take as given (0.01: about a hundred ticks).
    season_shrink: the seasonal input is soft-thresholded by this many volatility units over the square
        root of the increments each bin rests on (0: off): bins that only average noise offer nothing.
    rough_holder: a window whose Hölder exponent is below this is too rough: kernel D alone predicts.
    frozen_steps: this many identical values in a row make the next identical one "frozen" (0: off).
    frozen_season_fraction: a flat run shorter than this fraction of the series' season can be the
        season's own shape (a quiet night, half a square wave), so the frozen check waits that long too
        (0: off). Either way a spell up to 1.5 times as long as one the series has ended by itself
        (shorter than its season) is not frozen.
    outlier_z: a value further than this many interval half-widths from the prediction is an outlier
        (0: off); `outlier_patience` outliers in a row are taken as a level shift and accepted.
    max_abs_value: values beyond +-this are refused (keeps squares finite in float64).
    recovery_steps: clean ticks needed to leave degraded mode (hysteresis).
    seed: seeds kernel B's initial weights, the same for every series, so runs are reproducible.
    """

    interval_level: float = 0.95
    warmup_steps: int = 40
    window: int = 32
    volatility_alpha: float = 0.05
    volatility_long_alpha: float = 0.005
    loss_alpha: float = 0.05
    fusion_beta: float = 8.0
    sinkhorn_eps0: float = 1.0
    sinkhorn_eps_min: float = 0.1
    sinkhorn_vol_coupling: float = 1.0
    sinkhorn_tol: float = 1e-4
    sinkhorn_max_iter: int = 50
    jko_tau: float = 0.1
    jko_radius: float = 0.25
    conformal_gamma: float = 0.05
    spread_move_fraction: float = 0.1
    anomaly_decay: float = 0.998
    range_history: int = 2000
    range_margin: float = 0.02
    season_bins: int = 288
    season_alpha: float = 0.2
    season_gain_alpha: float = 0.01
    season_shrink: float = 1.0
    rough_holder: float = 0.05
    frozen_steps: int = 100
    frozen_season_fraction: float = 0.5
    outlier_z: float = 25.0
    outlier_patience: int = 3
    max_abs_value: float = 1e100
    recovery_steps: int = 10
    seed: int = 0

    @property
    def interval_z(self) -> float:
        """Two-sided standard-normal quantile for interval_level."""
        return NormalDist().inv_cdf(0.5 + self.interval_level / 2.0)


@dataclass(frozen=True)
class KernelsConfig:
    """Hyper-parameters of kernels A-D (all in units of the series' long-run volatility).

    krr_lags: lagged increments in kernel A's (and B's) inputs, plus the distance from the window mean.
    krr_bandwidth: RBF bandwidth per input dimension. krr_ridge: ridge lambda.
    krr_cg_iters: conjugate-gradient iterations per tick (warm-started, so few are needed).
    density_hidden: hidden units of kernel B's network. density_lr: its SGD step.
    jd_alpha: EWMA weight of kernel C's drift, diffusion and jump estimates; jd_theta_alpha: of the
        level its drift pulls towards. jump_z: drift-corrected increments beyond this many diffusion
        sigmas count as jumps. stiffness_threshold: kappa dt above which kernel C steps implicitly, at
        Hölder exponent 0.5 (scaled by (h / 0.5)^stiffness_holder_gain, so rough paths switch sooner).
    logsig_depth: log-signature depth of kernel D (1-3). logsig_points: path length it reads.
    logsig_forgetting: RLS forgetting factor. logsig_clip: bound on the error driving one update.
    """

    krr_lags: int = 4
    krr_bandwidth: float = 1.0
    krr_ridge: float = 0.3
    krr_cg_iters: int = 4
    density_hidden: int = 8
    density_lr: float = 0.01
    jd_alpha: float = 0.01
    jd_theta_alpha: float = 0.2
    jump_z: float = 6.0
    stiffness_threshold: float = 1.0
    stiffness_holder_gain: float = 1.0
    logsig_depth: int = 2
    logsig_points: int = 8
    logsig_forgetting: float = 0.995
    logsig_clip: float = 3.0


@dataclass(frozen=True)
class CusumConfig:
    """Regime-change detection on standardised residuals.

    k: reference value (half the shift, in sigmas, detected fastest). h: threshold at Gaussian tails.
    kurtosis_gain: h_t = h sqrt(1 + gain (kurtosis - 3)^+). kurtosis_alpha: EWMA weight of the residual
        moments. grace_period_steps: ticks after an alarm in which no alarm fires and weights stay put.
    """

    k: float = 0.5
    h: float = 5.0
    kurtosis_gain: float = 0.5
    kurtosis_alpha: float = 0.01
    grace_period_steps: int = 30


@dataclass(frozen=True)
class PredictorConfig:
    """Everything `orchestrate_step` reads; hashable, so it is a static argument of the compiled step."""

    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)
    kernels: KernelsConfig = field(default_factory=KernelsConfig)
    cusum: CusumConfig = field(default_factory=CusumConfig)


@dataclass(frozen=True)
class USPConfig:
    """The whole configuration. `version` is the SHA-256 of its canonical JSON, first 12 hex digits."""

    streams: StreamsConfig = field(default_factory=StreamsConfig)
    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)
    kernels: KernelsConfig = field(default_factory=KernelsConfig)
    cusum: CusumConfig = field(default_factory=CusumConfig)

    def __post_init__(self) -> None:
        _check_ranges(self)

    @property
    def version(self) -> str:
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def predictor(self) -> PredictorConfig:
        return PredictorConfig(self.orchestration, self.kernels, self.cusum)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> USPConfig:
        """Build from a parsed TOML mapping; unknown sections or keys are errors.

        >>> USPConfig.from_mapping({"streams": {"partitions": 4}}).streams.partitions
        4
        >>> USPConfig.from_mapping({"stream": {}})
        Traceback (most recent call last):
        ...
        models.config.ConfigError: unknown section [stream]; known: cusum, kernels, orchestration, streams
        """
        sections: dict[str, type[Any]] = {"streams": StreamsConfig, "orchestration": OrchestrationConfig,
                                          "kernels": KernelsConfig, "cusum": CusumConfig}
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise ConfigError(f"unknown section [{unknown[0]}]; known: {', '.join(sorted(sections))}")
        built: dict[str, Any] = {}
        for name, klass in sections.items():
            built[name] = _build_section(name, klass, data.get(name, {}))
        return cls(**built)


#: Keys earlier versions accepted that no longer do anything: a config that sets one still loads, with a
#: warning, instead of failing as an unknown key.
REMOVED_KEYS: dict[str, str] = {
    "streams.seal_changelog": "recovery now reads each changelog partition's end from a fetch, so no "
                              "seal batch is written; remove the key",
}


def _build_section(name: str, klass: type[Any], raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table, got {type(raw).__name__}")
    known = {f.name: f for f in fields(klass)}
    raw = dict(raw)
    for key in [k for k in raw if f"{name}.{k}" in REMOVED_KEYS]:
        warnings.warn(f"config key {name}.{key} is ignored: {REMOVED_KEYS[f'{name}.{key}']}", stacklevel=4)
        del raw[key]
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
    s, o, k, c = config.streams, config.orchestration, config.kernels, config.cusum
    checks: list[tuple[bool, str]] = [
        (1 <= s.partitions <= 1024, "streams.partitions must be in [1, 1024]"),
        (1 <= s.max_batch <= 100_000, "streams.max_batch must be in [1, 100000]"),
        (1 <= s.min_batch <= s.max_batch, "streams.min_batch must be in [1, max_batch]"),
        (0 <= s.batch_within_ms <= 10_000, "streams.batch_within_ms must be in [0, 10000]"),
        (s.batch_within_ms <= s.batch_within_max_ms <= 60_000,
         "streams.batch_within_max_ms must be in [batch_within_ms, 60000]"),
        (s.memory_limit_mb >= 0, "streams.memory_limit_mb must be >= 0 (0 turns the back-off off)"),
        (1 <= s.fetch_max_wait_ms <= 10_000, "streams.fetch_max_wait_ms must be in [1, 10000]"),
        (0 < s.heartbeat_s < s.session_timeout_s, "streams.heartbeat_s must be in (0, session_timeout_s)"),
        (1 <= s.producer_max_batch_bytes <= 1_048_576, "streams.producer_max_batch_bytes must be in [1, 1048576]"),
        (0 <= s.step_threads <= 1024, "streams.step_threads must be in [0, 1024] (0: one per core)"),
        (0 < o.interval_level < 1, "orchestration.interval_level must be in (0, 1)"),
        (0 <= o.warmup_steps <= 1_000_000, "orchestration.warmup_steps must be in [0, 1000000]"),
        (o.window in (16, 32, 64), "orchestration.window must be 16, 32 or 64"),
        (0 < o.volatility_alpha <= 1, "orchestration.volatility_alpha must be in (0, 1]"),
        (0 < o.volatility_long_alpha <= 1, "orchestration.volatility_long_alpha must be in (0, 1]"),
        (0 < o.loss_alpha <= 0.5, "orchestration.loss_alpha must be in (0, 0.5]"),
        (0 <= o.fusion_beta <= 20, "orchestration.fusion_beta must be in [0, 20]"),
        (0 < o.sinkhorn_eps_min <= o.sinkhorn_eps0, "orchestration.sinkhorn_eps_min must be in (0, sinkhorn_eps0]"),
        (o.sinkhorn_vol_coupling >= 0, "orchestration.sinkhorn_vol_coupling must be >= 0"),
        (0 < o.sinkhorn_tol < 1, "orchestration.sinkhorn_tol must be in (0, 1)"),
        (1 <= o.sinkhorn_max_iter <= 10_000, "orchestration.sinkhorn_max_iter must be in [1, 10000]"),
        (0 <= o.jko_tau <= 1, "orchestration.jko_tau must be in [0, 1]"),
        (o.jko_radius > 0, "orchestration.jko_radius must be > 0"),
        (0 <= o.conformal_gamma <= 1, "orchestration.conformal_gamma must be in [0, 1]"),
        (0 <= o.spread_move_fraction < 1, "orchestration.spread_move_fraction must be in [0, 1)"),
        (0 <= o.anomaly_decay < 1, "orchestration.anomaly_decay must be in [0, 1)"),
        (o.range_history >= 0, "orchestration.range_history must be >= 0 (0 turns the range check off)"),
        (0 <= o.range_margin <= 10, "orchestration.range_margin must be in [0, 10]"),
        (0 <= o.season_bins <= 2016, "orchestration.season_bins must be in [0, 2016]"),
        (0 < o.season_alpha <= 1, "orchestration.season_alpha must be in (0, 1]"),
        (0 < o.season_gain_alpha <= 1, "orchestration.season_gain_alpha must be in (0, 1]"),
        (0 <= o.season_shrink <= 10, "orchestration.season_shrink must be in [0, 10]"),
        (0 <= o.rough_holder <= 1.5, "orchestration.rough_holder must be in [0, 1.5]"),
        (o.frozen_steps >= 0, "orchestration.frozen_steps must be >= 0"),
        (0 <= o.frozen_season_fraction <= 1, "orchestration.frozen_season_fraction must be in [0, 1]"),
        (o.outlier_z >= 0, "orchestration.outlier_z must be >= 0 (0 turns the check off)"),
        (o.outlier_patience >= 1, "orchestration.outlier_patience must be >= 1"),
        (0 < o.max_abs_value <= 1e150, "orchestration.max_abs_value must be in (0, 1e150]"),
        (o.recovery_steps >= 1, "orchestration.recovery_steps must be >= 1"),
        (1 <= k.krr_lags <= o.window // 2, "kernels.krr_lags must be in [1, window / 2]"),
        (k.krr_bandwidth > 0, "kernels.krr_bandwidth must be > 0"),
        (k.krr_ridge > 0, "kernels.krr_ridge must be > 0"),
        (1 <= k.krr_cg_iters <= 100, "kernels.krr_cg_iters must be in [1, 100]"),
        (1 <= k.density_hidden <= 64, "kernels.density_hidden must be in [1, 64]"),
        (0 <= k.density_lr <= 1, "kernels.density_lr must be in [0, 1]"),
        (0 < k.jd_alpha <= 1, "kernels.jd_alpha must be in (0, 1]"),
        (0 < k.jd_theta_alpha <= 1, "kernels.jd_theta_alpha must be in (0, 1]"),
        (k.jump_z > 0, "kernels.jump_z must be > 0"),
        (k.stiffness_threshold > 0, "kernels.stiffness_threshold must be > 0"),
        (k.stiffness_holder_gain >= 0, "kernels.stiffness_holder_gain must be >= 0"),
        (1 <= k.logsig_depth <= 3, "kernels.logsig_depth must be 1, 2 or 3"),
        (2 <= k.logsig_points <= o.window, "kernels.logsig_points must be in [2, window]"),
        (0 < k.logsig_forgetting <= 1, "kernels.logsig_forgetting must be in (0, 1]"),
        (k.logsig_clip > 0, "kernels.logsig_clip must be > 0"),
        (c.k >= 0, "cusum.k must be >= 0"),
        (c.h > 0, "cusum.h must be > 0"),
        (c.kurtosis_gain >= 0, "cusum.kurtosis_gain must be >= 0"),
        (0 < c.kurtosis_alpha <= 1, "cusum.kurtosis_alpha must be in (0, 1]"),
        (c.grace_period_steps >= 0, "cusum.grace_period_steps must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    for name, section in (("streams", s), ("orchestration", o), ("kernels", k), ("cusum", c)):
        for f in fields(section):
            value = getattr(section, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name}.{f.name} must be finite")


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
