"""Window → record → subject aggregation of class probabilities.

Two rules, both reported:

``"mean"``
    The record's score for a class is the mean window probability; a subject's score is the
    mean of its records' scores (every record counts once, however many windows it has).
``"vote"``
    The record's score for a class is the share of its windows predicted as that class; a
    subject's score is the share of its records voted as that class. Ties go to the class
    with the higher mean probability.

Every table has one row per unit and the columns ``subject_id``, ``label`` (the original
label), ``y_true`` (target index for the task, -1 when unknown or outside the task),
``true`` (class name or ``None``), ``p_<class>`` scores, ``y_pred``, ``predicted`` and
``n_windows`` (record and subject tables), ``record_id`` (window and record tables),
``n_records`` (subject table) and ``level`` when the index has it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from emgdx.errors import ConfigError, SignalError
from emgdx.tasks import class_names as task_class_names
from emgdx.tasks import targets_of

__all__ = [
    "LEVELS",
    "METHODS",
    "aggregate",
    "aggregate_all",
    "bootstrap_interval",
    "score_columns",
    "unit_scores",
    "window_table",
]

Level = Literal["window", "record", "subject"]
Method = Literal["mean", "vote"]
#: Levels at which results are reported, finest first.
LEVELS: tuple[Level, ...] = ("window", "record", "subject")
#: Aggregation rules.
METHODS: tuple[Method, ...] = ("mean", "vote")


def score_columns(class_names: Sequence[str]) -> list[str]:
    """Names of the score columns, ``p_<class>``, in class order."""
    return [f"p_{c}" for c in class_names]


def _check_probs(probs: np.ndarray, n_rows: int, n_classes: int) -> np.ndarray:
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape != (n_rows, n_classes):
        raise SignalError(
            f"probabilities must have shape ({n_rows}, {n_classes}) to match the index and "
            f"task, got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise SignalError("probabilities contain NaN or infinite values")
    return arr


def _with_predictions(frame: pd.DataFrame, scores: np.ndarray, names: Sequence[str]) -> None:
    for j, cls in enumerate(names):
        frame[f"p_{cls}"] = scores[:, j]
    y_true = frame["y_true"].to_numpy()
    frame["true"] = [names[t] if t >= 0 else None for t in y_true]
    frame["y_pred"] = np.argmax(scores, axis=1).astype(np.int64)
    frame["predicted"] = [names[p] for p in frame["y_pred"]]


def window_table(probs: np.ndarray, index: pd.DataFrame, task: str = "3class") -> pd.DataFrame:
    """One row per window: ids, true target, probabilities and the argmax prediction.

    Parameters
    ----------
    probs
        ``[n_windows, n_classes]`` class probabilities in the task's class order.
    index
        The windows' index (``record_id``, ``subject_id``, ``label``; ``level`` if present).
    task
        One of :data:`emgdx.tasks.TASKS`.

    Returns
    -------
    pandas.DataFrame
    """
    names = task_class_names(task)
    arr = _check_probs(probs, len(index), len(names))
    keep_cols = [c for c in ("record_id", "subject_id", "label", "level") if c in index.columns]
    frame = index[keep_cols].reset_index(drop=True).astype({"record_id": str, "subject_id": str})
    frame["y_true"] = targets_of(frame["label"].to_list(), task)
    _with_predictions(frame, arr, names)
    return frame


def _one_value(frame: pd.DataFrame, key: str, column: str) -> pd.Series:
    """The single value of ``column`` per ``key`` group; raise if a group mixes values."""
    counts = frame.groupby(key, sort=True)[column].nunique(dropna=False)
    mixed = counts[counts > 1]
    if len(mixed):
        raise SignalError(
            f"{key} {list(mixed.index[:5])} mix several values of {column!r}; "
            "cannot aggregate a unit with conflicting metadata"
        )
    return frame.groupby(key, sort=True)[column].first()


def unit_scores(scores: np.ndarray, method: Method) -> np.ndarray:
    """What a unit averages over its members under ``method``: the members' probabilities
    (``"mean"``) or one vote per member for its top class (``"vote"``)."""
    arr = np.asarray(scores, dtype=np.float64)
    if method == "mean":
        return arr
    votes = np.zeros_like(arr)
    votes[np.arange(arr.shape[0]), np.argmax(arr, axis=1)] = 1.0
    return votes


def bootstrap_interval(
    scores: np.ndarray,
    method: Method = "mean",
    *,
    block: int = 1,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> np.ndarray:
    """Percentile interval ``[n_classes, 2]`` of a unit's score by resampling its members.

    Members (a record's windows, a subject's records) are resampled in blocks of ``block``
    consecutive ones (a moving-block bootstrap: overlapping windows are not independent), and
    the unit's score is recomputed by :func:`unit_scores` each time. A single member gives
    its own score as both bounds; none gives NaN.
    """
    arr = unit_scores(scores, method)
    n = arr.shape[0]
    if n == 0:
        return np.full((arr.shape[1] if arr.ndim == 2 else 0, 2), np.nan)
    if n == 1:
        return np.repeat(arr[0][:, None], 2, axis=1)
    block = max(1, min(block, n))
    n_blocks = math.ceil(n / block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - block + 1, size=(n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_boot, -1)[:, :n]
    means = arr[idx].mean(axis=1)  # [n_boot, n_classes]
    alpha = (1 - ci) / 2
    return np.quantile(means, [alpha, 1 - alpha], axis=0).T


def _group(
    frame: pd.DataFrame, key: str, names: Sequence[str], method: Method, carry: Sequence[str]
) -> pd.DataFrame:
    """Aggregate rows of ``frame`` (with ``p_<class>`` scores) into one row per ``key``."""
    scores = frame[score_columns(names)].to_numpy()
    keys, inverse = np.unique(frame[key].to_numpy(), return_inverse=True)
    n_units, n_cls = keys.size, len(names)
    counts = np.bincount(inverse, minlength=n_units).astype(np.float64)

    def unit_mean(values: np.ndarray) -> np.ndarray:
        total = np.zeros((n_units, n_cls))
        np.add.at(total, inverse, values)
        return total / counts[:, None]

    out_scores = unit_mean(unit_scores(scores, method))
    if method == "vote":
        # A vote share differs by at least 1/n between classes, far more than this nudge:
        # it only breaks exact ties, in favour of the higher mean probability.
        out_scores += 1e-9 * unit_mean(scores)
    out = pd.DataFrame({key: keys.astype(str)})
    for column in carry:
        if column in frame.columns:
            out[column] = _one_value(frame, key, column).reindex(keys).to_numpy()
    out["y_true"] = _one_value(frame, key, "y_true").reindex(keys).to_numpy().astype(np.int64)
    weight_col = "n_windows"
    out[weight_col] = (
        frame.groupby(key, sort=True)[weight_col].sum().reindex(keys).to_numpy()
        if weight_col in frame.columns
        else counts.astype(np.int64)
    )
    _with_predictions(out, out_scores, names)
    return out


def aggregate(
    probs: np.ndarray,
    index: pd.DataFrame,
    *,
    level: Level = "record",
    method: Method = "mean",
    task: str = "3class",
) -> pd.DataFrame:
    """Window probabilities → one table at ``level``.

    Parameters
    ----------
    probs
        ``[n_windows, n_classes]`` probabilities in the task's class order.
    index
        The windows' index table.
    level
        ``"window"``, ``"record"`` or ``"subject"`` (subjects via their records).
    method
        ``"mean"`` probability or majority ``"vote"`` (see the module docstring).
    task
        One of :data:`emgdx.tasks.TASKS`.

    Returns
    -------
    pandas.DataFrame
        One row per unit, sorted by its id (columns in the module docstring).

    Raises
    ------
    SignalError
        When shapes disagree, probabilities are not finite, or a record/subject carries
        conflicting labels.
    ConfigError
        For an unknown level, method or task.
    """
    if level not in LEVELS:
        raise ConfigError(f"unknown level {level!r}; choose one of {list(LEVELS)}")
    if method not in METHODS:
        raise ConfigError(f"unknown aggregation method {method!r}; choose one of {list(METHODS)}")
    names = task_class_names(task)
    windows = window_table(probs, index, task)
    if level == "window":
        return windows
    records = _group(windows, "record_id", names, method, carry=("subject_id", "label", "level"))
    if level == "record":
        return records
    # A subject may have records at several contraction levels: "level" stays per record.
    subjects = _group(records, "subject_id", names, method, carry=("label",))
    subjects.insert(
        subjects.columns.get_loc("n_windows") + 1,
        "n_records",
        records.groupby("subject_id", sort=True).size().reindex(subjects["subject_id"]).to_numpy(),
    )
    return subjects


def aggregate_all(
    probs: np.ndarray, index: pd.DataFrame, *, method: Method = "mean", task: str = "3class"
) -> dict[str, pd.DataFrame]:
    """:func:`aggregate` at every level: ``{"window": ..., "record": ..., "subject": ...}``."""
    return {lvl: aggregate(probs, index, level=lvl, method=method, task=task) for lvl in LEVELS}
