"""Tests of emgdx.diagnosis: one aggregation (window → record → subject / visit) with intervals,
QC and the model's identity, as produced by Pipeline.predict and read by the report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from emgdx.diagnosis import MIN_RECORDS_FOR_CI, Diagnosis, ModelIdentity
from emgdx.evaluation.aggregate import aggregate, bootstrap_interval
from emgdx.pipeline import Pipeline
from emgdx.preprocess import PreprocessConfig
from emgdx.simulate import simulate_cohort

NAMES = ("healthy", "neurogenic", "myopathy")
MODEL = ModelIdentity("test", "0", "0" * 64, "torch", "3class")


def test_block_bootstrap_interval() -> None:
    steady = np.tile([[0.8, 0.15, 0.05]], (20, 1))
    assert np.allclose(bootstrap_interval(steady), steady[0][:, None])
    rng = np.random.default_rng(0)
    noisy = rng.dirichlet([4, 2, 1], size=30)
    bounds = bootstrap_interval(noisy, block=2)
    mean = noisy.mean(axis=0)
    assert ((bounds[:, 0] <= mean) & (mean <= bounds[:, 1])).all()
    assert (bounds[:, 1] - bounds[:, 0] > 0.01).all()
    assert np.allclose(bootstrap_interval(noisy[:1]), noisy[0][:, None])
    # under a vote the bounds are vote shares: multiples of 1/n
    votes = bootstrap_interval(noisy, "vote")
    assert np.allclose(votes * 30, np.round(votes * 30))


def _windows(rng: np.random.Generator) -> tuple[np.ndarray, pd.DataFrame]:
    rows, probs = [], []
    for r, n in enumerate((12, 9, 5, 7)):
        p = rng.dirichlet([1 + 4 * (r % 2 == 0), 2, 1], size=n)
        probs.append(p)
        rows += [{"record_id": f"R{r}", "subject_id": "S1", "label": "healthy"}] * n
    index = pd.DataFrame(rows).assign(start_s=0.0, start_sample=0)
    return np.concatenate(probs), index


@pytest.mark.parametrize("method", ["mean", "vote"])
def test_records_subjects_and_visit_follow_the_aggregation(method: str) -> None:
    probs, index = _windows(np.random.default_rng(1))
    base = pd.DataFrame(
        {"record_id": ["R0", "R1", "R2", "R3", "EMPTY"], "subject_id": "S1", "label": "healthy"}
    )
    dx = Diagnosis.from_windows(
        probs,
        index,
        class_names=NAMES,
        task="3class",
        aggregation=method,
        model=MODEL,
        block=2,
        base=base,
        problems={"EMPTY": "EMPTY: too short"},
    )
    table = aggregate(probs, index, level="record", method=method).set_index("record_id")
    records = dx.records.set_index("record_id")
    cols = [f"p_{c}" for c in NAMES]
    np.testing.assert_allclose(records.loc[table.index, cols], table[cols])
    assert records.loc["EMPTY", "n_windows"] == 0 and np.isnan(records.loc["EMPTY", cols]).all()
    assert records.loc["EMPTY", "note"] == "EMPTY: too short"
    for rid in table.index:
        verdict = dx.record(rid)
        for c in NAMES:
            low, high = verdict.interval[c]
            assert low - 1e-9 <= verdict.probs[c] <= high + 1e-9
        if method == "vote":  # vote shares, not mean probabilities
            n = verdict.n_windows
            shares = np.array([verdict.probs[c] for c in NAMES]) * n
            assert np.allclose(shares, np.round(shares), atol=1e-6)
    visit = dx.visit
    assert visit.n_records == 4 and visit.n_windows == len(probs)
    expected = aggregate(probs, index, level="subject", method=method).iloc[0]
    assert [visit.probs[c] for c in NAMES] == pytest.approx([expected[c] for c in cols], abs=1e-6)
    assert all(not math.isnan(visit.interval[c][0]) for c in NAMES)  # 4 >= MIN_RECORDS_FOR_CI
    assert dx.subject("S1").probs == visit.probs


def test_few_records_have_no_visit_interval_and_one_record_is_the_visit() -> None:
    probs, index = _windows(np.random.default_rng(2))
    keep = index["record_id"].isin(["R0", "R1"]).to_numpy()
    two = Diagnosis.from_windows(
        probs[keep], index[keep], class_names=NAMES, task="3class", aggregation="mean", model=MODEL
    )
    assert 2 < MIN_RECORDS_FOR_CI and all(math.isnan(b[0]) for b in two.visit.interval.values())
    one = index["record_id"].eq("R2").to_numpy()
    single = Diagnosis.from_windows(
        probs[one], index[one], class_names=NAMES, task="3class", aggregation="mean", model=MODEL
    )
    assert single.visit == single.record("R2")


@pytest.fixture(scope="module")
def voting_forest() -> tuple[Pipeline, list]:
    pre = PreprocessConfig(target_fs_hz=4000.0, band_hz=(20.0, 1800.0), window_s=0.5, hop_s=0.25)
    sim = simulate_cohort(2, 2, fs_hz=8000.0, duration_s=4.0, seed=3)
    pipe = Pipeline(
        preprocess=pre, model="random_forest", model_params={"n_estimators": 20}, aggregation="vote"
    )
    test = simulate_cohort(1, 2, fs_hz=8000.0, duration_s=4.0, seed=9).cohort.recordings
    return pipe.fit(sim.cohort), list(test)


def test_predict_gives_a_diagnosis_with_the_models_identity(voting_forest) -> None:
    pipe, test = voting_forest
    dx = pipe.predict(test)
    assert isinstance(dx, Diagnosis) and dx.aggregation == "vote"
    assert dx.model.name == "random_forest" and dx.model.backend == "sklearn"
    assert dx.model.weights_sha256 == pipe.weights_sha256() and len(dx.model.weights_sha256) == 64
    assert {"qc_flags", "usable_fraction", "low_healthy", "high_healthy", "agreement"} <= set(
        dx.records.columns
    )
    assert dx.to_dict()["visit"]["n_records"] == len(test)


def test_report_honours_the_vote(voting_forest) -> None:
    from emgdx.report import build_report

    pipe, test = voting_forest
    report = build_report(pipe, test, explain_method=None, n_figures=0)
    dx = report.diagnosis
    for section in report.records:
        verdict = dx.record(section.record_id)
        assert section.probs == verdict.probs and section.intervals == verdict.interval
        windows = dx.window_probs[dx.window_index["record_id"] == section.record_id]
        mean = windows.mean(axis=0)
        votes = np.bincount(windows.argmax(axis=1), minlength=3) / len(windows)
        got = np.array([section.probs[c] for c in pipe.class_names])
        np.testing.assert_allclose(got, votes, atol=1e-6)
        if not np.allclose(votes, mean, atol=1e-3):
            assert not np.allclose(got, mean, atol=1e-3)  # not the mean probability
    assert report.visit_probs == dx.visit.probs
