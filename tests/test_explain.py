"""Attributions: every method's contract, stitching, and faithfulness on simulated data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emgdx import explain
from emgdx.errors import ConfigError
from emgdx.explain import figures
from emgdx.pipeline import Pipeline
from emgdx.preprocess import PreprocessConfig
from emgdx.recording import Windows
from emgdx.simulate import SimulatedCohort, simulate_cohort
from emgdx.training import TrainConfig

FS = 4000.0
PRE = PreprocessConfig(target_fs_hz=FS, band_hz=(20.0, 1800.0), window_s=0.5, hop_s=0.25)
HELD_OUT = ("SIM-H04", "SIM-N04", "SIM-M04")


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def sim() -> SimulatedCohort:
    return simulate_cohort(4, 2, fs_hz=FS, duration_s=4.0, seed=7)


@pytest.fixture(scope="module")
def split(sim: SimulatedCohort) -> tuple[Windows, Windows]:
    windows = Pipeline(preprocess=PRE, model="cnn1d").prepare(sim.cohort)
    test = windows.index["subject_id"].isin(HELD_OUT).to_numpy()
    return windows.select(~test), windows.select(test)


@pytest.fixture(scope="module")
def cnn(split: tuple[Windows, Windows]) -> Pipeline:
    train = TrainConfig(epochs=10, batch_size=32, seed=0)
    return Pipeline(preprocess=PRE, model="cnn1d", train=train).fit(split[0])


@pytest.fixture(scope="module")
def cnn_stft(split: tuple[Windows, Windows]) -> Pipeline:
    train = TrainConfig(epochs=2, batch_size=32, seed=0)
    return Pipeline(preprocess=PRE, model="cnn2d_stft", train=train).fit(split[0])


def _few(windows: Windows, n: int = 9) -> Windows:
    return windows.select(np.linspace(0, len(windows) - 1, n).round().astype(np.int64))


@pytest.mark.parametrize("method", sorted(explain.METHODS))
def test_every_method_on_waveform_and_image_models(
    method: str, cnn: Pipeline, cnn_stft: Pipeline, split: tuple[Windows, Windows]
) -> None:
    windows = _few(split[1])
    for pipe in (cnn, cnn_stft):
        attr = explain.attribute_windows(pipe, windows, method)  # type: ignore[arg-type]
        inputs = pipe.model_inputs(windows)["x"]
        assert attr.values.shape == inputs.shape
        assert attr.time_profile.shape == (len(windows), windows.n_samples)
        assert np.isfinite(attr.values).all() and np.abs(attr.values).sum() > 0
        assert np.array_equal(attr.target, attr.probs.argmax(axis=1))
        if method in ("saliency", "gradcam"):
            assert (attr.values >= 0).all()  # |gradient| and ReLU'd Grad-CAM
        if method in ("saliency", "integrated_gradients"):
            assert attr.aux_values is not None and attr.aux_values.shape == (len(windows), 1)
        if pipe is cnn_stft:
            assert attr.image_freqs_hz is not None and attr.image_times_s is not None
            assert attr.image_freqs_hz.size == inputs.shape[2]


def test_integrated_gradients_are_complete(cnn: Pipeline, split: tuple[Windows, Windows]) -> None:
    """IG's attributions over x and aux add up to logit(input) - logit(baseline)."""
    from emgdx.explain.attribution import _aux_baseline

    windows = _few(split[1], 4)
    attr = explain.attribute_windows(cnn, windows, "integrated_gradients", n_steps=128)
    inputs = cnn.model_inputs(windows)
    x, aux = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["aux"])
    model = cnn.model_.module.eval()
    with torch.no_grad():
        rows = torch.arange(len(windows))
        target = torch.from_numpy(attr.target)
        gap = (
            model(x, aux)[rows, target]
            - model(torch.zeros_like(x), _aux_baseline(model, aux))[rows, target]
        ).numpy()
    assert attr.aux_values is not None
    total = attr.values.reshape(len(windows), -1).sum(axis=1) + attr.aux_values.sum(axis=1)
    assert np.allclose(total, gap, rtol=0.05, atol=0.05)


def test_record_attribution_stitches_overlapping_windows(
    cnn: Pipeline, sim: SimulatedCohort
) -> None:
    rec = next(r for r in sim.cohort.recordings if r.subject_id == "SIM-N04")
    expl = explain.attribute_record(cnn, rec, "integrated_gradients", target="neurogenic")
    windows = cnn.prepare(rec)
    assert expl.target_name == "neurogenic" and (expl.windows.target == 1).all()
    assert np.isclose(sum(expl.record_probs.values()), 1.0)
    hop = round(PRE.hop_s * FS)
    # A sample covered by windows 0 and 1 gets the mean of their two profiles.
    k = hop + 10
    expected = 0.5 * (expl.windows.time_profile[0, k] + expl.windows.time_profile[1, k - hop])
    assert np.isclose(expl.attribution[k], expected)
    assert np.isclose(expl.signal[k], windows.data[1, k - hop])
    assert np.allclose(np.diff(expl.time_s), 1 / FS)
    top = explain.top_segments(expl, k=3, segment_ms=100)
    assert len(top) == 3 and top["share"].is_monotonic_decreasing
    starts = np.sort(top["start_s"].to_numpy())
    assert (np.diff(starts) >= 0.1 - 1e-9).all()  # segments do not overlap


def test_signature_share_beats_chance_on_simulated_records(
    cnn: Pipeline, sim: SimulatedCohort, split: tuple[Windows, Windows]
) -> None:
    """Where the simulator put the disease signature, the attributions concentrate."""
    masks = {rid: (truth.signature_mask(), truth.fs_hz) for rid, truth in sim.truth.items()}
    test = split[1]
    for label in ("neurogenic", "myopathy"):
        windows = test.select(test.index["label"].eq(label).to_numpy())
        mask = explain.window_masks(windows, masks)
        assert mask.any()
        for method in ("integrated_gradients", "occlusion"):
            attr = explain.attribute_windows(cnn, windows, method, target=label)  # type: ignore[arg-type]
            share = explain.signature_share(attr, mask)
            assert len(share) >= 10
            assert share["share"].mean() > 1.2 * share["chance"].mean(), (label, method)


def test_deletion_and_insertion_beat_a_random_order(
    cnn: Pipeline, split: tuple[Windows, Windows]
) -> None:
    windows = _few(split[1], 24)
    attr = explain.attribute_windows(cnn, windows, "integrated_gradients")
    curves = explain.deletion_insertion(cnn, windows, attr, steps=8, n_random=2)
    auc = curves["auc"]
    assert auc["deletion_attribution"] < auc["deletion_random"]
    assert auc["insertion_attribution"] > auc["insertion_random"]
    # Both orders start and end at the same inputs.
    for kind in ("deletion", "insertion"):
        a, r = curves[kind]["attribution"], curves[kind]["random"]
        assert np.isclose(a[0], r[0]) and np.isclose(a[-1], r[-1])
    fig = figures.figure_deletion_insertion({"integrated_gradients": curves})
    assert len(fig.axes) == 2


def test_figures_draw_in_seconds_and_microvolts(
    cnn: Pipeline, cnn_stft: Pipeline, sim: SimulatedCohort
) -> None:
    rec = next(r for r in sim.cohort.recordings if r.subject_id == "SIM-M04")
    expl = explain.attribute_record(cnn, rec, "occlusion")
    fig = figures.figure_record_evidence(expl)
    assert fig.axes[0].get_ylabel() == "amplitude (µV)"
    assert fig.axes[1].get_xlabel() == "time (s)"
    assert fig.axes[0].get_xlim()[1] == pytest.approx(expl.time_s[-1])
    assert len(figures.figure_top_segments(expl).axes) == 3
    windows = cnn_stft.prepare(rec)
    ig = explain.attribute_windows(cnn_stft, windows, "integrated_gradients")
    cam = explain.attribute_windows(cnn_stft, windows, "gradcam", target=ig.target)
    image_fig = figures.figure_image_evidence(ig, 1, heat=cam)
    assert image_fig.axes[0].get_ylabel() == "frequency (Hz)"
    with pytest.raises(ConfigError, match="spectrogram or scalogram"):
        figures.figure_image_evidence(expl.windows, 0)


def test_feature_importance_of_classical_models(split: tuple[Windows, Windows]) -> None:
    train, test = split
    rf = Pipeline(preprocess=PRE, model="random_forest").fit(train)
    own = explain.feature_importance(rf, method="model")
    assert set(own["feature"]) >= {"rms_uv", "spike_p2p_uv", "median_freq_hz"}
    assert np.isclose(own["importance"].sum(), 1.0)
    perm = explain.feature_importance(rf, test, method="permutation", n_repeats=2)
    assert perm["importance"].is_monotonic_decreasing and len(perm) == len(own)
    assert perm["importance"].iloc[0] > 0  # shuffling the top feature hurts on held-out subjects
    with pytest.raises(ConfigError, match="classical model"):
        explain.attribute_windows(rf, test, "saliency")


def test_bad_requests_are_refused(cnn: Pipeline, split: tuple[Windows, Windows]) -> None:
    windows = _few(split[1], 3)
    with pytest.raises(ConfigError, match="unknown attribution method"):
        explain.attribute_windows(cnn, windows, "lime")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown target class"):
        explain.attribute_windows(cnn, windows, "saliency", target="als")
    with pytest.raises(ConfigError, match="fitted"):
        explain.attribute_windows(Pipeline(preprocess=PRE), windows, "saliency")
    with pytest.raises(ConfigError, match="feature_importance is for classical"):
        explain.feature_importance(cnn)
