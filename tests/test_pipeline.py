"""Pipeline: fit / predict / save / load on simulated cohorts, CV integration, N2001 smoke test."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file

from emgdx.errors import ConfigError, SignalError
from emgdx.evaluation.cv import cross_validate, windows_hash
from emgdx.models import MODELS
from emgdx.pipeline import Pipeline, PipelineLoadError
from emgdx.preprocess import PreprocessConfig
from emgdx.recording import Cohort, Recording, Windows
from emgdx.simulate import SimulatedCohort, simulate_cohort
from emgdx.tasks import encode_labels
from emgdx.training import TrainConfig

FS = 4000.0
PRE = PreprocessConfig(target_fs_hz=FS, band_hz=(20.0, 1800.0), window_s=0.5, hop_s=0.5)
FAST = TrainConfig(epochs=2, batch_size=16, seed=3, augment=("polarity", "scale", "noise"))


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def sim() -> SimulatedCohort:
    return simulate_cohort(3, 2, fs_hz=FS, duration_s=3.0, seed=1)


@pytest.fixture(scope="module")
def windows(sim: SimulatedCohort) -> Windows:
    return Pipeline(preprocess=PRE, model="random_forest").prepare(sim.cohort)


def _cnn() -> Pipeline:
    return Pipeline(preprocess=PRE, model="cnn1d", train=FAST, model_params={"n_filters": (8, 8)})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_runs_through_the_pipeline(
    name: str, windows: Windows, tmp_path: Path
) -> None:
    small = windows.select(np.arange(0, len(windows), 2))
    params = {"max_iter": 20} if name == "gradient_boosting" else {}
    train = TrainConfig(epochs=1, batch_size=16, augment=("shift", "mask"))
    pipe = Pipeline(preprocess=PRE, model=name, train=train, model_params=params).fit(small)
    probs = pipe.predict_windows(small)
    assert probs.shape == (len(small), 3)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    loaded = Pipeline.load(pipe.save(tmp_path / name))
    assert np.allclose(loaded.predict_windows(small), probs, atol=1e-6)


def test_torch_pipeline_fits_predicts_and_round_trips(
    sim: SimulatedCohort, windows: Windows, tmp_path: Path
) -> None:
    pipe = _cnn().fit(windows)
    probs = pipe.predict_windows(windows)
    assert probs.shape == (len(windows), 3)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert pipe.train_result_ is not None and len(pipe.train_result_.history) == 2
    # Same config, same seed: a second pipeline reproduces the first one exactly (CPU).
    assert np.array_equal(_cnn().fit(windows).predict_windows(windows), probs)

    table = pipe.predict(sim.cohort).records
    assert list(table["record_id"]) == list(sim.cohort.manifest["record_id"])
    per_record = windows.index.groupby("record_id").size()
    counts = table.set_index("record_id")["n_windows"]
    assert counts.sort_index().equals(per_record.sort_index())
    # Record scores are the mean of the window probabilities (aggregation="mean").
    first = table["record_id"].iloc[0]
    mine = probs[windows.index["record_id"].to_numpy() == first].mean(axis=0)
    assert np.allclose(table.loc[0, ["p_healthy", "p_neurogenic", "p_myopathy"]], mine)
    assert {"qc_flags", "qc_ok", "usable_fraction", "predicted", "confidence"} <= set(table)

    folder = pipe.save(tmp_path / "model")
    doc = json.loads((folder / "pipeline.json").read_text())
    assert doc["class_names"] == ["healthy", "neurogenic", "myopathy"]
    assert doc["model"]["name"] == "cnn1d" and doc["train"]["epochs"] == 2
    assert doc["data"]["windows_sha256"] == windows_hash(windows)
    assert doc["fs_hz"] == FS and doc["input_shapes"]["x"] == [1, windows.n_samples]
    assert "torch" in doc["versions"]
    loaded = Pipeline.load(folder)
    assert np.array_equal(loaded.predict_windows(windows), probs)
    pd.testing.assert_frame_equal(loaded.predict(sim.cohort).records, table)


def test_classical_pipeline_refits_on_load_and_checks_itself(
    windows: Windows, tmp_path: Path
) -> None:
    pipe = Pipeline(preprocess=PRE, model="random_forest", model_params={"n_estimators": 50})
    probs = pipe.fit(windows).predict_windows(windows)
    folder = pipe.save(tmp_path / "rf")
    stored = load_file(str(folder / "model.safetensors"))
    assert set(stored) == {"train_x", "train_y", "probe_index", "probe_proba"}
    assert np.array_equal(Pipeline.load(folder).predict_windows(windows), probs)

    # Another seed refits a different forest: the stored probe probabilities catch it.
    doc = json.loads((folder / "pipeline.json").read_text())
    doc["train"]["seed"] = 99
    (folder / "pipeline.json").write_text(json.dumps(doc))
    with pytest.raises(PipelineLoadError, match="does not reproduce"):
        Pipeline.load(folder)


def test_tampered_or_missing_files_are_refused(windows: Windows, tmp_path: Path) -> None:
    pipe = Pipeline(preprocess=PRE, model="random_forest", model_params={"n_estimators": 10})
    folder = pipe.fit(windows).save(tmp_path / "p")
    with pytest.raises(ConfigError, match="already exists"):
        pipe.save(folder)
    pipe.save(folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "pipeline.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["p"]  # no temporary folders left behind
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(PipelineLoadError, match="SHA-256"):
        Pipeline.load(folder)
    with pytest.raises(PipelineLoadError, match="not a saved pipeline"):
        Pipeline.load(tmp_path / "nothing")


def test_fitted_normalisation_uses_training_windows_only(windows: Windows, tmp_path: Path) -> None:
    pre = PreprocessConfig.from_dict(
        {**PRE.to_dict(), "normalise": "zscore", "normalise_scope": "fitted"}
    )
    train = windows.select(windows.index["subject_id"].str.endswith(("1", "2")).to_numpy())
    pipe = Pipeline(preprocess=pre, model="random_forest", model_params={"n_estimators": 10}).fit(
        train
    )
    norm = pipe.frontend.normaliser
    assert norm is not None
    assert norm.center == pytest.approx(float(train.data.mean()), rel=1e-4)
    assert norm.scale == pytest.approx(float(train.data.std()), rel=1e-4)
    assert norm.center != pytest.approx(float(windows.data.mean()), rel=1e-4)
    loaded = Pipeline.load(pipe.save(tmp_path / "norm"))
    assert loaded.frontend.normaliser is not None
    assert loaded.frontend.normaliser.to_dict() == norm.to_dict()


def test_binary_task_drops_myopathy_and_gives_two_columns(windows: Windows) -> None:
    pipe = Pipeline(
        preprocess=PRE,
        model="random_forest",
        task="als_vs_healthy",
        model_params={"n_estimators": 10},
    ).fit(windows)
    assert pipe.class_names == ("healthy", "neurogenic")
    _, keep = encode_labels(windows.index["label"].to_list(), "als_vs_healthy")
    assert pipe.data_hash_ == windows_hash(windows.select(keep))
    assert pipe.predict_windows(windows).shape == (len(windows), 2)


def test_record_without_windows_gets_an_empty_row(sim: SimulatedCohort) -> None:
    pipe = Pipeline(preprocess=PRE, model="random_forest", model_params={"n_estimators": 10})
    pipe.fit(sim.cohort)
    rec = sim.cohort.recordings[0]
    short = Recording(
        rec.signal[: int(0.3 * rec.fs_hz)], rec.fs_hz, "SHORT", "SX", "healthy"
    )  # shorter than one window
    one = pipe.predict(rec).records  # a single recording is a cohort of one
    assert list(one["record_id"]) == [rec.record_id]
    table = pipe.predict(Cohort.from_recordings([short, rec])).records
    assert list(table["record_id"]) == ["SHORT", rec.record_id]
    assert table.loc[0, "n_windows"] == 0 and np.isnan(table.loc[0, "p_healthy"])
    assert table.loc[1, "p_healthy"] == one.loc[0, "p_healthy"]
    assert table.loc[1, "n_windows"] > 0 and table.loc[1, "predicted"] in (
        "healthy",
        "neurogenic",
        "myopathy",
    )


def test_fitted_pipeline_warns_or_refuses_records_sampled_too_slowly(sim: SimulatedCohort) -> None:
    """A 1.8 kHz band: a 3 kHz record lacks its top (warned, still judged); a 1.5 kHz record
    lacks more than half of it (refused, naming record and rates)."""
    from scipy.signal import resample_poly

    from emgdx.errors import SamplingRateError
    from emgdx.pipeline import ReducedBandWarning

    pipe = Pipeline(preprocess=PRE, model="random_forest", model_params={"n_estimators": 10})
    pipe.fit(sim.cohort)
    assert pipe.min_fs_hz() == pytest.approx(2 * 1800 / 0.95)
    rec = sim.cohort.recordings[0]
    slow = Recording(resample_poly(rec.signal, 3, 4).astype(np.float32), 3000.0, "SLOW", "S9")
    with pytest.warns(ReducedBandWarning, match=r"SLOW: sampled at 3000 Hz.*above 1425 Hz"):
        assert pipe.predict(slow).records.loc[0, "n_windows"] > 0
    slower = Recording(resample_poly(rec.signal, 3, 8).astype(np.float32), 1500.0, "SLOWER", "S9")
    with pytest.raises(SamplingRateError, match=r"SLOWER: sampled at 1500 Hz.*at least 1895 Hz"):
        pipe.prepare(slower)
    # predict judges the others and gives the refused record its reason
    table = pipe.predict([slower, rec]).records.set_index("record_id")
    assert table.loc["SLOWER", "n_windows"] == 0
    assert (
        "at least 1895 Hz" in table.loc["SLOWER", "note"] and table.loc[rec.record_id, "n_windows"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pipe.predict(rec).records.loc[0, "note"] == ""  # the trained rate passes silently


def test_misuse_is_refused(windows: Windows) -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        Pipeline(model="transformer")
    with pytest.raises(ConfigError, match="takes 'raw' input"):
        Pipeline(model="cnn1d", representation="features")
    with pytest.raises(ConfigError, match="parameter"):
        Pipeline(model="random_forest", model_params={"n_trees": 5})
    with pytest.raises(ConfigError, match="seed"):
        Pipeline(model="random_forest", model_params={"seed": 5})
    with pytest.raises(ConfigError, match="unknown task"):
        Pipeline(model="svm", task="4class")
    with pytest.raises(ConfigError, match="not fitted"):
        Pipeline(preprocess=PRE, model="svm").predict_windows(windows)
    pipe = Pipeline(preprocess=PRE, model="random_forest", model_params={"n_estimators": 5})
    pipe.fit(windows)
    other_rate = Windows(windows.data[:, ::2], FS / 2, windows.index)
    with pytest.raises(SignalError, match="Hz"):
        pipe.predict_windows(other_rate)
    unlabelled = Windows(windows.data, FS, windows.index.assign(label=None))
    with pytest.raises(SignalError, match="no windows with a label"):
        Pipeline(preprocess=PRE, model="svm").fit(unlabelled)


def test_config_round_trip_builds_the_same_pipeline() -> None:
    pipe = Pipeline(
        preprocess=PRE,
        representation={"name": "raw", "normalise": "robust", "clip": 20.0},
        model={"name": "cnn1d", "dropout": 0.3, "n_filters": (8, 8, 8)},
        task="als_vs_rest",
        train=TrainConfig(epochs=3, augment=("polarity",)),
        aggregation="vote",
    )
    config = pipe.to_config()
    again = Pipeline.from_config(json.loads(json.dumps(config)))
    assert again.to_config() == config
    assert again.representation == pipe.representation
    assert config["representation"]["normalise"] == "robust"
    assert config["representation"]["aux"] == ["log_rms"]  # defaults are recorded too
    with pytest.raises(ConfigError, match="JSON"):
        Pipeline(model="cnn1d", model_params={"dropout": object()})


def test_cross_validation_with_the_pipeline_is_subject_wise(windows: Windows) -> None:
    def make() -> Pipeline:
        return Pipeline(preprocess=PRE, model="random_forest", model_params={"n_estimators": 50})

    result = cross_validate(make, windows, cv="loso", n_boot=20)
    folds = result.index.groupby("fold")["subject_id"].nunique()
    assert (folds == 1).all() and len(folds) == windows.index["subject_id"].nunique()
    # The simulated classes differ in MUAP size and shape: a feature forest beats chance (1/3).
    record = result.evaluation["all"]["mean"]["record"]["metrics"]
    assert record["balanced_accuracy"] > 0.6


def test_torch_pipeline_runs_under_cross_validation(windows: Windows) -> None:
    # Three folds, two epochs: checks the wiring (fresh model per fold, probabilities valid).
    result = cross_validate(_cnn, windows, cv="kfold", k=3, n_boot=10)
    assert result.probs.shape == (len(windows), 3)
    assert np.allclose(result.probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.realdata
def test_n2001_subset_fit_and_predict_with_faulty_records(n2001: Path) -> None:
    from emgdx.io import read_recording

    def records(prefix: str, count: int) -> list[Recording]:
        heads = sorted(n2001.glob(f"N2001{prefix}BB*.hea"))[:count]
        return [read_recording(h) for h in heads]

    train = Cohort.from_recordings(
        [r for p in ("A01", "A03", "C01", "C02", "M03", "M04") for r in records(p, 2)]
    )
    pipe = Pipeline(model="random_forest", model_params={"n_estimators": 50}).fit(train)
    # A08 records end in garbage; A06BB08 is essentially empty (data README).
    test = Cohort.from_recordings([*records("A08", 3), read_recording(n2001 / "N2001A06BB08.hea")])
    table = pipe.predict(test).records.set_index("record_id")
    assert len(table) == 4
    empty = table.loc["N2001A06BB08"]
    assert not empty["qc_ok"] and empty["n_windows"] == 0 and pd.isna(empty["predicted"])
    a08 = table.drop(index="N2001A06BB08")
    assert a08["qc_flags"].str.contains("garbage_tail").all()
    assert (a08["n_windows"] > 0).all()
    assert np.allclose(a08[["p_healthy", "p_neurogenic", "p_myopathy"]].sum(axis=1), 1.0)
