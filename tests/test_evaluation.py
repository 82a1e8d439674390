"""Tests of emgdx.evaluation: splits, aggregation, metrics (against sklearn), CV runner, report."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from emgdx.errors import ConfigError, SignalError
from emgdx.evaluation import (
    LeakyEvaluationWarning,
    SubjectLeakError,
    aggregate,
    assert_subject_disjoint,
    bootstrap_ci,
    classification_metrics,
    cross_validate,
    flat_metrics,
    grouped_kfold,
    inner_validation_split,
    leaky_random_window_split,
    load_results,
    loso,
    per_subject_table,
    render_html,
    roc_points,
    subject_labels,
    window_table,
    write_report,
)
from emgdx.frontend import FrontEnd
from emgdx.preprocess import PreprocessConfig
from emgdx.recording import LABELS, Windows
from emgdx.simulate import simulate_cohort

# --------------------------------------------------------------------------- fixtures


def _groups(
    n_subjects_per_class: int = 4, windows_per_subject: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    groups, labels = [], []
    for label in LABELS:
        for s in range(n_subjects_per_class):
            groups += [f"{label[0].upper()}{s:02d}"] * windows_per_subject
            labels += [label] * windows_per_subject
    return np.array(groups), np.array(labels)


@pytest.fixture(scope="module")
def sim_windows() -> Windows:
    """9 simulated subjects (3 per class), 2 records each; controls also at moderate level."""
    sim = simulate_cohort(
        3,
        2,
        fs_hz=6000.0,
        duration_s=4.0,
        seed=0,
        levels={"healthy": ["low", "moderate"], "neurogenic": ["low"], "myopathy": ["low"]},
    )
    cfg = PreprocessConfig(notch=None, window_s=0.5, hop_s=0.5)
    return FrontEnd(cfg, qc=False).prepare(sim.cohort).windows


def _log_rms(windows: Windows) -> np.ndarray:
    return np.log(np.sqrt(np.mean(windows.data.astype(np.float64) ** 2, axis=1)) + 1e-9)


class CentroidOnRms:
    """Nearest class centroid on log RMS: a trivial honest pipeline that records its data."""

    seen: ClassVar[list[set[str]]] = []

    def __init__(self, classes: tuple[str, ...] = LABELS) -> None:
        self.classes = classes

    def fit(self, windows: Windows) -> CentroidOnRms:
        CentroidOnRms.seen.append(set(windows.index["subject_id"]))
        feature = _log_rms(windows)
        labels = windows.index["label"].to_numpy()
        self.centroids = np.array([feature[labels == c].mean() for c in self.classes])
        return self

    def predict_windows(self, windows: Windows) -> np.ndarray:
        logits = -3.0 * np.abs(_log_rms(windows)[:, None] - self.centroids[None, :])
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


class SubjectMemoriser:
    """Cheats: remembers each training subject's label and reads the test subject id."""

    def fit(self, windows: Windows) -> SubjectMemoriser:
        idx = windows.index
        self.memory = dict(zip(idx["subject_id"], idx["label"], strict=True))
        return self

    def predict_windows(self, windows: Windows) -> np.ndarray:
        probs = np.full((len(windows), len(LABELS)), 1.0 / len(LABELS))
        for i, subject in enumerate(windows.index["subject_id"]):
            if subject in self.memory:
                probs[i] = np.eye(len(LABELS))[LABELS.index(self.memory[subject])]
        return probs


# --------------------------------------------------------------------------- splits


def test_loso_one_fold_per_subject_and_covers_everything() -> None:
    groups, _ = _groups()
    folds = loso(groups)
    assert len(folds) == np.unique(groups).size
    tested = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tested), np.arange(groups.size))
    for train, test in folds:
        assert np.unique(groups[test]).size == 1
        assert groups[test][0] not in set(groups[train])
        assert train.size + test.size == groups.size
    with pytest.raises(ConfigError):
        loso(["only"] * 5)


def test_grouped_kfold_is_subject_wise_and_stratified() -> None:
    groups, labels = _groups(n_subjects_per_class=4)
    folds = grouped_kfold(groups, labels, k=4, seed=3)
    assert len(folds) == 4
    tested = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tested), np.arange(groups.size))
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        # 4 subjects per class, 4 folds: stratification puts one subject of each class per fold
        assert sorted(set(labels[test])) == sorted(LABELS)
    again = grouped_kfold(groups, labels, k=4, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    with pytest.raises(ConfigError):
        grouped_kfold(groups, labels, k=13, seed=0)


def test_inner_validation_split_per_class_and_disjoint() -> None:
    groups, labels = _groups(n_subjects_per_class=5)
    train, val = inner_validation_split(groups, labels, fraction=0.4, seed=1)
    assert not set(groups[train]) & set(groups[val])
    assert train.size + val.size == groups.size
    per_subject = subject_labels(groups[val], labels[val])
    # round(0.4 * 5) = 2 validation subjects of every class, 3 left for training
    assert per_subject.value_counts().to_dict() == dict.fromkeys(LABELS, 2)
    assert set(labels[train]) == set(LABELS)
    same = inner_validation_split(groups, labels, fraction=0.4, seed=1)
    assert np.array_equal(val, same[1])
    other = inner_validation_split(groups, labels, fraction=0.4, seed=2)
    assert not np.array_equal(val, other[1])
    # a class with a single subject stays entirely in training
    lone = groups != "M01"
    lone &= ~np.isin(groups, ["M02", "M03", "M04"])
    tr, va = inner_validation_split(groups[lone], labels[lone], fraction=0.5, seed=0)
    assert "myopathy" not in set(labels[lone][va])
    assert "myopathy" in set(labels[lone][tr])
    with pytest.raises(ConfigError):
        inner_validation_split(groups, labels, fraction=1.0, seed=0)


def test_leaky_split_warns_every_time_and_mixes_subjects() -> None:
    groups, _ = _groups()
    for _ in range(2):
        with pytest.warns(LeakyEvaluationWarning):
            folds = leaky_random_window_split(groups.size, seed=0, n_splits=5)
    shared = [set(groups[tr]) & set(groups[te]) for tr, te in folds]
    assert any(shared), "a window-wise split of 5-window subjects should leak"
    with pytest.raises(SubjectLeakError, match="subject"):
        assert_subject_disjoint(groups[folds[0][0]], groups[folds[0][1]])


def test_assert_subject_disjoint_names_the_subject() -> None:
    assert_subject_disjoint(["a", "b"], ["c"])
    with pytest.raises(SubjectLeakError, match="'b'"):
        assert_subject_disjoint(["a", "b"], ["b", "c"])


# --------------------------------------------------------------------------- aggregation


def _index(rows: list[tuple[str, str, str]], level: str | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["record_id", "subject_id", "label"])
    if level is not None:
        frame["level"] = level
    return frame


def test_record_and_subject_means_follow_the_hierarchy() -> None:
    rng = np.random.default_rng(0)
    # subject S1: record r1 with 6 windows, r2 with 2 windows; subject S2: one record
    rows = [("r1", "S1", "healthy")] * 6 + [("r2", "S1", "healthy")] * 2
    rows += [("r3", "S2", "myopathy")] * 3
    index = _index(rows)
    probs = rng.dirichlet(np.ones(3), size=len(rows))
    records = aggregate(probs, index, level="record")
    expected = pd.DataFrame(probs, columns=["a", "b", "c"]).groupby(index["record_id"]).mean()
    assert np.allclose(records[["p_healthy", "p_neurogenic", "p_myopathy"]], expected.to_numpy())
    assert records["n_windows"].tolist() == [6, 2, 3]
    subjects = aggregate(probs, index, level="subject")
    s1 = subjects.set_index("subject_id").loc["S1"]
    record_mean = expected.loc[["r1", "r2"]].mean().to_numpy()
    window_mean = probs[:8].mean(axis=0)
    assert np.allclose(s1[["p_healthy", "p_neurogenic", "p_myopathy"]].to_numpy(float), record_mean)
    assert not np.allclose(record_mean, window_mean)  # the test would not tell them apart
    assert s1["n_records"] == 2 and s1["n_windows"] == 8
    assert subjects["y_true"].tolist() == [0, 2]


def test_vote_differs_from_mean_and_breaks_ties_by_mean() -> None:
    index = _index([("r1", "S1", "healthy")] * 3 + [("r2", "S1", "healthy")] * 2)
    probs = np.array(
        [
            [0.4, 0.6, 0.0],
            [0.4, 0.6, 0.0],
            [1.0, 0.0, 0.0],  # r1: mean says healthy (0.6), two of three windows vote neurogenic
            [0.45, 0.0, 0.55],
            [0.9, 0.1, 0.0],  # r2: one vote each for healthy and myopathy; mean favours healthy
        ]
    )
    mean = aggregate(probs, index, level="record", method="mean")
    vote = aggregate(probs, index, level="record", method="vote")
    assert mean["predicted"].tolist() == ["healthy", "healthy"]
    assert vote["predicted"].tolist() == ["neurogenic", "healthy"]
    assert np.isclose(vote.loc[0, "p_neurogenic"], 2 / 3, atol=1e-6)
    subject_vote = aggregate(probs, index, level="subject", method="vote")
    # records voted neurogenic and healthy: a tie, broken by the records' mean scores
    assert np.isclose(subject_vote.loc[0, "p_healthy"], 0.5, atol=1e-6)


def test_aggregate_rejects_bad_input() -> None:
    index = _index([("r1", "S1", "healthy"), ("r1", "S1", "myopathy")])
    with pytest.raises(SignalError, match="r1"):
        aggregate(np.full((2, 3), 1 / 3), index, level="record")
    good = _index([("r1", "S1", "healthy")] * 2)
    with pytest.raises(SignalError, match="shape"):
        aggregate(np.full((3, 3), 1 / 3), good)
    with pytest.raises(SignalError, match="NaN"):
        aggregate(np.array([[np.nan, 0.5, 0.5]] * 2), good)


def test_binary_tasks_encode_targets() -> None:
    index = _index([("r1", "S1", "healthy"), ("r2", "S2", "neurogenic"), ("r3", "S3", "myopathy")])
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    rest = window_table(probs, index, task="als_vs_rest")
    assert rest["y_true"].tolist() == [0, 1, 0]
    assert rest["true"].tolist() == ["rest", "neurogenic", "rest"]
    vs_healthy = window_table(probs, index, task="als_vs_healthy")
    assert vs_healthy["y_true"].tolist() == [0, 1, -1]
    assert "p_neurogenic" in vs_healthy.columns


# --------------------------------------------------------------------------- metrics


def _random_case(n: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 1.2 * np.eye(n_classes)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, np.round(probs, 2)  # rounding creates tied scores, which AUC must handle


@pytest.mark.parametrize("n_classes", [2, 3])
def test_metrics_match_sklearn(n_classes: int) -> None:
    y, probs = _random_case(300, n_classes, seed=n_classes)
    names = [f"c{i}" for i in range(n_classes)]
    pred = probs.argmax(axis=1)
    m = classification_metrics(y, probs, names)
    assert m["n"] == 300
    assert np.isclose(m["accuracy"], skm.accuracy_score(y, pred))
    assert np.isclose(m["balanced_accuracy"], skm.balanced_accuracy_score(y, pred))
    assert np.isclose(m["macro_f1"], skm.f1_score(y, pred, average="macro"))
    assert np.isclose(m["macro_precision"], skm.precision_score(y, pred, average="macro"))
    assert m["confusion"] == skm.confusion_matrix(y, pred).tolist()
    per_class_f1 = skm.f1_score(y, pred, average=None)
    mcm = skm.multilabel_confusion_matrix(y, pred)
    for i, name in enumerate(names):
        (tn, fp), (fn, tp) = mcm[i]
        assert np.isclose(m["per_class"][name]["sensitivity"], tp / (tp + fn))
        assert np.isclose(m["per_class"][name]["specificity"], tn / (tn + fp))
        assert np.isclose(m["per_class"][name]["f1"], per_class_f1[i])
        assert np.isclose(m["per_class"][name]["roc_auc"], skm.roc_auc_score(y == i, probs[:, i]))
    if n_classes == 2:
        expected_auc = skm.roc_auc_score(y, probs[:, 1])
    else:
        # sklearn's multi_class="ovr" macro AUC is this mean; it refuses the rounded scores
        # (rows no longer sum to 1 exactly), so the tied scores are kept by averaging here.
        expected_auc = np.mean([skm.roc_auc_score(y == i, probs[:, i]) for i in range(n_classes)])
        exact = probs / probs.sum(axis=1, keepdims=True)
        assert np.isclose(
            classification_metrics(y, exact, names)["roc_auc"],
            skm.roc_auc_score(y, exact, multi_class="ovr"),
        )
    assert np.isclose(m["roc_auc"], expected_auc)


def test_metrics_with_absent_class_and_unknown_rows() -> None:
    y, probs = _random_case(200, 3, seed=7)
    y[y == 2] = 0  # class 2 never occurs
    y_unknown = y.copy()
    y_unknown[:20] = -1
    m = classification_metrics(y_unknown, probs, LABELS)
    kept_y, kept_p = y[20:], probs[20:]
    pred = kept_p.argmax(axis=1)
    assert m["n"] == 180
    assert np.isnan(m["per_class"]["myopathy"]["roc_auc"])
    auc01 = [skm.roc_auc_score(kept_y == c, kept_p[:, c]) for c in (0, 1)]
    assert np.isclose(m["roc_auc"], np.mean(auc01))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that y_pred has a class y_true lacks
        assert np.isclose(m["balanced_accuracy"], skm.balanced_accuracy_score(kept_y, pred))
    assert np.isclose(m["macro_f1"], skm.f1_score(kept_y, pred, labels=[0, 1], average="macro"))


def test_roc_points_match_sklearn_roc_curve() -> None:
    y, probs = _random_case(150, 3, seed=11)
    table = pd.DataFrame(probs, columns=[f"p_{c}" for c in LABELS])
    table["y_true"], table["y_pred"] = y, probs.argmax(axis=1)
    curves = roc_points(table, LABELS, max_points=10_000)
    for c, name in enumerate(LABELS):
        fpr, tpr, _ = skm.roc_curve(y == c, probs[:, c], drop_intermediate=False)
        assert np.allclose(curves[name]["fpr"], fpr, atol=1e-5)
        assert np.allclose(curves[name]["tpr"], tpr, atol=1e-5)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_weighted_metrics_equal_repeated_rows(n_classes: int) -> None:
    """The bootstrap's weight shortcut equals recomputing on rows copied weight times."""
    from emgdx.evaluation.metrics import _tie_groups, _weighted_metrics

    y, probs = _random_case(120, n_classes, seed=5)
    pred = probs.argmax(axis=1)
    names = [f"c{i}" for i in range(n_classes)]
    weights = np.random.default_rng(1).integers(0, 4, size=y.size)
    weighted = _weighted_metrics(y, pred, _tie_groups(probs), weights.astype(float), names)
    rows = np.repeat(np.arange(y.size), weights)
    copied = classification_metrics(y[rows], probs[rows], names, y_pred=pred[rows])
    flat_w, flat_c = flat_metrics(weighted), flat_metrics(copied)
    assert flat_w.keys() == flat_c.keys()
    for key in flat_w:
        assert np.isclose(flat_w[key], flat_c[key], equal_nan=True), key
    assert weighted["confusion"] == copied["confusion"]


def _subject_table(correct_windows: dict[str, tuple[int, bool]]) -> pd.DataFrame:
    rows = []
    for subject, (n, correct) in correct_windows.items():
        for _ in range(n):
            truth = 0 if subject < "m" else 1  # two classes, by subject name
            pred = truth if correct else 1 - truth
            rows.append({"subject_id": subject, "y_true": truth, "y_pred": pred})
    table = pd.DataFrame(rows)
    table["p_a"] = np.where(table["y_pred"] == 0, 0.9, 0.1)
    table["p_b"] = 1.0 - table["p_a"]
    return table


def test_bootstrap_resamples_subjects_not_windows() -> None:
    # One big subject right (1000 windows), nine small subjects wrong (10 windows each):
    # window accuracy is 0.92, but it rests on one subject, so the interval must be wide.
    spec = {"a_big": (1000, True)} | {f"{p}{i}": (10, False) for p in "az" for i in range(1, 5)}
    spec |= {"z9": (10, False)}
    table = _subject_table(spec)
    point = classification_metrics(
        table["y_true"], table[["p_a", "p_b"]].to_numpy(), ["a", "b"], y_pred=table["y_pred"]
    )["accuracy"]
    assert point > 0.9
    ci = bootstrap_ci(table, ["a", "b"], n_boot=300, seed=0)
    low, high = ci["accuracy"]
    assert low < 0.2 and high > 0.9  # window resampling would give roughly [0.90, 0.94]
    assert ci == bootstrap_ci(table, ["a", "b"], n_boot=300, seed=0)
    perfect = _subject_table({f"{p}{i}": (5, True) for p in "az" for i in range(5)})
    assert bootstrap_ci(perfect, ["a", "b"], n_boot=100, seed=0)["balanced_accuracy"] == [1.0, 1.0]


def test_per_subject_table_marks_errors() -> None:
    index = _index([("r1", "S1", "healthy"), ("r2", "S2", "myopathy"), ("r3", "S3", "neurogenic")])
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.1, 0.3], [0.1, 0.8, 0.1]])
    table = per_subject_table(aggregate(probs, index, level="subject"), LABELS)
    assert table["correct"].tolist() == [True, False, True]
    assert np.allclose(table["p_true"], [0.7, 0.3, 0.8])


# --------------------------------------------------------------------------- cross-validation


def test_loso_runner_fits_on_training_subjects_only(sim_windows: Windows) -> None:
    CentroidOnRms.seen.clear()
    progress: list[tuple[int, int]] = []
    result = cross_validate(
        CentroidOnRms,
        sim_windows,
        cv="loso",
        n_boot=100,
        on_progress=lambda d, t: progress.append((d, t)),
    )
    n_subjects = sim_windows.index["subject_id"].nunique()
    assert len(result.folds) == n_subjects == len(CentroidOnRms.seen)
    assert progress[-1] == (n_subjects, n_subjects)
    for fold, seen in zip(result.folds, CentroidOnRms.seen, strict=True):
        assert not set(fold["test_subjects"]) & seen
        assert len(seen) == n_subjects - 1
    assert len(result.index) == len(sim_windows)
    assert np.allclose(result.probs.sum(axis=1), 1.0)
    # out-of-fold probabilities equal a manual refit without the held-out subject
    held_out = result.folds[0]["test_subjects"][0]
    in_fold = sim_windows.index["subject_id"].eq(held_out).to_numpy()
    manual = (
        CentroidOnRms()
        .fit(sim_windows.select(~in_fold))
        .predict_windows(sim_windows.select(in_fold))
    )
    order = result.index["subject_id"].eq(held_out).to_numpy()
    assert np.allclose(result.probs[order], manual)
    # log RMS separates these simulated classes better than chance (1/3)
    assert result.metric("balanced_accuracy", level="window") > 0.45
    summary = result.summary()
    assert set(summary["level"]) == {"window", "record", "subject"}
    assert set(summary["subset"]) == {"all", "low"}
    assert (summary["balanced_accuracy_low"] <= summary["balanced_accuracy"] + 1e-9).all()
    assert (summary["balanced_accuracy"] <= summary["balanced_accuracy_high"] + 1e-9).all()


def test_low_subset_holds_only_low_records(sim_windows: Windows) -> None:
    result = cross_validate(CentroidOnRms, sim_windows, cv="kfold", k=3, n_boot=50)
    low_records = result.tables["low"]["mean"]["record"]
    assert set(low_records["level"]) == {"low"}
    n_low = int(sim_windows.index["level"].eq("low").sum())
    assert result.evaluation["low"]["mean"]["window"]["metrics"]["n"] == n_low < len(sim_windows)
    assert len(result.tables["all"]["mean"]["record"]) == sim_windows.index["record_id"].nunique()


def test_subject_memoriser_is_at_chance_under_loso_but_not_leaky(sim_windows: Windows) -> None:
    honest = cross_validate(SubjectMemoriser, sim_windows, cv="loso", n_boot=20)
    for level in ("window", "record", "subject"):
        # it never saw the test subject: uniform probabilities, argmax = first class
        assert np.isclose(honest.metric("balanced_accuracy", level=level), 1 / 3)
        assert np.isclose(honest.metric("roc_auc", level=level), 0.5)
    grouped = cross_validate(SubjectMemoriser, sim_windows, cv="kfold", k=3, n_boot=20)
    assert np.isclose(grouped.metric("balanced_accuracy", level="subject"), 1 / 3)
    with pytest.warns(LeakyEvaluationWarning):
        leaky = cross_validate(SubjectMemoriser, sim_windows, cv="leaky", k=4, n_boot=20)
    assert leaky.metric("balanced_accuracy", level="window") == 1.0
    assert leaky.cv == "leaky"


def test_runner_refuses_leaky_custom_splits_and_bad_probabilities(sim_windows: Windows) -> None:
    n = len(sim_windows)
    positions = np.arange(n)
    with pytest.raises(SubjectLeakError):
        cross_validate(
            CentroidOnRms, sim_windows, cv=[(positions[::2], positions[1::2])], n_boot=10
        )

    class WrongShape(CentroidOnRms):
        def predict_windows(self, windows: Windows) -> np.ndarray:
            return super().predict_windows(windows)[:, :2]

    class NotNormalised(CentroidOnRms):
        def predict_windows(self, windows: Windows) -> np.ndarray:
            return 0.5 * super().predict_windows(windows)

    with pytest.raises(SignalError, match="shape"):
        cross_validate(WrongShape, sim_windows, n_boot=10)
    with pytest.raises(SignalError, match="sum to 1"):
        cross_validate(NotNormalised, sim_windows, n_boot=10)
    with pytest.raises(ConfigError):
        cross_validate(CentroidOnRms, sim_windows, cv="random", n_boot=10)  # type: ignore[arg-type]


def test_binary_task_drops_myopathy(sim_windows: Windows) -> None:
    classes = ("healthy", "neurogenic")
    result = cross_validate(
        lambda: CentroidOnRms(classes), sim_windows, cv="loso", task="als_vs_healthy", n_boot=50
    )
    assert result.class_names == classes
    assert "myopathy" not in set(result.index["label"])
    assert len(result.folds) == 6  # 3 healthy + 3 neurogenic subjects
    m = result.evaluation["all"]["mean"]["record"]["metrics"]
    assert set(m["per_class"]) == set(classes)
    assert 0.0 <= m["roc_auc"] <= 1.0


def test_custom_splits_index_the_callers_windows(sim_windows: Windows) -> None:
    # Custom LOSO splits over *all* windows, used for a task that drops myopathy windows:
    # the runner must map them onto the kept windows and match its own LOSO exactly.
    splits = loso(sim_windows.index["subject_id"].to_numpy())
    task = "als_vs_healthy"

    def make() -> CentroidOnRms:
        return CentroidOnRms(("healthy", "neurogenic"))

    custom = cross_validate(make, sim_windows, cv=splits, task=task, n_boot=20)
    builtin = cross_validate(make, sim_windows, cv="loso", task=task, n_boot=20)
    assert custom.cv == "custom"
    assert len(custom.index) == len(builtin.index) < len(sim_windows)
    assert np.allclose(custom.probs, builtin.probs)


def test_cohort_input_windows_once_and_refuses_fitted_normalisation() -> None:
    sim = simulate_cohort(2, 1, fs_hz=6000.0, duration_s=2.0, seed=1)
    cfg = PreprocessConfig(notch=None, window_s=0.5, hop_s=0.5)
    result = cross_validate(CentroidOnRms, sim.cohort, preprocess=cfg, n_boot=20)
    assert len(result.folds) == 6
    assert result.config["preprocess"]["window_s"] == 0.5
    with pytest.raises(ConfigError, match="preprocess"):
        cross_validate(CentroidOnRms, sim.cohort)
    fitted = PreprocessConfig(notch=None, normalise="zscore", normalise_scope="fitted")
    with pytest.raises(ConfigError, match="fitted"):
        cross_validate(CentroidOnRms, sim.cohort, preprocess=fitted)


def test_runs_the_real_pipeline_from_a_cohort() -> None:
    """The runner drives emgdx.pipeline.Pipeline (classical model) on a cohort via prepare."""
    from emgdx.pipeline import Pipeline

    sim = simulate_cohort(2, 2, fs_hz=6000.0, duration_s=2.0, seed=2)
    cfg = PreprocessConfig(notch=None, window_s=0.5, hop_s=0.5)

    def make() -> Pipeline:
        return Pipeline(
            preprocess=cfg,
            representation="features",
            model={"name": "random_forest", "n_estimators": 25},
        )

    result = cross_validate(
        make, sim.cohort, preprocess=make().prepare, cv="kfold", k=2, seed=0, n_boot=50
    )
    assert len(result.folds) == 2
    assert sorted(s for f in result.folds for s in f["test_subjects"]) == sorted(
        sim.cohort.subjects
    )
    assert result.probs.shape == (len(result.index), 3)
    assert np.allclose(result.probs.sum(axis=1), 1.0)
    assert "preprocess" not in result.config  # a callable has no config of its own to record


# --------------------------------------------------------------------------- report


def _strict_json(path: Path) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_report_writes_strict_json_and_self_contained_html(
    sim_windows: Windows, tmp_path: Path
) -> None:
    run = {"model": "centroid_on_rms", "pre": PreprocessConfig(window_s=0.5), "out": tmp_path}
    result = cross_validate(CentroidOnRms, sim_windows, cv="loso", n_boot=50, config=run)
    paths = write_report(result, tmp_path / "run")
    data = _strict_json(paths["json"])
    assert data["config"]["model"] == "centroid_on_rms"
    assert data["config"]["pre"]["window_s"] == 0.5  # dataclasses become dicts
    assert data["config"]["out"] == str(tmp_path)
    assert data["config"]["cv"] == "loso" and data["config"]["n_folds"] == 9
    assert data["data_hash"] == result.data_hash and len(data["data_hash"]) == 64
    assert data["versions"]["numpy"] == np.__version__
    assert data["evaluation"]["low"]["mean"]["subject"]["metrics"]["n"] == 9
    assert np.isclose(
        data["evaluation"]["all"]["vote"]["record"]["metrics"]["balanced_accuracy"],
        result.metric("balanced_accuracy", level="record", method="vote"),
    )
    page = paths["html"].read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 6  # confusion, ROC, per-subject; for "all" and "low"
    assert "Low-contraction records only" in page
    assert "src='http" not in page and 'src="http' not in page
    assert paths["html"].stat().st_mode & 0o044  # readable by others, not mkstemp's 0600
    assert not list((tmp_path / "run").glob(".*.tmp"))
    # the page can be rebuilt from results.json alone
    assert render_html(load_results(paths["json"])).count("data:image/png") == 6


def test_report_of_a_result_without_window_level(sim_windows: Windows) -> None:
    """An ensemble combined from record tables has no window level; the report shows the rest."""
    data = cross_validate(CentroidOnRms, sim_windows, cv="loso", n_boot=10).to_dict()
    for by_method in data["evaluation"].values():
        for evaluation in by_method.values():
            del evaluation["window"]
    page = render_html(data)
    assert page.count("data:image/png") == 6
    assert "<td>window</td>" not in page and "<td>record</td>" in page


def test_leaky_report_carries_a_warning(sim_windows: Windows, tmp_path: Path) -> None:
    with pytest.warns(LeakyEvaluationWarning):
        leaky = cross_validate(SubjectMemoriser, sim_windows, cv="leaky", k=3, n_boot=10)
    assert "Leaky evaluation" in render_html(leaky)
    honest = cross_validate(SubjectMemoriser, sim_windows, cv="loso", n_boot=10)
    assert "Leaky evaluation" not in render_html(honest)


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_loso_on_a_few_n2001_subjects(n2001: Path) -> None:
    from emgdx.io import read_cohort

    cohort = read_cohort(n2001)
    manifest = cohort.manifest
    # two subjects per class, their first three records each: enough to exercise every path
    chosen = []
    for label in LABELS:
        subjects = sorted(manifest.loc[manifest["label"] == label, "subject_id"].unique())[:2]
        for subject in subjects:
            records = manifest.loc[manifest["subject_id"] == subject, "record_id"]
            chosen += sorted(records)[:3]
    small = cohort.subset(chosen)
    cfg = PreprocessConfig(window_s=1.0, hop_s=1.0)
    result = cross_validate(CentroidOnRms, small, preprocess=cfg, n_boot=100)
    assert len(result.folds) == 6
    assert set(result.index["record_id"]) <= set(chosen)
    tested = [s for f in result.folds for s in f["test_subjects"]]
    assert sorted(tested) == sorted(set(small.manifest["subject_id"]))
    record_metrics = result.evaluation["all"]["mean"]["record"]["metrics"]
    assert record_metrics["n"] == len(chosen)
    assert 0.0 <= record_metrics["balanced_accuracy"] <= 1.0
