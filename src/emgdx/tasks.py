"""Classification tasks: which classes a model predicts and how window labels become targets.

Three tasks share one vocabulary (:data:`emgdx.recording.LABELS`):

``"3class"``
    healthy = 0, neurogenic = 1, myopathy = 2 (the order of ``LABELS``).
``"als_vs_rest"``
    neurogenic (ALS) = 1, healthy and myopathy = 0.
``"als_vs_healthy"``
    neurogenic (ALS) = 1, healthy = 0; myopathy windows are dropped (``keep`` is False).

Windows without a label (``None``, empty or unrecognised text) are always dropped, so that an
unlabelled recording can never be silently trained on as some class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

import numpy as np

from emgdx.errors import ConfigError
from emgdx.recording import LABELS, normalise_label

__all__ = [
    "TASKS",
    "Task",
    "check_task",
    "class_names",
    "encode_labels",
    "n_classes",
    "subject_balanced_weights",
    "targets_of",
]

Task = Literal["3class", "als_vs_rest", "als_vs_healthy"]
#: The supported tasks, in documentation order.
TASKS: tuple[Task, ...] = ("3class", "als_vs_rest", "als_vs_healthy")

# Class names per task, index = integer target. Binary tasks put the positive class (ALS) at 1
# so that "probability of class 1" is the ALS probability, as ROC-AUC code expects.
_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "3class": tuple(LABELS),
    "als_vs_rest": ("rest", "neurogenic"),
    "als_vs_healthy": ("healthy", "neurogenic"),
}

# Label -> target per task; a label missing from a task's map is dropped from that task.
_TARGETS: dict[str, dict[str | None, int]] = {
    "3class": {label: i for i, label in enumerate(LABELS)},
    "als_vs_rest": {"healthy": 0, "neurogenic": 1, "myopathy": 0},
    "als_vs_healthy": {"healthy": 0, "neurogenic": 1},
}


def check_task(task: str) -> Task:
    """Return ``task`` if it is one of :data:`TASKS`, else raise.

    Raises
    ------
    ConfigError
        When ``task`` is not a known task name.
    """
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {list(TASKS)}")
    return cast(Task, task)


def class_names(task: str) -> tuple[str, ...]:
    """Class names of ``task``, index = integer target.

    Parameters
    ----------
    task
        One of :data:`TASKS`.

    Returns
    -------
    tuple of str
        ``LABELS`` for ``"3class"``; ``("rest", "neurogenic")`` for ``"als_vs_rest"``;
        ``("healthy", "neurogenic")`` for ``"als_vs_healthy"``.
    """
    return _CLASS_NAMES[check_task(task)]


def n_classes(task: str) -> int:
    """Number of classes (model outputs) of ``task``."""
    return len(class_names(task))


def encode_labels(
    labels: Sequence[str | None] | np.ndarray, task: str
) -> tuple[np.ndarray, np.ndarray]:
    """Turn window/record labels into integer targets for ``task``.

    Parameters
    ----------
    labels
        One label per window, in :data:`~emgdx.recording.LABELS` vocabulary or free text that
        :func:`~emgdx.recording.normalise_label` understands; ``None``/NaN for unlabelled.
    task
        One of :data:`TASKS`.

    Returns
    -------
    y : numpy.ndarray of int64, shape (n_kept,)
        Targets of the kept windows only (index into :func:`class_names`).
    keep : numpy.ndarray of bool, shape (n,)
        Which input labels were kept: unlabelled windows, and myopathy windows under
        ``"als_vs_healthy"``, are False. Use it to select the matching inputs
        (``x[keep]``, ``groups[keep]``).

    Examples
    --------
    >>> y, keep = encode_labels(["healthy", "myopathy", "neurogenic", None], "als_vs_healthy")
    >>> y.tolist(), keep.tolist()
    ([0, 1], [True, False, True, False])
    """
    y = targets_of(labels, task)
    keep = y >= 0
    return y[keep], keep


def targets_of(labels: Sequence[str | None] | np.ndarray, task: str) -> np.ndarray:
    """The target of every label for ``task``, -1 where :func:`encode_labels` drops it."""
    targets = _TARGETS[check_task(task)]
    # normalise_label gives None for None, for NaN from a pandas column and for unknown text
    return np.array([targets.get(normalise_label(raw), -1) for raw in labels], dtype=np.int64)


def subject_balanced_weights(y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per-window weights under which every class weighs the same and, within a class, every
    subject weighs the same, however many windows it has; the mean weight is 1.

    Windows per subject differ by more than tenfold between hospitals (11 s records, up to 30
    per subject, at one; 5 s records, one or two per patient, at the other). Balancing classes
    by window counts alone lets the subjects with most windows, mostly one hospital's, set the
    decision; the evaluation counts subjects.

    Examples
    --------
    >>> subject_balanced_weights(np.array([0, 0, 0, 1]), np.array(["a", "a", "b", "c"])).tolist()
    [0.5, 0.5, 1.0, 2.0]
    """
    y = np.asarray(y, dtype=np.int64)
    groups = np.asarray(groups).astype(str)
    if y.shape != groups.shape:
        raise ConfigError(f"{y.size} targets but {groups.size} subject ids")
    # one key per (class, subject): a subject with windows of two classes counts in both
    keys = np.char.add(np.char.add(y.astype(str), "\x00"), groups)
    _, key_idx, per_key = np.unique(keys, return_inverse=True, return_counts=True)
    classes, class_idx = np.unique(y, return_inverse=True)
    subjects_per_class = np.array(
        [np.unique(groups[y == c]).size for c in classes], dtype=np.float64
    )
    w = 1.0 / (per_key[key_idx] * subjects_per_class[class_idx] * classes.size)
    return w * (y.size / w.sum())
