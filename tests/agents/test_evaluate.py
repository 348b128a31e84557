"""`usp evaluate` run in-process through `agents.cli.main`, on a few small series."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.cli import main
from models.evaluation.anomaly_suite import ANOMALY_METHODS
from models.evaluation.changepoint_suite import CHANGEPOINT_METHODS
from models.evaluation.runs import FORECAST_METHODS

ROOT = Path(__file__).resolve().parents[2]
NAB = ROOT.parent / "shared" / "data" / "nab"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USP_JAX_CACHE", "off")  # no compile cache written under the home folder
    monkeypatch.delenv("USP_NAB_DATA", raising=False)


def evaluate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["evaluate", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def last_line_flags(stdout: str) -> dict[str, Any]:
    flags = orjson.loads(stdout.strip().splitlines()[-1])
    assert isinstance(flags, dict)
    assert all(isinstance(v, bool) for v in flags.values()), flags
    return flags


def test_changepoint_suite_writes_json_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, plots = tmp_path / "eval" / "cp.json", tmp_path / "plots"
    code, stdout, stderr = evaluate(capsys, "--suite", "changepoint", "--series", "nile",
                                    "--series", "mean_shift_5sd", "--json", str(out), "--plot", str(plots))
    assert code == 0, stderr
    report = orjson.loads(out.read_bytes())
    assert report["suites"] == ["changepoint"]
    assert set(report) == {"suites", "split", "targets", "changepoint"} and report["split"] == "all"
    cp = report["changepoint"]
    assert cp["methods"] == list(CHANGEPOINT_METHODS)
    assert [s["series"] for s in cp["series"]] == ["statsmodels/nile", "synthetic/mean_shift_5sd_gauss"]
    for s in cp["series"]:
        assert s["truth"], s["series"]  # both carry annotated change points
        for m in CHANGEPOINT_METHODS:
            assert 0.0 <= s["f1"][m] <= 1.0 and 0.0 <= s["covering"][m] <= 1.0, (s["series"], m)
            assert all(0 <= a < s["rows"] for a in s["alarms"][m])
    for m in CHANGEPOINT_METHODS:
        assert 0.0 <= cp["mean_f1"][m] <= 1.0 and 0.0 <= cp["mean_covering"][m] <= 1.0
    target = report["targets"]["f1_beats_river_detectors"]
    assert target["usp"] == cp["mean_f1"]["usp"]

    pngs = sorted(p.name for p in plots.iterdir())
    assert pngs == ["statsmodels_nile.png", "synthetic_mean_shift_5sd_gauss.png"]
    for name in pngs:
        data = (plots / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name

    flags = last_line_flags(stdout)
    assert set(flags) == {"f1_beats_river_detectors"}
    assert flags["f1_beats_river_detectors"] == target["met"]


def test_forecast_suite_without_nab_uses_package_series(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "no_nab"
    empty.mkdir()
    out = tmp_path / "fc.json"
    code, stdout, stderr = evaluate(capsys, "--suite", "forecast", "--series", "nile", "--series", "airline",
                                    "--nab", str(empty), "--json", str(out))
    assert code == 0, stderr
    # An explicit --nab that is not a NAB folder is reported, not replaced by another folder.
    assert "NAB data not found" in stderr
    report = orjson.loads(out.read_bytes())
    assert report["suites"] == ["forecast"] and "anomaly" not in report
    fc = report["forecast"]
    expected = ["usp", "kernel_a", "kernel_b", "kernel_c", "kernel_d", "naive", "snarimax", "holt_winters",
                "linear_lags"]
    assert fc["methods"] == expected == list(FORECAST_METHODS)
    assert sorted(s["series"] for s in fc["series"]) == ["river/airline_passengers", "statsmodels/nile"]
    assert {s["source"] for s in fc["series"]} == {"river", "statsmodels"}
    for s in fc["series"]:
        assert set(s["scores"]) == set(expected)
        assert len({sc["n"] for sc in s["scores"].values()}) == 1, s["series"]  # same rows for every method
        assert 0.0 <= s["scores"]["usp"]["coverage"] <= 1.0
        assert all(sc["mase"] > 0 for sc in s["scores"].values())
    targets = report["targets"]
    assert set(targets) == {"mase_beats_best_kernel", "mase_beats_best_river", "coverage_in_band"}
    assert targets["mase_beats_best_kernel"]["usp"] == fc["median_mase"]["usp"]
    assert targets["mase_beats_best_kernel"]["best_kernel"] == min(fc["median_mase"][f"kernel_{k}"] for k in "abcd")
    assert targets["mase_beats_best_river"]["best_river"] == min(
        fc["median_mase"][m] for m in ("snarimax", "holt_winters", "linear_lags"))
    assert targets["coverage_in_band"]["fraction"] == fc["coverage_in_band"]["usp"]
    assert set(last_line_flags(stdout)) == set(targets)


@pytest.mark.skipif(not (NAB / "combined_windows.json").is_file(), reason=f"no NAB data at {NAB}")
def test_anomaly_suite_on_one_nab_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "an.json"
    code, stdout, stderr = evaluate(capsys, "--suite", "anomaly", "--nab", str(NAB), "--series",
                                    "rogue_agent_key_hold", "--max-rows", "1500", "--json", str(out))
    assert code == 0, stderr
    report = orjson.loads(out.read_bytes())
    an = report["anomaly"]
    assert an["methods"] == list(ANOMALY_METHODS)
    assert an["files"] == 1 and an["windows"] >= 1
    assert set(an["scores"]) == set(ANOMALY_METHODS)
    for m, by in an["scores"].items():
        assert set(by) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}, m
        for p, s in by.items():
            x = s["normalized"]
            assert isinstance(x, float) and math.isfinite(x), (m, p, x)  # NaN would come back as null
            assert -100.0 <= x <= 100.0, (m, p, x)
            assert s["tp"] + s["fn"] == an["windows"]
    assert report["targets"]["nab_standard"]["usp"] == an["scores"]["usp"]["standard"]["normalized"]
    assert set(last_line_flags(stdout)) == {"nab_standard"}


def test_unknown_suite_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--suite", "bogus"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
