from pathlib import Path

import pytest

from models.config import ConfigError, USPConfig, load_config


def test_defaults_are_valid_and_versioned() -> None:
    cfg = USPConfig()
    assert cfg.streams.partitions == 8
    assert len(cfg.version) == 12
    assert cfg.version == USPConfig().version


def test_version_changes_with_content() -> None:
    assert USPConfig.from_mapping({"orchestration": {"ewma_alpha": 0.5}}).version != USPConfig().version


def test_interval_z_is_the_normal_quantile() -> None:
    assert USPConfig().orchestration.interval_z == pytest.approx(1.959963984540054, abs=1e-12)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"streams": {"partitons": 4}}, "unknown key streams.partitons"),
        ({"nope": {}}, "unknown section [nope]"),
        ({"streams": {"partitions": "8"}}, "streams.partitions must be int"),
        ({"streams": {"partitions": 0}}, "streams.partitions must be in [1, 1024]"),
        ({"orchestration": {"ewma_alpha": 1.5}}, "orchestration.ewma_alpha must be in (0, 1]"),
        ({"orchestration": {"interval_level": 1}}, "orchestration.interval_level must be in (0, 1)"),
        ({"streams": {"heartbeat_s": 10}}, "streams.heartbeat_s must be in (0, session_timeout_s)"),
        ({"streams": []}, "[streams] must be a table"),
    ],
)
def test_bad_config_is_refused_with_the_key_named(mapping: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        USPConfig.from_mapping(mapping)
    assert message in str(info.value)


def test_load_from_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[streams]\npartitions = 4\n[orchestration]\newma_alpha = 1\n")
    cfg = load_config(path)
    assert cfg.streams.partitions == 4
    assert cfg.orchestration.ewma_alpha == 1.0
    assert isinstance(cfg.orchestration.ewma_alpha, float)


def test_load_reports_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[streams\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)
