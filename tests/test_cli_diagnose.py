"""`emgdx train`, `evaluate`, `predict` and the training demo, on tiny simulated cohorts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emgdx.cli import app
from emgdx.demo import run_demo
from emgdx.io import read
from emgdx.pipeline import Pipeline
from emgdx.recording import LABELS

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 subjects per class, 2 records of 3 s each, written by `emgdx simulate`."""
    out = tmp_path_factory.mktemp("cli") / "sim"
    code, stdout, stderr = _invoke(
        "simulate",
        str(out),
        "--subjects-per-class",
        "2",
        "--records-per-subject",
        "2",
        "--duration-s",
        "3",
        "--fs-hz",
        "10000",
        "--seed",
        "1",
    )
    assert code == 0, stdout + stderr
    return out


@pytest.fixture(scope="module")
def rf_model(sim_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    model_dir = tmp_path_factory.mktemp("model") / "rf"
    code, stdout, stderr = _invoke(
        "train", str(sim_dir), "--model", "random_forest", "--out", str(model_dir), "--json"
    )
    assert code == 0, stdout + stderr
    return model_dir, json.loads(stdout)


def test_train_summary_and_saved_files(rf_model: tuple[Path, dict]) -> None:
    model_dir, summary = rf_model
    assert (model_dir / "pipeline.json").is_file() and (model_dir / "model.safetensors").is_file()
    assert summary["subjects"] == 6 and summary["records"] == 12
    assert set(summary["windows_per_class"]) == set(LABELS)
    assert all(n > 0 for n in summary["windows_per_class"].values())
    assert summary["windows"] == sum(summary["windows_per_class"].values())
    assert summary["best_epoch"] is None  # a classical model has no epochs
    saved = json.loads((model_dir / "pipeline.json").read_text())
    assert saved["model"]["name"] == "random_forest"
    assert len(saved["data"]["train_subjects"]) == 6


def test_train_refuses_to_overwrite(sim_dir: Path, rf_model: tuple[Path, dict]) -> None:
    model_dir, _ = rf_model
    code, _, stderr = _invoke(
        "train", str(sim_dir), "--model", "random_forest", "--out", str(model_dir)
    )
    assert code == 2 and "already exists" in stderr


def test_train_predict_round_trip_matches_library(
    sim_dir: Path, rf_model: tuple[Path, dict]
) -> None:
    model_dir, _ = rf_model
    files = sorted(sim_dir.glob("*.hea"))[:3]
    code, stdout, stderr = _invoke("predict", str(model_dir), *map(str, files), "--json")
    assert code == 0, stdout + stderr
    payload = json.loads(stdout)
    assert payload["failed"] == [] and payload["model"]["classes"] == list(LABELS)
    rows = payload["records"]
    assert [Path(r["file"]).name for r in rows] == [f.name for f in files]
    # the CLI reports exactly what the library predicts for the same file
    pipe = Pipeline.load(model_dir)
    for row, path in zip(rows, files, strict=True):
        expected = pipe.predict(read(path)).records.iloc[0]
        probs = np.array([row[f"p_{c}"] for c in LABELS])
        np.testing.assert_allclose(probs, [expected[f"p_{c}"] for c in LABELS], atol=1e-12)
        assert probs.sum() == pytest.approx(1.0)
        assert row["predicted"] == LABELS[int(np.argmax(probs))]
        assert row["confidence"] == pytest.approx(probs.max())
        assert row["n_windows"] == expected["n_windows"] > 0
        assert "qc_flags" in row
        # the file's own label is not where a script looks for the answer
        assert "label" not in row and row["label_in_file"] == read(path)[0].label
    assert payload["model"]["backend"] == "sklearn"  # what ran, for a random forest
    code, stdout, _ = _invoke("predict", str(model_dir), str(files[0]))  # the human table
    assert code == 0 and files[0].stem in stdout and "P(neurogenic)" in stdout


def test_predict_bad_file_reported_good_one_still_predicted(
    sim_dir: Path, rf_model: tuple[Path, dict], tmp_path: Path
) -> None:
    model_dir, _ = rf_model
    good = sorted(sim_dir.glob("*.hea"))[0]
    bad = tmp_path / "broken.csv"
    bad.write_text("time,emg\n0.0,1.0\n0.001,abc\n")
    missing = tmp_path / "nope.hea"
    code, stdout, stderr = _invoke(
        "predict", str(model_dir), str(bad), str(good), str(missing), "--json"
    )
    assert code == 1, stderr
    payload = json.loads(stdout)
    assert [r["record_id"] for r in payload["records"]] == [good.stem]
    failed = {Path(f["path"]).name: f["problem"] for f in payload["failed"]}
    assert set(failed) == {"broken.csv", "nope.hea"}
    assert "broken.csv" in failed["broken.csv"] and "nope.hea" in failed["nope.hea"]
    code, stdout, stderr = _invoke("predict", str(model_dir), str(bad), str(good))
    assert code == 1 and "broken.csv" in stderr and good.stem in stdout


def test_predict_usage_errors(tmp_path: Path, sim_dir: Path, rf_model: tuple[Path, dict]) -> None:
    record = str(next(sim_dir.glob("*.hea")))
    # a leading folder is the model: one that holds none is named in the error
    code, _, stderr = _invoke("predict", str(sim_dir), record)
    assert code == 2 and str(sim_dir) in stderr and "Traceback" not in stderr
    code, _, stderr = _invoke("predict", str(rf_model[0]))  # a model, but nothing to classify
    assert code == 2 and "record files" in stderr
    code, _, _ = _invoke("predict")
    assert code == 2


def test_evaluate_loso_writes_report_with_subject_wise_folds(sim_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    code, stdout, stderr = _invoke(
        "evaluate", str(sim_dir), "--model", "random_forest", "--cv", "loso",
        "--out", str(out), "--n-boot", "50", "--json",
    )  # fmt: skip
    assert code == 0, stdout + stderr
    summary = json.loads(stdout)
    assert summary["leaky"] is False and summary["n_folds"] == 6
    results = json.loads((out / "results.json").read_text())
    assert (out / "report.html").stat().st_size > 1000
    subjects = set()
    for fold in results["folds"]:
        # one held-out subject per fold, trained on the other five only
        assert len(fold["test_subjects"]) == 1 and fold["n_train_subjects"] == 5
        subjects.update(fold["test_subjects"])
    assert len(subjects) == 6
    rows = {(r["subset"], r["level"]): r for r in summary["metrics"]}
    assert set(rows) >= {("all", lvl) for lvl in ("window", "record", "subject")}
    rec = rows[("all", "record")]
    assert rec["balanced_accuracy"] == pytest.approx(
        results["evaluation"]["all"]["mean"]["record"]["metrics"]["balanced_accuracy"]
    )
    low, high = rec["balanced_accuracy_ci"]
    assert 0.0 <= low <= high <= 1.0


def test_evaluate_table_and_leaky_warning(sim_dir: Path, tmp_path: Path) -> None:
    code, stdout, stderr = _invoke(
        "evaluate", str(sim_dir), "--model", "random_forest", "--cv", "leaky", "--k", "2",
        "--out", str(tmp_path / "leaky"), "--n-boot", "20",
    )  # fmt: skip
    assert code == 0, stdout + stderr
    assert "WARNING" in stderr and "leaky" in stderr.lower() and "inflated" in stderr
    assert "LEAKY" in stdout
    for text in ("balanced acc.", "macro F1", "ROC-AUC", "subject", "low contraction"):
        assert text in stdout
    assert (tmp_path / "leaky" / "report.html").is_file()
    # a subject-wise run prints no such warning
    code, stdout, stderr = _invoke(
        "evaluate", str(sim_dir), "--model", "random_forest", "--cv", "kfold", "--k", "2",
        "--out", str(tmp_path / "kfold"), "--n-boot", "20",
    )  # fmt: skip
    assert code == 0 and "WARNING" not in stderr and "LEAKY" not in stdout


def test_evaluate_usage_errors(sim_dir: Path, tmp_path: Path) -> None:
    code, _, stderr = _invoke("evaluate", str(sim_dir), "--cv", "random")
    assert code == 2 and "--cv" in stderr
    code, _, stderr = _invoke("evaluate", str(sim_dir), "--model", "no_such_model")
    assert code == 2 and "no_such_model" in stderr
    code, _, stderr = _invoke("train", str(tmp_path / "empty.hea"), "--out", str(tmp_path / "m"))
    assert code == 2 and "empty.hea" in stderr


def test_train_torch_model_then_predict(sim_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "cnn"
    code, stdout, stderr = _invoke(
        "train", str(sim_dir), "--model", "cnn1d", "--epochs", "2", "--out", str(model_dir),
        "--task", "als_vs_rest", "--json",
    )  # fmt: skip
    assert code == 0, stdout + stderr
    summary = json.loads(stdout)
    assert 1 <= summary["best_epoch"] <= summary["epochs_run"] <= 2
    assert set(summary["windows_per_class"]) == {"rest", "neurogenic"}
    code, stdout, stderr = _invoke(
        "predict", str(model_dir), str(next(sim_dir.glob("*.hea"))), "--json"
    )
    assert code == 0, stderr
    (row,) = json.loads(stdout)["records"]
    names = json.loads(stdout)["model"]["classes"]
    assert len(names) == 2 and sum(row[f"p_{n}"] for n in names) == pytest.approx(1.0, abs=1e-5)


def test_run_demo_small_trains_evaluates_and_reports(tmp_path: Path) -> None:
    result = run_demo(
        seed=2,
        subjects_per_class=2,
        records_per_subject=2,
        duration_s=3.0,
        fs_hz=10_000.0,
        model="random_forest",
        cv="kfold",
        k=2,
        n_boot=20,
        report_dir=tmp_path / "report",
    )
    assert result.evaluation is not None and result.report is not None
    assert result.report["html"].is_file() and result.report["json"].is_file()
    folds = result.evaluation.folds
    assert len(folds) == 2
    tested = [s for f in folds for s in f["test_subjects"]]
    assert len(tested) == len(set(tested)) == 6  # each subject tested once, never trained on
    summary = result.to_dict()["evaluation"]
    assert summary["model"] == "random_forest" and summary["subjects_total"] == 6
    assert 0.0 <= summary["metrics"]["all/record"]["balanced_accuracy"] <= 1.0
    assert json.loads(result.report["json"].read_text())["class_names"] == list(LABELS)


def test_run_demo_refuses_leaky_cv() -> None:
    from emgdx.errors import ConfigError

    with pytest.raises(ConfigError, match="subject-wise"):
        run_demo(subjects_per_class=1, records_per_subject=1, duration_s=2.0, cv="leaky")
