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


def test_few_records_get_a_wide_visit_interval_and_one_record_is_the_visit() -> None:
    probs, index = _windows(np.random.default_rng(2))
    keep = index["record_id"].isin(["R0", "R1"]).to_numpy()
    two = Diagnosis.from_windows(
        probs[keep], index[keep], class_names=NAMES, task="3class", aggregation="mean", model=MODEL
    )
    assert 2 < MIN_RECORDS_FOR_CI  # no bootstrap over two records, but the Wilson interval:
    for c in NAMES:
        lo, hi = two.visit.interval[c]
        p = two.visit.probs[c]
        assert lo <= p <= hi and hi - lo > 0.4  # two records say little
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


def _agreeing(n: int, p: float = 0.97) -> np.ndarray:
    return np.tile([[p, (1 - p) / 2, (1 - p) / 2]], (n, 1))


def test_intervals_widen_with_few_windows_and_with_disagreeing_records() -> None:
    """A unit judged on little evidence never shows a point interval ("1.00 (1.00-1.00)")."""

    def record_width(n: int) -> float:
        index = pd.DataFrame({"record_id": "R", "subject_id": "S", "label": None}, index=range(n))
        dx = Diagnosis.from_windows(
            _agreeing(n),
            index,
            class_names=NAMES,
            task="3class",
            aggregation="mean",
            model=MODEL,
            block=2,
        )
        lo, hi = dx.record("R").interval["healthy"]
        return hi - lo

    widths = [record_width(n) for n in (2, 8, 40)]
    assert widths[0] > widths[1] > widths[2] > 0  # identical windows: only the count speaks

    # Records that disagree widen the visit's interval beyond that of agreeing ones.
    def visit_width(second: list[float]) -> float:
        probs = np.vstack([_agreeing(10), np.tile([second], (10, 1)), _agreeing(10)])
        index = pd.DataFrame(
            {"record_id": np.repeat(["A", "B", "C"], 10), "subject_id": "S", "label": None}
        )
        dx = Diagnosis.from_windows(
            probs, index, class_names=NAMES, task="3class", aggregation="mean", model=MODEL
        )
        lo, hi = dx.visit.interval["healthy"]
        return hi - lo

    assert visit_width([0.05, 0.9, 0.05]) > visit_width([0.97, 0.015, 0.015]) + 0.1


def test_records_qc_says_are_not_needle_emg_are_not_interpretable_with_reasons() -> None:
    probs = np.vstack([_agreeing(6), _agreeing(6, 0.9)])
    index = pd.DataFrame(
        {"record_id": np.repeat(["NOISE", "EMG"], 6), "subject_id": "S", "label": None}
    )
    qc = pd.DataFrame(
        {"record_id": ["NOISE", "EMG"], "qc_flags": ["no_mu_activity;stationary_noise", ""]}
    )
    dx = Diagnosis.from_windows(
        probs, index, class_names=NAMES, task="3class", aggregation="mean", model=MODEL, qc=qc
    )
    noise = dx.record("NOISE")
    assert noise.outcome == "not interpretable" and noise.predicted is None
    assert noise.reasons and noise.reasons[0].startswith("no motor-unit activity")
    row = dx.records.set_index("record_id").loc["NOISE"]
    assert not row["interpretable"] and math.isnan(row["p_healthy"])
    assert row["note"].startswith("not interpretable: no motor-unit activity")
    # the visit is the one interpretable record; the noise takes no part in it
    assert dx.visit.probs == dx.record("EMG").probs and dx.visit.n_records == 1
    assert dx.subjects["n_windows"].sum() == 6
    only_noise = Diagnosis.from_windows(
        probs[:6],
        index[:6],
        class_names=NAMES,
        task="3class",
        aggregation="mean",
        model=MODEL,
        qc=qc[:1],
    )
    visit = only_noise.visit
    assert visit.outcome == "not interpretable" and visit.reasons == noise.reasons
    assert only_noise.to_dict()["visit"]["outcome"] == "not interpretable"


def test_out_of_distribution_records_are_warned_or_refused() -> None:
    probs = _agreeing(9)
    index = pd.DataFrame(
        {
            "record_id": np.repeat(["TYPICAL", "UNUSUAL", "ALIEN"], 3),
            "subject_id": "S",
            "label": None,
        }
    )
    dx = Diagnosis.from_windows(
        probs,
        index,
        class_names=NAMES,
        task="3class",
        aggregation="mean",
        model=MODEL,
        ood={"TYPICAL": 3.0, "UNUSUAL": 12.0, "ALIEN": 40.0},
        ood_limits=(10.0, 20.0),
    )
    assert dx.record("TYPICAL").judged and not dx.record("TYPICAL").warnings
    assert dx.record("UNUSUAL").judged and "out-of-distribution" in dx.record("UNUSUAL").warnings[0]
    assert dx.record("ALIEN").outcome == "not interpretable"
    assert "unlike any recording" in dx.record("ALIEN").reasons[0]
    assert dx.visit.n_records == 2 and dx.visit.warnings == dx.record("UNUSUAL").warnings
