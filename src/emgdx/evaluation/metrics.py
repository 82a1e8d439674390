"""Classification metrics at any level, with subject-bootstrap confidence intervals.

The metrics are computed here from the confusion matrix and ranks with numpy rather than
through ``sklearn.metrics``: a bootstrap recomputes them thousands of times, and sklearn's
input validation makes that ~50x slower. The test suite checks every number against sklearn.

Conventions: rows whose ``y_true`` is negative (unknown, or outside the task) are ignored;
macro averages run over the classes present in ``y_true``; precision of a class never
predicted counts as 0 (sklearn's ``zero_division=0``); one-vs-rest ROC-AUC of a class that is
absent (or the only one present) is NaN and left out of the macro average. For binary tasks
``roc_auc`` is the AUC of class 1 (the positive class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from emgdx.errors import ConfigError, SignalError
from emgdx.evaluation.aggregate import score_columns

__all__ = [
    "SCALAR_METRICS",
    "bootstrap_ci",
    "classification_metrics",
    "confusion_matrix",
    "evaluate_table",
    "flat_metrics",
    "per_subject_table",
    "roc_auc_ovr",
    "roc_points",
]

#: Summary metrics every evaluation reports (per-class ones are added by :func:`flat_metrics`).
SCALAR_METRICS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "macro_specificity",
    "roc_auc",
)


def _labelled(y_true: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    y = np.asarray(y_true, dtype=np.int64)
    keep = y >= 0
    return (y[keep], *(np.asarray(a)[keep] for a in arrays))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``[n_classes, n_classes]`` counts; rows are true classes, columns predicted ones."""
    y, p = _labelled(y_true, y_pred)
    if y.size and (y.max() >= n_classes or p.min() < 0 or p.max() >= n_classes):
        raise SignalError(f"class indices out of range for {n_classes} classes")
    return np.bincount(y * n_classes + p, minlength=n_classes**2).reshape(n_classes, n_classes)


def _auc_binary(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic (average ranks handle ties like sklearn)."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc_ovr(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC-AUC per class (NaN where a class is absent or alone)."""
    y, s = _labelled(y_true, scores)
    return np.array([_auc_binary(y == c, s[:, c]) for c in range(s.shape[1])])


def _tie_groups(scores: np.ndarray) -> list[np.ndarray]:
    """Per class, the rank of every row's score among the distinct scores (ascending)."""
    return [np.unique(scores[:, c], return_inverse=True)[1] for c in range(scores.shape[1])]


def _weighted_auc(
    y: np.ndarray, groups: list[np.ndarray], weights: np.ndarray, n_classes: int
) -> np.ndarray:
    """One-vs-rest AUC with row weights (a row drawn twice counts twice).

    AUC = P(score_pos > score_neg) + P(tie) / 2 over weighted positive-negative pairs. With the
    tie groups precomputed this needs no sorting, which is what makes the bootstrap fast.
    """
    auc = np.full(n_classes, np.nan)
    for c in range(n_classes):
        pos = weights * (y == c)
        neg = weights - pos
        w_pos, w_neg = pos.sum(), neg.sum()
        if w_pos <= 0 or w_neg <= 0:
            continue
        n_groups = int(groups[c].max()) + 1
        pos_g = np.bincount(groups[c], weights=pos, minlength=n_groups)
        neg_g = np.bincount(groups[c], weights=neg, minlength=n_groups)
        below = np.cumsum(neg_g) - neg_g  # negative weight strictly below each group
        auc[c] = float(np.sum(pos_g * (below + 0.5 * neg_g)) / (w_pos * w_neg))
    return auc


def _finite_mean(values: np.ndarray) -> float:
    """Mean of the finite values (NaN when there are none)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _summarise(cm: np.ndarray, auc: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """All metrics from a (possibly weighted) confusion matrix and per-class AUCs."""
    n_classes = len(class_names)
    n = float(cm.sum())
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    fp = predicted - tp
    fn = support - tp
    tn = n - tp - fp - fn
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(support + predicted > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        negatives = tn + fp
        specificity = np.where(negatives > 0, tn / negatives, np.nan)
    present = support > 0
    return {
        "n": round(float(n)),
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "balanced_accuracy": _finite_mean(recall[present]),
        "macro_precision": _finite_mean(precision[present]),
        "macro_recall": _finite_mean(recall[present]),
        "macro_f1": _finite_mean(f1[present]),
        "macro_specificity": _finite_mean(specificity[present]),
        "roc_auc": float(auc[1]) if n_classes == 2 else _finite_mean(auc),
        "confusion": np.rint(cm).astype(np.int64).tolist(),
        "per_class": {
            name: {
                "support": round(float(support[i])),
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "sensitivity": float(recall[i]),
                "specificity": float(specificity[i]),
                "roc_auc": float(auc[i]),
            }
            for i, name in enumerate(class_names)
        },
    }


def classification_metrics(
    y_true: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    *,
    y_pred: np.ndarray | None = None,
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, per-class and macro precision/recall/F1, sensitivity,
    specificity, one-vs-rest ROC-AUC and the confusion matrix.

    Parameters
    ----------
    y_true
        True class index per row (negative = unknown, ignored).
    scores
        ``[n, n_classes]`` class scores (probabilities or vote shares).
    class_names
        Names of the classes, in index order.
    y_pred
        Predicted class per row; the argmax of ``scores`` when omitted.

    Returns
    -------
    dict
        ``n``, the :data:`SCALAR_METRICS`, ``confusion`` (list of lists) and ``per_class``
        (class name -> support, precision, recall, f1, sensitivity, specificity, roc_auc).
    """
    n_classes = len(class_names)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != n_classes:
        raise SignalError(f"scores must be [n, {n_classes}], got {scores.shape}")
    pred = np.argmax(scores, axis=1) if y_pred is None else np.asarray(y_pred, dtype=np.int64)
    y, s, p = _labelled(y_true, scores, pred)
    cm = confusion_matrix(y, p, n_classes)
    auc = roc_auc_ovr(y, s) if y.size else np.full(n_classes, np.nan)
    return _summarise(cm, auc, class_names)


def _weighted_metrics(
    y: np.ndarray,
    p: np.ndarray,
    groups: list[np.ndarray],
    weights: np.ndarray,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """:func:`classification_metrics` of rows repeated ``weights`` times (labelled rows only)."""
    n_classes = len(class_names)
    cm = np.bincount(y * n_classes + p, weights=weights, minlength=n_classes**2)
    auc = _weighted_auc(y, groups, weights, n_classes)
    return _summarise(cm.reshape(n_classes, n_classes), auc, class_names)


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Scalars of :func:`classification_metrics`: the summary ones plus
    ``sensitivity_<class>``, ``specificity_<class>``, ``f1_<class>`` and ``roc_auc_<class>``."""
    flat = {key: float(metrics[key]) for key in SCALAR_METRICS}
    for name, values in metrics["per_class"].items():
        for key in ("sensitivity", "specificity", "f1", "roc_auc"):
            flat[f"{key}_{name}"] = float(values[key])
    return flat


def _table_arrays(
    table: pd.DataFrame, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    missing = [c for c in ("y_true", "y_pred", *score_columns(class_names)) if c not in table]
    if missing:
        raise SignalError(f"result table lacks columns {missing}")
    return (
        table["y_true"].to_numpy(np.int64),
        table[score_columns(class_names)].to_numpy(np.float64),
        table["y_pred"].to_numpy(np.int64),
    )


def bootstrap_ci(
    table: pd.DataFrame,
    class_names: Sequence[str],
    *,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Percentile confidence intervals from resampling **subjects** with replacement.

    Each replicate draws as many subjects as the table has, with replacement, takes all their
    rows (windows, records or the subject row itself) and recomputes the metrics, so the
    interval reflects between-subject variability, the honest unit of replication.

    Parameters
    ----------
    table
        A level table from :mod:`emgdx.evaluation.aggregate` (``subject_id``, ``y_true``,
        ``y_pred``, ``p_<class>``).
    class_names
        Class names in index order.
    n_boot
        Number of replicates.
    ci
        Coverage of the interval.
    seed
        Seed of the resampling.

    Returns
    -------
    dict
        Metric name (as in :func:`flat_metrics`) -> ``[low, high]``; ``[nan, nan]`` when the
        metric was undefined in more than half of the replicates.
    """
    if not 0.0 < ci < 1.0:
        raise ConfigError(f"ci must be in (0, 1), got {ci}")
    labelled = table[table["y_true"] >= 0]
    y, s, p = _table_arrays(labelled, class_names)
    subjects, inverse = np.unique(
        labelled["subject_id"].astype(str).to_numpy(), return_inverse=True
    )
    if subjects.size == 0 or n_boot < 1:
        return {}
    confusion_matrix(y, p, len(class_names))  # validates the class indices once
    groups = _tie_groups(s)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        chosen = rng.integers(0, subjects.size, size=subjects.size)
        # A subject drawn k times contributes all its rows k times: weights, not copies.
        weights = np.bincount(chosen, minlength=subjects.size)[inverse].astype(np.float64)
        flat = flat_metrics(_weighted_metrics(y, p, groups, weights, class_names))
        for key, value in flat.items():
            draws.setdefault(key, []).append(value)
    alpha = (1.0 - ci) / 2.0
    out: dict[str, list[float]] = {}
    for key, values in draws.items():
        arr = np.asarray(values)
        arr = arr[np.isfinite(arr)]
        enough = arr.size * 2 >= n_boot
        out[key] = [float(np.quantile(arr, q)) if enough else np.nan for q in (alpha, 1 - alpha)]
    return out


def _roc_curve(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-score, kind="mergesort")
    score, positive = score[order], positive[order]
    # Only the last row of a run of equal scores is a threshold (ties move together).
    last = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    tps = np.cumsum(positive)[last]
    fps = (last + 1) - tps
    tpr = np.r_[0.0, tps / positive.sum()]
    fpr = np.r_[0.0, fps / (positive.size - positive.sum())]
    return fpr, tpr


def roc_points(
    table: pd.DataFrame, class_names: Sequence[str], *, max_points: int = 200
) -> dict[str, dict[str, Any]]:
    """One-vs-rest ROC curve points per class (for plots), thinned to ``max_points``.

    Classes whose curve is undefined (absent, or the only class present) are left out.
    """
    y, s, _ = _table_arrays(table[table["y_true"] >= 0], class_names)
    curves: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(class_names):
        positive = y == c
        if positive.all() or not positive.any():
            continue
        fpr, tpr = _roc_curve(positive, s[:, c])
        if fpr.size > max_points:
            keep = np.unique(np.linspace(0, fpr.size - 1, max_points).round().astype(int))
            fpr, tpr = fpr[keep], tpr[keep]
        curves[name] = {
            "fpr": fpr.round(5).tolist(),
            "tpr": tpr.round(5).tolist(),
            "auc": _auc_binary(positive, s[:, c]),
        }
    return curves


def per_subject_table(subject_table: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Per subject: true label, mean probabilities, prediction, correct, P(true class).

    Parameters
    ----------
    subject_table
        The subject-level table from :func:`emgdx.evaluation.aggregate.aggregate`.
    class_names
        Class names in index order.
    """
    cols = score_columns(class_names)
    out = subject_table[["subject_id", "true", *cols, "predicted", "n_records", "n_windows"]].copy()
    y = subject_table["y_true"].to_numpy(np.int64)
    scores = subject_table[cols].to_numpy(np.float64)
    out["correct"] = np.where(y >= 0, subject_table["y_pred"].to_numpy() == y, False)
    out["p_true"] = np.where(y >= 0, scores[np.arange(len(y)), np.clip(y, 0, None)], np.nan)
    return out.reset_index(drop=True)


def evaluate_table(
    table: pd.DataFrame,
    class_names: Sequence[str],
    *,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics, subject-bootstrap CIs and ROC points of one level table.

    Returns
    -------
    dict
        ``metrics`` (:func:`classification_metrics`), ``ci`` (:func:`bootstrap_ci`),
        ``roc`` (:func:`roc_points`), ``n_subjects``, ``n_boot`` and ``ci_level``.
    """
    y, s, p = _table_arrays(table, class_names)
    labelled = table["y_true"].to_numpy() >= 0
    return {
        "metrics": classification_metrics(y, s, class_names, y_pred=p),
        "ci": bootstrap_ci(table, class_names, n_boot=n_boot, ci=ci, seed=seed),
        "roc": roc_points(table, class_names),
        "n_subjects": int(table.loc[labelled, "subject_id"].nunique()),
        "n_boot": int(n_boot),
        "ci_level": float(ci),
    }
