"""Fine-tuning from a pretrained pipeline and layer freezing (fast, simulated, CPU)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from emgdx.errors import ConfigError
from emgdx.models import build_model, trainable_part
from emgdx.pipeline import Pipeline
from emgdx.preprocess import PreprocessConfig
from emgdx.recording import Windows
from emgdx.simulate import simulate_cohort, write_cohort
from emgdx.tasks import encode_labels
from emgdx.training import TrainConfig, fit_torch

FS = 4000.0
PRE = PreprocessConfig(target_fs_hz=FS, band_hz=(20.0, 1800.0), window_s=0.5, hop_s=0.5)
SMALL = {"n_filters": (8, 8)}


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


def _model(seed: int = 0, n_aux: int = 1) -> torch.nn.Module:
    shapes = {"x": (1, 1000), **({"aux": (n_aux,)} if n_aux else {})}
    return build_model("cnn1d", input_shapes=shapes, n_classes=3, fs_hz=FS, seed=seed, **SMALL)


def _data(n: int = 48, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 1, 1000)).astype(np.float32) * (1 + y[:, None, None])
    aux = (y[:, None] + rng.normal(scale=0.1, size=(n, 1))).astype(np.float32)
    groups = np.array([f"S{i % 6}" for i in range(n)])
    return {"x": x, "aux": aux}, y, groups


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    after = model.state_dict()
    return {
        k for k, v in before.items() if v.dtype.is_floating_point and not torch.equal(v, after[k])
    }


CFG = TrainConfig(epochs=2, batch_size=8, val_fraction=0.0, seed=1)


def test_freeze_features_trains_only_the_head_and_keeps_frozen_batch_norm() -> None:
    model = _model()
    before = _state(model)
    inputs, y, g = _data()
    result = fit_torch(model, inputs, y, g, TrainConfig(**{**CFG.to_dict(), "freeze": "features"}))
    changed = _changed(before, model)
    feature_keys = {k for k in before if k.startswith("features.")}
    # Weights and running statistics of the frozen convolution / batch-norm layers: unchanged.
    assert feature_keys and not (changed & feature_keys)
    assert any(k.startswith("features.") and "running_mean" in k for k in feature_keys)
    # The head (classifier and amplitude branch, its batch norm included) did learn.
    assert "head.classifier.1.weight" in changed and "head.aux.1.weight" in changed
    assert "head.aux.0.running_mean" in changed
    assert result.extra["frozen_parameters"] > 0
    # Frozen for that fit only.
    assert all(p.requires_grad for p in model.parameters())


def test_freeze_all_but_classifier_trains_only_the_last_layer() -> None:
    model = _model()
    before = _state(model)
    inputs, y, g = _data()
    fit_torch(model, inputs, y, g, TrainConfig(**{**CFG.to_dict(), "freeze": "all_but_classifier"}))
    assert _changed(before, model) == {"head.classifier.1.weight", "head.classifier.1.bias"}


def test_no_freeze_trains_everything_and_features_lr_scale_slows_the_features() -> None:
    inputs, y, g = _data()
    moved = {}
    for scale in (1.0, 1e-3):
        model = _model()
        before = _state(model)
        fit_torch(model, inputs, y, g, TrainConfig(**{**CFG.to_dict(), "features_lr_scale": scale}))
        if scale == 1.0:
            assert {k for k in before if k.endswith("weight")} <= _changed(before, model)
        w = "features.0.0.weight"
        moved[scale] = float((model.state_dict()[w] - before[w]).abs().max())
    assert 0 < moved[1e-3] < moved[1.0] / 20


def test_freeze_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="freeze"):
        TrainConfig(freeze="backbone")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="features_lr_scale"):
        TrainConfig(features_lr_scale=0.0)
    with pytest.raises(ConfigError, match="no 'head'"):
        trainable_part(torch.nn.Linear(2, 3), "features")


# ---- Pipeline.fit(init_from=...) --------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort() -> Windows:
    sim = simulate_cohort(6, 2, fs_hz=FS, duration_s=3.0, seed=11)
    return Pipeline(preprocess=PRE, model="random_forest").prepare(sim.cohort)


def _number(windows: Windows) -> np.ndarray:
    return windows.index["subject_id"].astype(str).str[-2:].astype(int).to_numpy()


@pytest.fixture(scope="module")
def source(cohort: Windows) -> Windows:
    """Pretraining data: subjects 1-3 of every class."""
    return cohort.select(_number(cohort) <= 3)


@pytest.fixture(scope="module")
def site(cohort: Windows) -> tuple[Windows, Windows]:
    """A "new site": subject 4 of every class labelled, subjects 5-6 to test on."""
    n = _number(cohort)
    return cohort.select(n == 4), cohort.select(n >= 5)


def _pipe(epochs: int, **train: object) -> Pipeline:
    cfg = TrainConfig(epochs=epochs, batch_size=16, val_fraction=0.0, seed=5, **train)  # type: ignore[arg-type]
    return Pipeline(preprocess=PRE, model="cnn1d", train=cfg, model_params=SMALL)


def _log_loss(pipe: Pipeline, windows: Windows) -> float:
    y, keep = encode_labels(windows.index["label"].to_list(), pipe.task)
    p = pipe.predict_windows(windows.select(keep))
    return float(-np.mean(np.log(np.clip(p[np.arange(len(p)), y[keep]], 1e-9, 1))))


@pytest.fixture(scope="module")
def pretrained(source: Windows) -> Pipeline:
    return _pipe(6).fit(source)


def test_fine_tuning_beats_training_from_scratch_on_a_tiny_site(
    pretrained: Pipeline, site: tuple[Windows, Windows]
) -> None:
    labelled, test = site
    scratch = _pipe(3).fit(labelled)
    tuned = _pipe(3, freeze="features").fit(labelled, init_from=pretrained)
    # Same few epochs on 3 subjects: the pretrained start generalises to new subjects better,
    # and better than a uniform guess (log 3).
    assert _log_loss(tuned, test) < min(_log_loss(scratch, test), math.log(3))
    assert tuned.pretrained_ is not None
    assert tuned.pretrained_["train_subjects"] == pretrained.train_subjects_
    assert set(tuned.train_subjects_).isdisjoint(pretrained.train_subjects_)
    # The pretrained pipeline itself is left as it was.
    assert pretrained.train_subjects_ != tuned.train_subjects_


def test_init_from_a_saved_folder_round_trips_the_provenance(
    pretrained: Pipeline, site: tuple[Windows, Windows], tmp_path: Path
) -> None:
    folder = pretrained.save(tmp_path / "pre")
    tuned = _pipe(1, freeze="all_but_classifier").fit(site[0], init_from=folder)
    loaded = Pipeline.load(tuned.save(tmp_path / "tuned"))
    assert loaded.pretrained_ == tuned.pretrained_
    assert loaded.pretrained_ is not None
    assert loaded.pretrained_["weights_sha256"] == pretrained.weights_sha256()
    assert loaded.pretrained_["freeze"] == "all_but_classifier"
    # Only the last layer moved away from the pretrained weights.
    diff = {
        k
        for k, v in pretrained.model_.module.state_dict().items()
        if v.dtype.is_floating_point and not torch.equal(v, loaded.model_.module.state_dict()[k])
    }
    assert diff == {"head.classifier.1.weight", "head.classifier.1.bias"}


def test_a_different_architecture_or_task_is_refused(
    pretrained: Pipeline, site: tuple[Windows, Windows]
) -> None:
    cfg = TrainConfig(epochs=1, val_fraction=0.0)
    wider = Pipeline(preprocess=PRE, model="cnn1d", train=cfg, model_params={"n_filters": (8, 16)})
    with pytest.raises(ConfigError, match="different model"):
        wider.fit(site[0], init_from=pretrained)
    binary = Pipeline(
        preprocess=PRE, model="cnn1d", task="als_vs_rest", train=cfg, model_params=SMALL
    )
    with pytest.raises(ConfigError, match="different task"):
        binary.fit(site[0], init_from=pretrained)
    forest = Pipeline(preprocess=PRE, model="random_forest").fit(site[0])
    with pytest.raises(ConfigError, match="torch model"):
        _pipe(1).fit(site[0], init_from=forest)


def test_cli_train_fine_tunes_from_a_saved_model(pretrained: Pipeline, tmp_path: Path) -> None:
    from emgdx.cli import app

    # The CLI uses the default preprocessing: pretrain with it on a tiny simulated cohort.
    sim = simulate_cohort(1, 1, fs_hz=12000.0, duration_s=2.0, seed=3)
    data = tmp_path / "data"
    write_cohort(sim, data)
    runner = CliRunner()
    common = ["--epochs", "1", "--model", "cnn1d", "--threads", "1"]
    res = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "pre"), *common])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            *("train", str(data), "--out", str(tmp_path / "ft"), *common, "--json"),
            *("--init-from", str(tmp_path / "pre"), "--freeze", "features"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert Pipeline.load(tmp_path / "ft").pretrained_["freeze"] == "features"  # type: ignore[index]
    res = runner.invoke(
        app, ["train", str(data), "--out", str(tmp_path / "x"), "--freeze", "features"]
    )
    assert res.exit_code != 0 and "--init-from" in res.output
    res = runner.invoke(
        app,
        [
            *("train", str(data), "--out", str(tmp_path / "y"), "--model", "cnn_lstm"),
            *("--init-from", str(tmp_path / "pre")),
        ],
    )
    assert res.exit_code != 0 and "different model" in res.output
