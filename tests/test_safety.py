"""Knowing when not to answer: needle-EMG plausibility checks (emgdx.needle), the training
distribution and its out-of-distribution score (emgdx.ood), calibration (emgdx.calibration),
and how a pipeline saves, loads and uses them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emgdx.calibration import (
    expected_calibration_error,
    fit_temperature,
    reliability_table,
    temper,
)
from emgdx.errors import PipelineLoadError
from emgdx.evaluation.cv import cross_validate
from emgdx.ood import TrainingDistribution
from emgdx.pipeline import Pipeline
from emgdx.preprocess import PreprocessConfig
from emgdx.quality import NOT_INTERPRETABLE_FLAGS, assess
from emgdx.recording import Recording
from emgdx.safety_panel import DERIVED_KINDS, SYNTHETIC_KINDS, make_panel
from emgdx.simulate import simulate_cohort
from emgdx.training import TrainConfig

FS = 8000.0
PRE = PreprocessConfig(target_fs_hz=4000.0, band_hz=(20.0, 1800.0), window_s=0.5, hop_s=0.25)


# ---- calibration ---------------------------------------------------------------------------


def _overconfident(n_records: int, seed: int, reported: float) -> tuple[np.ndarray, ...]:
    """Records right 70 % of the time, each window claiming ``reported`` for its top class."""
    rng = np.random.default_rng(seed)
    y_rec = rng.integers(0, 3, n_records)
    right = rng.random(n_records) < 0.7
    top = np.where(right, y_rec, (y_rec + rng.integers(1, 3, n_records)) % 3)
    rest = (1 - reported) / 2
    probs, y, rec = [], [], []
    for r in range(n_records):
        p = np.full((4, 3), rest)
        p[:, top[r]] = reported
        probs.append(p)
        y += [y_rec[r]] * 4
        rec += [f"R{r}"] * 4
    return np.vstack(probs), np.array(y), np.array(rec)


def test_temperature_softens_overconfident_and_sharpens_underconfident_models() -> None:
    probs, y, rec = _overconfident(300, 0, reported=0.99)
    t = fit_temperature(probs, y, rec)
    assert t > 2
    calibrated = temper(probs, t)
    assert np.allclose(calibrated.sum(axis=1), 1)
    assert calibrated.max(axis=1).mean() == pytest.approx(0.7, abs=0.05)  # its real accuracy
    before = expected_calibration_error(probs, y)
    after = expected_calibration_error(calibrated, y)
    assert before > 0.25 and after < 0.05
    timid, y2, rec2 = _overconfident(300, 1, reported=0.4)
    assert fit_temperature(timid, y2, rec2) < 1


def test_reliability_table_counts_every_record_once() -> None:
    probs, y, _ = _overconfident(50, 2, reported=0.8)
    table = reliability_table(probs, y)
    assert table["n"].sum() == len(probs)
    assert (
        (table["confidence"] >= table["bin_low"]) & (table["confidence"] <= table["bin_high"])
    ).all()
    # a perfectly calibrated model: confidence 0.5, right half the time
    half = np.tile([[0.5, 0.3, 0.2]], (1000, 1))
    y_half = np.where(np.arange(1000) % 2 == 0, 0, 1)
    assert expected_calibration_error(half, y_half) == pytest.approx(0.0, abs=1e-9)


# ---- a fitted pipeline with its calibration and training distribution ------------------------


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pipeline, Path]:
    sim = simulate_cohort(3, 2, fs_hz=FS, duration_s=4.0, seed=4)
    pipe = Pipeline(
        preprocess=PRE,
        model="random_forest",
        model_params={"n_estimators": 30},
        train=TrainConfig(seed=0),
    ).fit(sim.cohort)
    return pipe, pipe.save(tmp_path_factory.mktemp("safety") / "model")


def test_fit_stores_a_subject_wise_calibration_and_training_distribution(
    fitted: tuple[Pipeline, Path],
) -> None:
    pipe, folder = fitted
    cal, dist = pipe.calibration_, pipe.distribution_
    assert cal is not None and cal["temperature"] > 0 and "inner folds" in cal["fitted_on"]
    assert dist is not None and dist.threshold > 0
    assert dist.held_out["n_subjects"] == 9 and dist.held_out["folds"] == 5
    doc = json.loads((folder / "pipeline.json").read_text())
    assert doc["calibration"]["temperature"] == cal["temperature"]
    loaded = Pipeline.load(folder)
    assert loaded.calibration_ == cal and loaded.distribution_ is not None
    assert loaded.distribution_.threshold == dist.threshold
    # the same windows get the same scores and probabilities after the round trip
    rec = simulate_cohort(1, 1, fs_hz=FS, duration_s=4.0, seed=9).cohort.recordings
    windows = pipe.prepare(rec)
    assert loaded.ood_scores(windows) == pytest.approx(pipe.ood_scores(windows))
    np.testing.assert_allclose(loaded.predict_windows(windows), pipe.predict_windows(windows))
    raw = pipe.predict_windows(windows, calibrated=False)
    np.testing.assert_allclose(pipe.calibrate_probs(raw), pipe.predict_windows(windows))


def test_a_tampered_calibration_or_distribution_is_refused(
    fitted: tuple[Pipeline, Path], tmp_path: Path
) -> None:
    _, folder = fitted
    for key, value in (("calibration", {"temperature": -1}), ("training_distribution", {"x": 1})):
        copy = tmp_path / key
        copy.mkdir()
        for f in folder.iterdir():
            (copy / f.name).write_bytes(f.read_bytes())
        doc = json.loads((copy / "pipeline.json").read_text())
        doc[key] = value
        (copy / "pipeline.json").write_text(json.dumps(doc))
        with pytest.raises(PipelineLoadError, match=r"pipeline\.json"):
            Pipeline.load(copy)


def test_training_like_records_score_low_and_alien_ones_are_refused(
    fitted: tuple[Pipeline, Path],
) -> None:
    pipe, _ = fitted
    dist = pipe.distribution_
    assert isinstance(dist, TrainingDistribution)
    new = simulate_cohort(1, 2, fs_hz=FS, duration_s=4.0, seed=21).cohort.recordings
    scores = pipe.ood_scores(pipe.prepare(new))
    assert all(dist.verdict(s) != "alien" for s in scores.values())
    # Real-looking EMG scaled 30 times: QC's amplitude check may pass it, the OOD score not.
    loud = [r.with_signal(r.signal * 30) for r in new[:1]]
    dx = pipe.predict(loud)
    (row,) = dx.records.to_dict(orient="records")
    assert row["ood_score"] > dist.threshold
    assert row["outcome"] == "not interpretable" or row["warnings"]


def test_predict_says_noise_is_not_interpretable(fitted: tuple[Pipeline, Path]) -> None:
    pipe, _ = fitted
    noise = np.random.default_rng(0).normal(0, 30, int(4 * FS)).astype(np.float32)
    dx = pipe.predict([Recording(noise, FS, "NOISE", "P1")])
    verdict = dx.record("NOISE")
    assert verdict.outcome == "not interpretable"
    assert verdict.reasons[0].startswith("no motor-unit activity")
    assert dx.visit.outcome == "not interpretable"


def test_cross_validation_reports_calibration_and_ood_per_fold() -> None:
    sim = simulate_cohort(3, 2, fs_hz=FS, duration_s=4.0, seed=5)

    def make() -> Pipeline:
        return Pipeline(preprocess=PRE, model="random_forest", model_params={"n_estimators": 20})

    result = cross_validate(make, sim.cohort, cv="kfold", k=3, preprocess=PRE, n_boot=20)
    cal = result.calibration["all"]
    assert cal["n_records"] == 18
    assert 0 <= cal["ece_after"] <= 1 and 0 <= cal["ece_before"] <= 1
    assert all(f["temperature"] > 0 for f in result.folds)
    counts = result.ood["counts"]["all"]
    assert sum(counts.values()) == 18
    doc = result.to_dict()
    assert doc["calibration"]["all"]["reliability_after"]
    from emgdx.evaluation.report import render_html

    page = render_html(doc)
    assert "Calibration (record level)" in page and 'alt="reliability"' in page
    assert "Out-of-distribution verdicts" in page
    # the simulated records are all low-contraction: that subset is said once, not repeated
    assert "Every evaluated record is in this subset" in page
    assert page.count("<h4>Per class</h4>") == 1
    assert "<h2>Quality control</h2>" in page and doc["quality"]["n_records"] == 18


# ---- needle-EMG checks on real data and on the generated panel -------------------------------


def _refused(rec: Recording) -> bool:
    return bool(assess(rec).not_interpretable)


@pytest.mark.realdata
def test_real_needle_emg_is_rarely_refused_and_non_emg_always(n2001: Path, algiers: Path) -> None:
    from emgdx.io import read_cohort

    n2001_recs = read_cohort(n2001).recordings
    real = [*n2001_recs, *read_cohort(algiers).recordings]
    refused = [r.record_id for r in real if _refused(r)]
    # N2001A06BB08 is empty (data README); one Algiers record is mostly mains-hum harmonics.
    assert len(refused) / len(real) <= 0.01, refused
    panel = make_panel(n2001_recs, per_kind=4, seed=3)
    by_kind = pd.Series({rid: kind for kind, rid in ((k, r.record_id) for k, r in panel)})
    flags = {r.record_id: assess(r).flags for _, r in panel}
    not_judged = {*NOT_INTERPRETABLE_FLAGS, "empty", "too_short"}
    refused_kind = pd.Series({rid: bool(set(f) & not_judged) for rid, f in flags.items()})
    share = refused_kind.groupby(by_kind).mean()
    for kind in (
        "white_noise",
        "pink_noise",
        "brown_noise",
        "sine_mixture",
        "ecg_like",
        "surface_emg_like",
        "phase_scrambled",
        "scaled_x0.01",
    ):
        assert share[kind] == 1.0, (kind, share[kind])
    assert set(share.index) == set(SYNTHETIC_KINDS) | set(DERIVED_KINDS)
    ecg = [f for rid, f in flags.items() if by_kind[rid] == "ecg_like"]
    assert all("ecg_dominated" in f for f in ecg)
    tones = [f for rid, f in flags.items() if by_kind[rid] == "sine_mixture"]
    assert all("tonal" in f for f in tones)
    assert math.isfinite(assess(real[0]).metrics["local_kurtosis"])
