from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models.config import (
    ConfigError,
    CusumConfig,
    KernelsConfig,
    OrchestrationConfig,
    PredictorConfig,
    USPConfig,
    load_config,
)


def test_defaults_are_valid_and_versioned() -> None:
    cfg = USPConfig()
    assert cfg.streams.partitions == 8
    assert len(cfg.version) == 12
    assert cfg.version == USPConfig().version


@pytest.mark.parametrize(
    "mapping",
    [
        {"orchestration": {"jko_tau": 0.5}},
        {"kernels": {"krr_ridge": 0.5}},
        {"cusum": {"h": 6.0}},
        {"streams": {"partitions": 4}},
    ],
)
def test_version_changes_with_content(mapping: dict[str, Any]) -> None:
    assert USPConfig.from_mapping(mapping).version != USPConfig().version


def test_interval_z_is_the_normal_quantile() -> None:
    assert USPConfig().orchestration.interval_z == pytest.approx(1.959963984540054, abs=1e-12)
    assert OrchestrationConfig(interval_level=0.9).interval_z == pytest.approx(1.6448536269514722, abs=1e-12)


def test_new_sections_parse() -> None:
    cfg = USPConfig.from_mapping({
        "orchestration": {"window": 64, "sinkhorn_max_iter": 20, "rough_holder": 0.1},
        "kernels": {"krr_lags": 6, "density_hidden": 16, "logsig_depth": 3, "logsig_points": 12, "jump_z": 5},
        "cusum": {"k": 0.75, "h": 4, "grace_period_steps": 10},
    })
    assert cfg.orchestration.window == 64
    assert cfg.kernels.krr_lags == 6 and cfg.kernels.logsig_depth == 3 and cfg.kernels.logsig_points == 12
    assert cfg.kernels.jump_z == 5.0 and isinstance(cfg.kernels.jump_z, float)  # int accepted for a float
    assert cfg.cusum.h == 4.0 and isinstance(cfg.cusum.h, float)
    assert cfg.cusum.k == 0.75 and cfg.cusum.grace_period_steps == 10
    # Untouched keys keep their defaults.
    assert cfg.kernels.krr_ridge == KernelsConfig().krr_ridge
    assert cfg.cusum.kurtosis_alpha == CusumConfig().kurtosis_alpha


def test_predictor_is_the_step_sections_and_hashable() -> None:
    cfg = USPConfig.from_mapping({"kernels": {"krr_lags": 3}, "cusum": {"h": 7.0}})
    p = cfg.predictor
    assert isinstance(p, PredictorConfig)
    assert p.orchestration is cfg.orchestration and p.kernels is cfg.kernels and p.cusum is cfg.cusum
    assert hash(p) == hash(USPConfig.from_mapping({"kernels": {"krr_lags": 3}, "cusum": {"h": 7.0}}).predictor)
    assert p == PredictorConfig(kernels=KernelsConfig(krr_lags=3), cusum=CusumConfig(h=7.0))
    assert p != PredictorConfig()


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"streams": {"partitons": 4}}, "unknown key streams.partitons"),
        ({"kernels": {"krr_lag": 4}}, "unknown key kernels.krr_lag"),
        ({"cusum": {"threshold": 4}}, "unknown key cusum.threshold"),
        ({"orchestration": {"ewma_alpha": 0.3}}, "unknown key orchestration.ewma_alpha"),  # removed key
        ({"nope": {}}, "unknown section [nope]"),
        ({"kernel": {}}, "unknown section [kernel]"),
        ({"streams": {"partitions": "8"}}, "streams.partitions must be int"),
        ({"kernels": {"krr_lags": 2.0}}, "kernels.krr_lags must be int"),
        ({"cusum": {"h": "5"}}, "cusum.h must be float"),
        ({"cusum": {"grace_period_steps": True}}, "cusum.grace_period_steps must be int"),
        ({"streams": {"partitions": 0}}, "streams.partitions must be in [1, 1024]"),
        ({"orchestration": {"window": 20}}, "orchestration.window must be 16, 32 or 64"),
        ({"orchestration": {"interval_level": 1}}, "orchestration.interval_level must be in (0, 1)"),
        ({"orchestration": {"sinkhorn_eps_min": 2.0}}, "orchestration.sinkhorn_eps_min must be in (0, sinkhorn_eps0]"),
        ({"orchestration": {"loss_alpha": 0.6}}, "orchestration.loss_alpha must be in (0, 0.5]"),
        ({"orchestration": {"recovery_steps": 0}}, "orchestration.recovery_steps must be >= 1"),
        ({"orchestration": {"range_history": -1}}, "orchestration.range_history must be >= 0"),
        ({"orchestration": {"range_margin": -0.01}}, "orchestration.range_margin must be in [0, 10]"),
        ({"kernels": {"krr_lags": 17}}, "kernels.krr_lags must be in [1, window / 2]"),
        ({"orchestration": {"window": 16}, "kernels": {"krr_lags": 9}}, "kernels.krr_lags must be in [1, window / 2]"),
        ({"kernels": {"logsig_depth": 4}}, "kernels.logsig_depth must be 1, 2 or 3"),
        ({"orchestration": {"window": 16}, "kernels": {"logsig_points": 17}}, "kernels.logsig_points must be in"),
        ({"kernels": {"krr_cg_iters": 0}}, "kernels.krr_cg_iters must be in [1, 100]"),
        ({"cusum": {"h": 0}}, "cusum.h must be > 0"),
        ({"cusum": {"k": -0.1}}, "cusum.k must be >= 0"),
        ({"cusum": {"kurtosis_alpha": 0}}, "cusum.kurtosis_alpha must be in (0, 1]"),
        ({"cusum": {"grace_period_steps": -1}}, "cusum.grace_period_steps must be >= 0"),
        ({"kernels": {"krr_bandwidth": float("nan")}}, "kernels.krr_bandwidth must be > 0"),  # NaN fails > 0
        ({"cusum": {"h": float("inf")}}, "h must be finite"),
        ({"orchestration": {"jko_radius": float("inf")}}, "jko_radius must be finite"),
        ({"streams": {"heartbeat_s": 10}}, "streams.heartbeat_s must be in (0, session_timeout_s)"),
        ({"streams": {"step_threads": -1}}, "streams.step_threads must be in [0, 1024] (0: one per core)"),
        ({"streams": []}, "[streams] must be a table"),
        ({"cusum": 5}, "[cusum] must be a table"),
    ],
)
def test_bad_config_is_refused_with_the_key_named(mapping: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        USPConfig.from_mapping(mapping)
    assert message in str(info.value)


@pytest.mark.parametrize("window", [16, 32, 64])
def test_every_allowed_window_with_its_largest_lags_is_accepted(window: int) -> None:
    cfg = USPConfig.from_mapping({"orchestration": {"window": window},
                                  "kernels": {"krr_lags": window // 2, "logsig_points": window}})
    assert cfg.kernels.krr_lags == window // 2


def test_load_from_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        "[streams]\npartitions = 4\n"
        "[orchestration]\njko_tau = 1\nwindow = 16\n"
        "[kernels]\nkrr_lags = 2\nlogsig_depth = 1\n"
        "[cusum]\nh = 6\ngrace_period_steps = 5\n"
    )
    cfg = load_config(path)
    assert cfg.streams.partitions == 4
    assert cfg.orchestration.jko_tau == 1.0
    assert isinstance(cfg.orchestration.jko_tau, float)
    assert cfg.orchestration.window == 16
    assert cfg.kernels.krr_lags == 2 and cfg.kernels.logsig_depth == 1
    assert cfg.cusum.h == 6.0 and cfg.cusum.grace_period_steps == 5
    assert cfg.predictor.orchestration.window == 16


def test_load_reports_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[streams\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[orchestration]\nwindow = 20\n")
    with pytest.raises(ConfigError, match=r"wrong\.toml: orchestration\.window must be 16, 32 or 64"):
        load_config(wrong)


def test_none_gives_defaults() -> None:
    assert load_config(None) == USPConfig()


def test_a_removed_key_is_ignored_with_a_warning_and_an_unknown_one_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[streams]\npartitions = 4\nseal_changelog = false\n")
    with pytest.warns(UserWarning, match=r"streams\.seal_changelog is ignored"):
        config = load_config(path)
    assert config.streams.partitions == 4
    path.write_text("[streams]\nseal_changelogs = false\n")
    with pytest.raises(ConfigError, match=r"unknown key streams\.seal_changelogs"):
        load_config(path)
