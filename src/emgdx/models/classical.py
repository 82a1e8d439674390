"""Classical baselines on handcrafted features: scikit-learn estimators, class-balanced.

Every builder returns an unfitted scikit-learn estimator with ``fit(X, y)`` and
``predict_proba(X)``; ``X`` is ``[n, n_features]`` (use :func:`feature_matrix` to join a
representation's ``x`` and ``aux`` inputs). Only the SVM gets a :class:`StandardScaler`: tree
ensembles are invariant to monotone feature scaling. ``seed`` becomes ``random_state`` so that
a fit is reproducible. ``n_jobs`` defaults to 1 because evaluation already parallelises over
folds and the project machines have few cores.

Why these estimators
--------------------
``gradient_boosting`` is :class:`~sklearn.ensemble.HistGradientBoostingClassifier`, not the
older ``GradientBoostingClassifier``: it is much faster on thousands of windows, handles NaN
features natively and supports ``class_weight``. :class:`~sklearn.ensemble.AdaBoostClassifier`
has no ``class_weight``; its shallow trees are class-balanced instead, which balances the first
boosting round (later rounds reweight by error anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from emgdx.errors import ConfigError, require

if TYPE_CHECKING:  # scikit-learn is an optional extra, imported where used
    from sklearn.base import BaseEstimator

__all__ = [
    "CLASSICAL_BUILDERS",
    "build_adaboost",
    "build_bagging",
    "build_gradient_boosting",
    "build_random_forest",
    "build_svm",
    "feature_matrix",
]


def _sklearn() -> None:
    """Import scikit-learn lazily, with an error that names the extra to install."""
    require("sklearn", "classical models")


def feature_matrix(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Join a representation's inputs into one float32 matrix ``[n, n_features (+ n_aux)]``.

    ``x`` is flattened per window (a no-op for feature vectors); ``aux``, when present, is
    appended as extra columns. Column order is fixed (``x`` then ``aux``), so a model fitted on
    this matrix must be fed the same way at prediction time.

    Raises
    ------
    ConfigError
        When ``x`` is missing or ``aux`` has a different number of rows.
    """
    if "x" not in inputs:
        raise ConfigError(f"inputs must contain 'x'; got {sorted(inputs)}")
    x = np.asarray(inputs["x"], dtype=np.float32)
    parts = [x.reshape(len(x), -1)]
    if inputs.get("aux") is not None:
        aux = np.asarray(inputs["aux"], dtype=np.float32)
        if len(aux) != len(x):
            raise ConfigError(f"aux has {len(aux)} rows but x has {len(x)}")
        parts.append(aux.reshape(len(aux), -1))
    return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def build_svm(
    *, C: float = 1.0, kernel: str = "rbf", gamma: str | float = "scale", calibration_folds: int = 5
) -> BaseEstimator:
    """RBF support-vector machine behind a StandardScaler, with Platt-scaled probabilities.

    Probabilities come from :class:`~sklearn.calibration.CalibratedClassifierCV` (sigmoid,
    ``ensemble=False``: one SVC on all training data, the sigmoid fitted on cross-validated
    decision values), which replaces the deprecated ``SVC(probability=True)``. Its folds split
    *windows*, not subjects; that only affects the calibration map, never the test data.

    Parameters
    ----------
    C, kernel, gamma
        As in :class:`sklearn.svm.SVC`.
    calibration_folds
        Folds of the (deterministic, unshuffled) calibration cross-validation.
    """
    _sklearn()
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if C <= 0:
        raise ConfigError(f"C must be > 0, got {C}")
    if calibration_folds < 2:
        raise ConfigError(f"calibration_folds must be >= 2, got {calibration_folds}")
    svc = SVC(C=C, kernel=kernel, gamma=gamma, class_weight="balanced")
    return make_pipeline(
        StandardScaler(),
        CalibratedClassifierCV(svc, method="sigmoid", cv=calibration_folds, ensemble=False),
    )


def build_random_forest(
    *,
    n_estimators: int = 300,
    max_depth: int | None = None,
    min_samples_leaf: int = 2,
    max_features: str | float = "sqrt",
    seed: int = 0,
    n_jobs: int = 1,
) -> BaseEstimator:
    """Random forest with class-balanced bootstrap weights (``class_weight="balanced_subsample"``).

    Parameters
    ----------
    n_estimators, max_depth, min_samples_leaf, max_features, n_jobs
        As in :class:`sklearn.ensemble.RandomForestClassifier`.
    seed
        ``random_state`` of the forest.
    """
    _sklearn()
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=n_estimators,
        max_depth=max_depth,
        min_samples_leaf=min_samples_leaf,
        max_features=max_features,
        class_weight="balanced_subsample",
        random_state=seed,
        n_jobs=n_jobs,
    )


def build_gradient_boosting(
    *,
    learning_rate: float = 0.1,
    max_iter: int = 200,
    max_leaf_nodes: int = 15,
    l2_regularization: float = 1.0,
    seed: int = 0,
) -> BaseEstimator:
    """Histogram gradient boosting with class-balanced weights (no internal early stopping).

    Early stopping is off on purpose: its validation split would be a random split of
    *windows*, mixing subjects; stop by ``max_iter`` or tune it subject-wise outside.

    Parameters
    ----------
    learning_rate, max_iter, max_leaf_nodes, l2_regularization
        As in :class:`sklearn.ensemble.HistGradientBoostingClassifier`.
    seed
        ``random_state`` of the booster.
    """
    _sklearn()
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        learning_rate=learning_rate,
        max_iter=max_iter,
        max_leaf_nodes=max_leaf_nodes,
        l2_regularization=l2_regularization,
        class_weight="balanced",
        early_stopping=False,
        random_state=seed,
    )


def build_bagging(
    *, n_estimators: int = 100, max_samples: float = 0.5, seed: int = 0, n_jobs: int = 1
) -> BaseEstimator:
    """Bagged class-balanced decision trees.

    Parameters
    ----------
    n_estimators, max_samples, n_jobs
        As in :class:`sklearn.ensemble.BaggingClassifier`.
    seed
        ``random_state`` of the ensemble.
    """
    _sklearn()
    from sklearn.ensemble import BaggingClassifier
    from sklearn.tree import DecisionTreeClassifier

    return BaggingClassifier(
        DecisionTreeClassifier(class_weight="balanced", min_samples_leaf=2),
        n_estimators=n_estimators,
        max_samples=max_samples,
        random_state=seed,
        n_jobs=n_jobs,
    )


def build_adaboost(
    *, n_estimators: int = 200, learning_rate: float = 0.5, max_depth: int = 2, seed: int = 0
) -> BaseEstimator:
    """AdaBoost (SAMME) on shallow class-balanced decision trees.

    Parameters
    ----------
    n_estimators, learning_rate
        As in :class:`sklearn.ensemble.AdaBoostClassifier`.
    max_depth
        Depth of each tree (1 = stumps).
    seed
        ``random_state`` of the ensemble.
    """
    _sklearn()
    from sklearn.ensemble import AdaBoostClassifier
    from sklearn.tree import DecisionTreeClassifier

    return AdaBoostClassifier(
        DecisionTreeClassifier(max_depth=max_depth, class_weight="balanced"),
        n_estimators=n_estimators,
        learning_rate=learning_rate,
        random_state=seed,
    )


#: Builder per classical model name (the registry in :mod:`emgdx.models` wraps these).
CLASSICAL_BUILDERS: dict[str, Callable[..., Any]] = {
    "svm": build_svm,
    "random_forest": build_random_forest,
    "gradient_boosting": build_gradient_boosting,
    "bagging": build_bagging,
    "adaboost": build_adaboost,
}
