"""Subject-wise splits: leave-one-subject-out, grouped k-fold, leave-one-site-out, site-stratified
k-fold and inner validation splits.

Records of one subject are strongly correlated, so every split here keeps all windows of a
subject on one side. The only exception, :func:`leaky_random_window_split`, exists to *show*
how much a window-wise split inflates results; it says so in its name and warns every time.

A split is a pair of integer position arrays ``(train_idx, test_idx)`` into the windows.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from emgdx.errors import ConfigError, EmgdxError, require

__all__ = [
    "LeakyEvaluationWarning",
    "Split",
    "SubjectLeakError",
    "assert_subject_disjoint",
    "grouped_kfold",
    "inner_validation_split",
    "leaky_random_window_split",
    "leave_one_site_out",
    "loso",
    "site_stratified_kfold",
    "subject_labels",
]

#: ``(train positions, test positions)`` into the windows.
Split = tuple[np.ndarray, np.ndarray]
#: One value per window (a subject id or a class): a sequence or a 1-D array.
PerWindow = Sequence[object] | np.ndarray


class LeakyEvaluationWarning(UserWarning):
    """Windows of one subject end up on both sides of a split: results will be inflated."""


class SubjectLeakError(EmgdxError, ValueError):
    """A subject appears in both the training and the test side of a split."""


def _as_groups(groups: PerWindow) -> np.ndarray:
    arr = np.asarray(groups).astype(str)
    if arr.ndim != 1:
        raise ConfigError(f"groups must be 1-D (one subject id per window), got {arr.shape}")
    if arr.size == 0:
        raise ConfigError("groups is empty: nothing to split")
    return arr


def subject_labels(groups: PerWindow, y: PerWindow) -> pd.Series:
    """The class of every subject: the most frequent ``y`` among its windows.

    Parameters
    ----------
    groups
        Subject id per window.
    y
        Class (any hashable) per window.

    Returns
    -------
    pandas.Series
        Indexed by subject id (sorted), one class each.
    """
    g = _as_groups(groups)
    labels = np.asarray(y)
    if labels.shape[0] != g.shape[0]:
        raise ConfigError(f"y has {labels.shape[0]} entries for {g.shape[0]} groups")
    frame = pd.DataFrame({"g": g, "y": labels})
    # mode() sorts ties, so the choice is deterministic.
    return frame.groupby("g")["y"].agg(lambda s: s.mode().iloc[0])


def loso(groups: PerWindow) -> list[Split]:
    """Leave-one-subject-out: one fold per subject, that subject's windows are the test set.

    Parameters
    ----------
    groups
        Subject id per window.

    Returns
    -------
    list of (train_idx, test_idx)
        One split per subject, in sorted subject order.

    Raises
    ------
    ConfigError
        With fewer than two subjects (nothing left to train on).
    """
    g = _as_groups(groups)
    subjects = np.unique(g)
    if subjects.size < 2:
        raise ConfigError(f"leave-one-subject-out needs at least 2 subjects, got {subjects.size}")
    positions = np.arange(g.size)
    return [(positions[g != s], positions[g == s]) for s in subjects]


def grouped_kfold(groups: PerWindow, y: PerWindow, k: int, seed: int) -> list[Split]:
    """Subject-wise k-fold, stratified by the subjects' classes where the counts allow.

    Uses :class:`sklearn.model_selection.StratifiedGroupKFold` (shuffled with ``seed``), which
    keeps every subject in one fold and balances class proportions across folds.

    Parameters
    ----------
    groups
        Subject id per window.
    y
        Class per window (used for stratification only).
    k
        Number of folds, at most the number of subjects.
    seed
        Shuffling seed.

    Returns
    -------
    list of (train_idx, test_idx)

    Raises
    ------
    ConfigError
        When ``k < 2`` or there are fewer subjects than folds.
    """
    g = _as_groups(groups)
    labels = np.asarray(y)
    if labels.shape[0] != g.shape[0]:
        raise ConfigError(f"y has {labels.shape[0]} entries for {g.shape[0]} groups")
    n_subjects = np.unique(g).size
    if k < 2 or k > n_subjects:
        raise ConfigError(f"grouped k-fold needs 2 <= k <= {n_subjects} subjects, got k={k}")
    splitter = require("sklearn.model_selection", "subject-wise k-fold").StratifiedGroupKFold(
        n_splits=k, shuffle=True, random_state=seed
    )
    with warnings.catch_warnings():
        # sklearn warns when a class has fewer *windows* than folds; the grouping is what
        # matters here and it is honoured either way.
        warnings.simplefilter("ignore", UserWarning)
        folds = list(splitter.split(np.zeros(g.size), labels, g))
    return [(np.asarray(tr), np.asarray(te)) for tr, te in folds if len(te) > 0]


def _as_sites(sites: PerWindow, n: int) -> np.ndarray:
    arr = np.asarray(sites, dtype=object)
    if arr.shape != (n,):
        raise ConfigError(f"sites must have one entry per window ({n}), got shape {arr.shape}")
    missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in arr])
    if missing.any():
        raise ConfigError(
            f"{int(missing.sum())} window(s) have no site: read one folder per site "
            "(read_cohort([...])) or give the manifest a site column"
        )
    return arr.astype(str)


def leave_one_site_out(groups: PerWindow, sites: PerWindow) -> list[Split]:
    """Train on the other sites, test on one: one fold per site (both directions for two).

    The number a new hospital will see. ``groups`` (subject per window) is checked too: a
    subject recorded at two sites would leak, and raises :class:`SubjectLeakError`.
    """
    g = _as_groups(groups)
    s = _as_sites(sites, g.size)
    names = np.unique(s)
    if names.size < 2:
        raise ConfigError(f"leave-one-site-out needs at least 2 sites, got {names.tolist()}")
    positions = np.arange(g.size)
    splits = [(positions[s != name], positions[s == name]) for name in names]
    for train, test in splits:
        assert_subject_disjoint(g[train], g[test])
    return splits


def site_stratified_kfold(
    groups: PerWindow, y: PerWindow, sites: PerWindow, k: int, seed: int
) -> list[Split]:
    """Pooled subject-wise k-fold over several sites, stratified by site and class together,
    so that every fold tests each site's classes in about their proportions (DESIGN.md)."""
    g = _as_groups(groups)
    s = _as_sites(sites, g.size)
    labels = np.asarray(y)
    if labels.shape[0] != g.shape[0]:
        raise ConfigError(f"y has {labels.shape[0]} entries for {g.shape[0]} groups")
    strata = np.char.add(np.char.add(s, "|"), labels.astype(str))
    return grouped_kfold(g, strata, k, seed)


def inner_validation_split(
    groups: PerWindow, y: PerWindow | None, fraction: float, seed: int
) -> Split:
    """Hold out a fraction of the (training) subjects for early stopping or tuning.

    Call it on the training fold only. Subjects are drawn per class so that the validation
    set holds every class that has at least two subjects, and the training side always keeps
    at least one subject of every class.

    Parameters
    ----------
    groups
        Subject id per window of the training fold.
    y
        Class per window, or ``None`` to draw subjects without stratification.
    fraction
        Share of subjects (per class) to hold out, in ``(0, 1)``; rounded, at least one.
    seed
        Seed of the draw.

    Returns
    -------
    (train_idx, val_idx)
        Positions into the given windows.

    Raises
    ------
    ConfigError
        When ``fraction`` is outside ``(0, 1)`` or there are fewer than two subjects.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation fraction must be in (0, 1), got {fraction}")
    g = _as_groups(groups)
    subjects = np.unique(g)
    if subjects.size < 2:
        raise ConfigError(
            f"an inner validation split needs at least 2 subjects, got {subjects.size}"
        )
    rng = np.random.default_rng(seed)
    if y is None:
        strata = {0: list(subjects)}
    else:
        per_subject = subject_labels(g, y)
        strata = {c: list(per_subject.index[per_subject == c]) for c in sorted(set(per_subject))}
    val_subjects: list[str] = []
    for members in strata.values():
        if len(members) < 2:
            continue  # keep a lone subject of a class for training
        n_val = min(max(1, round(fraction * len(members))), len(members) - 1)
        val_subjects.extend(rng.choice(np.asarray(members), size=n_val, replace=False).tolist())
    if not val_subjects:
        # Every class has one subject: hold out one subject at random all the same.
        val_subjects = [str(rng.choice(subjects))]
    is_val = np.isin(g, val_subjects)
    positions = np.arange(g.size)
    return positions[~is_val], positions[is_val]


def leaky_random_window_split(n: int, seed: int, *, n_splits: int = 5) -> list[Split]:
    """Window-wise random k-fold that ignores subjects. **Leaky, for demonstration only.**

    Windows of one subject (even overlapping windows of one record) land on both sides, so a
    model can recognise the subject instead of the disease. Every call emits a
    :class:`LeakyEvaluationWarning`. Use it to show how much such a split inflates results,
    never to report performance.

    Parameters
    ----------
    n
        Number of windows.
    seed
        Shuffling seed.
    n_splits
        Number of folds.

    Returns
    -------
    list of (train_idx, test_idx)
    """
    warnings.warn(
        "leaky_random_window_split puts windows of the same subject in training and test: "
        "its results are inflated and must not be reported as performance",
        LeakyEvaluationWarning,
        stacklevel=2,
    )
    if n < n_splits or n_splits < 2:
        raise ConfigError(f"cannot cut {n} windows into {n_splits} folds")
    model_selection = require("sklearn.model_selection", "subject-wise k-fold")
    splitter = model_selection.KFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [(np.asarray(tr), np.asarray(te)) for tr, te in splitter.split(np.zeros(n))]


def assert_subject_disjoint(train_groups: PerWindow, test_groups: PerWindow) -> None:
    """Raise if any subject is on both sides of a split.

    Raises
    ------
    SubjectLeakError
        Naming (up to five of) the shared subjects.
    """
    shared = sorted(
        set(np.asarray(train_groups).astype(str)) & set(np.asarray(test_groups).astype(str))
    )
    if shared:
        raise SubjectLeakError(
            f"{len(shared)} subject(s) in both training and test: {shared[:5]}; "
            "splits must be subject-wise"
        )
