"""The shipped model and the default configuration of `emgdx train`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emgdx.cli import app
from emgdx.io import read_cohort
from emgdx.pipeline import Pipeline
from emgdx.pretrained import DEFAULT_MODEL, DEFAULT_MODEL_DIR, default_model_dir, default_pipeline

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped() -> Pipeline:
    return Pipeline.load(default_model_dir())


def test_train_without_model_options_fits_the_default_configuration(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    made = runner.invoke(
        app, ["simulate", str(sim), "--subjects-per-class", "2", "--duration-s", "3"]
    )
    assert made.exit_code == 0, made.output
    result = runner.invoke(app, ["train", str(sim), "--out", str(tmp_path / "m"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == DEFAULT_MODEL
    fitted = Pipeline.load(tmp_path / "m")
    assert fitted.to_config() == default_pipeline().to_config()
    assert fitted.train_sites_ == []  # one folder: no site named
    # naming any model option leaves the default: --epochs alone means the 1-D CNN
    assert runner.invoke(app, ["train", str(sim), "--epochs", "1", "--out", str(tmp_path / "c"),
                               "--json"]).exit_code == 0  # fmt: skip
    assert Pipeline.load(tmp_path / "c").model_name == "cnn1d"


def test_shipped_model_is_the_default_configuration_trained_on_both_hospitals(
    shipped: Pipeline,
) -> None:
    assert shipped.to_config() == default_pipeline().to_config()
    assert shipped.train_sites_ == ["algiers", "n2001"]
    assert len(shipped.train_subjects_) == 18 + 119
    assert shipped.reference_ is not None and shipped.reference_["available"]
    # its card travels with it, and is the one in the docs
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    assert card == (ROOT / "docs" / "model-card.md").read_text()
    assert shipped.weights_sha256() in card  # the card names the weights it describes


def test_predict_without_a_model_uses_the_shipped_one(
    shipped: Pipeline, n2001: Path, algiers: Path
) -> None:
    """A fit check, not an evaluation (these records trained it; docs/model-card.md has the
    subject-wise figures): broken weights or a wrong front end would miss most of them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cohort = read_cohort([n2001, algiers])
    picked = cohort.manifest.groupby(["site", "label"]).head(2)
    files = [str(cohort[rid].source) for rid in picked.index]
    result = runner.invoke(app, ["predict", *files, "--json"])
    assert result.exit_code == 0, result.output
    assert "shipped model" in result.stderr
    out = json.loads(result.stdout)
    assert Path(out["model"]["dir"]) == DEFAULT_MODEL_DIR
    assert out["model"]["weights_sha256"] == shipped.weights_sha256()
    rows = out["records"]
    assert len(rows) == len(files) == 12
    right = sum(r["predicted"] == picked.loc[r["record_id"], "label"] for r in rows)
    assert right >= 10, rows


def test_serve_and_monitor_default_to_the_shipped_model() -> None:
    from emgdx.cli import console

    assert console.make_pipeline(None, "3class", None, 0, None).to_config() == (
        default_pipeline().to_config()
    )
    assert console.shipped_model_dir() == DEFAULT_MODEL_DIR


def test_a_missing_shipped_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:  # fmt: skip
    import emgdx.pretrained as pretrained

    monkeypatch.setattr(pretrained, "DEFAULT_MODEL_DIR", tmp_path / "gone")
    result = runner.invoke(app, ["predict", str(tmp_path / "x.hea")])
    assert result.exit_code == 2
    assert "shipped model is missing" in result.stderr and "Traceback" not in result.output


def test_predict_answers_a_noise_csv_not_interpretable_and_exits_0(tmp_path: Path) -> None:
    """The issue's new user: a CSV of Gaussian noise once got "HEALTHY (1.00)"."""
    fs = 10_000
    noise = np.random.default_rng(0).normal(0, 50, 8 * fs)
    path = tmp_path / "noise.csv"
    path.write_text("emg_uv\n" + "\n".join(f"{v:.3f}" for v in noise))
    result = runner.invoke(app, ["predict", str(path), "--fs-hz", str(fs)])
    assert result.exit_code == 0, result.output
    assert "NOT INTERPRETABLE" in result.stdout
    assert "noise: not interpretable: no motor-unit activity" in " ".join(result.stdout.split())
    result = runner.invoke(app, ["predict", str(path), "--fs-hz", str(fs), "--json"])
    (row,) = json.loads(result.stdout)["records"]
    assert row["outcome"] == "not interpretable" and row["predicted"] is None
    assert row["reasons"].startswith("no motor-unit activity")


def test_warnings_reach_the_user_as_one_line(tmp_path: Path) -> None:
    """A 4 kHz file on the 6 kHz model loses band: said in one line, without a source path or
    the echoed code line."""
    import subprocess
    import sys

    fs = 4000
    x = np.random.default_rng(1).normal(0, 50, 6 * fs)
    path = tmp_path / "slow.csv"
    path.write_text("emg_uv\n" + "\n".join(f"{v:.3f}" for v in x))
    run = subprocess.run(
        [sys.executable, "-m", "emgdx.cli", "predict", str(path), "--fs-hz", str(fs)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    assert lines and "Hz" in lines[0], run.stderr
    assert ".py:" not in run.stderr and "Warning:" not in run.stderr
