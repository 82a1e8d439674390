"""Is a record like what the model was trained on? The training distribution and its score.

Every fitted :class:`~emgdx.pipeline.Pipeline` keeps a :class:`TrainingDistribution` of its
training windows and saves it in ``pipeline.json``. It describes the windows by hand-crafted
features that any model can be judged by, whatever it reads itself (``time``, ``spectral`` and
``muap`` groups of :class:`emgdx.represent.features.FeatureRepr`: amplitude, zero crossings,
spectrum, spike shapes), so that a CNN, a random forest and an ONNX export are all checked
the same way.

The score is a class-conditional Mahalanobis distance (Lee et al., NeurIPS 2018, there on a
network's embedding): features are put on a log scale where they are positive and
standardised by the training medians and spreads, each class gets its mean, all classes share
one covariance (Ledoit-Wolf shrinkage, :class:`sklearn.covariance.LedoitWolf`), and a window's
score is its distance to the nearest class mean. A record's score is the median over up to
six windows spread evenly over it (:func:`representative_windows`; a few odd windows do not make
a record odd), the same when fitting and when scoring, and it bounds the cost on long records.

The threshold is chosen **subject-wise** on the training subjects: the distribution is refitted
without each group of subjects (grouped k-fold), their records are scored, and the threshold is
the ``quantile`` (99 %) of those held-out scores, so about one record in a hundred from new
subjects of the training hospitals exceeds it. A record above the threshold is flagged "unlike
the training data"; far above it (``refuse_factor`` times, 2) it is not interpretable: nothing
the model saw resembles it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from emgdx.errors import ConfigError, SignalError

__all__ = ["OOD_GROUPS", "TrainingDistribution", "fit_distribution", "representative_windows"]

#: Feature groups the distribution is described by.
OOD_GROUPS: tuple[str, ...] = ("time", "spectral", "muap")
#: Windows per record used to fit the distribution (spread evenly over the record): enough
#: for the median, and it keeps the cost of fitting bounded on a large training set.
_MAX_WINDOWS_PER_RECORD = 6
_FOLDS = 5


def _features(data: np.ndarray, fs_hz: float) -> tuple[np.ndarray, tuple[str, ...]]:
    from emgdx.represent.features import FeatureRepr

    rep = FeatureRepr(groups=OOD_GROUPS)
    x = rep.transform(np.asarray(data, dtype=np.float32), fs_hz)["x"].astype(np.float64)
    return x, rep.feature_names


@dataclass
class TrainingDistribution:
    """The training windows' feature distribution and the record-level threshold.

    Attributes
    ----------
    feature_names
        Columns of the description.
    log_features
        Which columns are taken on a log scale (positive in all training windows).
    centre, scale
        Per-column median and spread (after the log), from the training windows.
    class_means
        ``[n_classes, n_features]`` standardised class means.
    precision
        Inverse of the shared (shrunk) covariance.
    threshold
        Record score above which a record is unlike the training data.
    refuse_factor
        A record scoring more than ``refuse_factor * threshold`` is not interpretable.
    held_out
        How the threshold was chosen: quantile, folds, subjects and records scored, and the
        held-out scores' median and maximum.
    """

    feature_names: tuple[str, ...]
    log_features: np.ndarray
    centre: np.ndarray
    scale: np.ndarray
    class_means: np.ndarray
    precision: np.ndarray
    threshold: float
    refuse_factor: float = 2.0
    held_out: dict[str, Any] = field(default_factory=dict)

    # ---- scoring ------------------------------------------------------------------------------

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        z = np.array(x, dtype=np.float64)
        logged = self.log_features
        z[:, logged] = np.log(np.maximum(z[:, logged], 1e-9))
        z = (z - self.centre) / self.scale
        # A non-finite feature (a silent window) is as far out as the clip allows.
        return np.clip(np.nan_to_num(z, nan=50.0, posinf=50.0, neginf=-50.0), -50.0, 50.0)

    def score_features(self, x: np.ndarray) -> np.ndarray:
        """Each window's distance to the nearest class mean (from its feature row)."""
        z = self._standardise(x)
        best = np.full(z.shape[0], np.inf)
        for mean in self.class_means:
            d = z - mean
            best = np.minimum(best, np.einsum("ij,jk,ik->i", d, self.precision, d))
        return np.sqrt(np.maximum(best, 0.0))

    def score_windows(self, data: np.ndarray, fs_hz: float) -> np.ndarray:
        """Each window's score (``data``: prepared windows ``[n, T]``)."""
        if len(data) == 0:
            return np.zeros(0)
        x, names = _features(data, fs_hz)
        if names != self.feature_names:
            raise SignalError("the feature set changed since this distribution was fitted")
        return self.score_features(x)

    def score_records(self, scores: np.ndarray, record_ids: np.ndarray) -> dict[str, float]:
        """``record_id -> median window score``."""
        frame = pd.DataFrame({"record_id": np.asarray(record_ids).astype(str), "s": scores})
        return {str(k): float(v) for k, v in frame.groupby("record_id")["s"].median().items()}

    def verdict(self, score: float) -> str:
        """``"typical"``, ``"unusual"`` (above the threshold) or ``"alien"`` (refused)."""
        if not math.isfinite(score) or score > self.refuse_factor * self.threshold:
            return "alien"
        return "unusual" if score > self.threshold else "typical"

    # ---- saving -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "class-conditional Mahalanobis distance on hand-crafted features",
            "groups": list(OOD_GROUPS),
            "feature_names": list(self.feature_names),
            "log_features": self.log_features.astype(bool).tolist(),
            "centre": self.centre.tolist(),
            "scale": self.scale.tolist(),
            "class_means": self.class_means.tolist(),
            "precision": self.precision.tolist(),
            "threshold": self.threshold,
            "refuse_factor": self.refuse_factor,
            "held_out": self.held_out,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> TrainingDistribution:
        try:
            names = tuple(str(n) for n in doc["feature_names"])
            k = len(names)
            out = cls(
                feature_names=names,
                log_features=np.asarray(doc["log_features"], dtype=bool).reshape(k),
                centre=np.asarray(doc["centre"], dtype=np.float64).reshape(k),
                scale=np.asarray(doc["scale"], dtype=np.float64).reshape(k),
                class_means=np.asarray(doc["class_means"], dtype=np.float64).reshape(-1, k),
                precision=np.asarray(doc["precision"], dtype=np.float64).reshape(k, k),
                threshold=float(doc["threshold"]),
                refuse_factor=float(doc.get("refuse_factor", 2.0)),
                held_out=dict(doc.get("held_out", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid training distribution: {exc}") from exc
        if not (out.threshold > 0 and np.all(out.scale > 0)):
            raise ConfigError("invalid training distribution: non-positive threshold or scale")
        return out


def _fit(x: np.ndarray, y: np.ndarray) -> TrainingDistribution:
    from sklearn.covariance import LedoitWolf

    logged = np.all(x > 0, axis=0)
    z = np.array(x, dtype=np.float64)
    z[:, logged] = np.log(z[:, logged])
    centre = np.median(z, axis=0)
    q75, q25 = np.percentile(z, [75, 25], axis=0)
    scale = (q75 - q25) / 1.349
    scale = np.where(scale > 1e-9, scale, np.maximum(z.std(axis=0), 1e-6))
    z = (z - centre) / scale
    classes = np.unique(y)
    means = np.array([z[y == c].mean(axis=0) for c in classes])
    residual = z - means[np.searchsorted(classes, y)]
    precision = LedoitWolf(assume_centered=True).fit(residual).precision_
    return TrainingDistribution(tuple(), logged, centre, scale, means, precision, threshold=1.0)


def representative_windows(index: pd.DataFrame) -> np.ndarray:
    """Positions of at most ``_MAX_WINDOWS_PER_RECORD`` windows per record, spread evenly."""
    keep: list[np.ndarray] = []
    rec = index["record_id"].astype(str).to_numpy()
    for r in pd.unique(rec):
        pos = np.flatnonzero(rec == r)
        if pos.size > _MAX_WINDOWS_PER_RECORD:
            pos = pos[np.linspace(0, pos.size - 1, _MAX_WINDOWS_PER_RECORD).round().astype(int)]
        keep.append(pos)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def fit_distribution(
    data: np.ndarray,
    fs_hz: float,
    index: pd.DataFrame,
    y: np.ndarray,
    *,
    quantile: float = 0.99,
    refuse_factor: float = 2.0,
    seed: int = 0,
) -> TrainingDistribution:
    """Describe the training windows and choose the threshold subject-wise.

    Parameters
    ----------
    data
        Prepared training windows ``[n, T]`` (what the front end gives the representation).
    fs_hz
        Their rate.
    index
        Their index (``record_id`` and ``subject_id``).
    y
        Their class.
    quantile
        Quantile of the held-out subjects' record scores that becomes the threshold.
    refuse_factor
        Multiple of the threshold beyond which a record is not interpretable.
    seed
        Seed of the subject folds.
    """
    from sklearn.model_selection import GroupKFold

    if not 0.5 <= quantile < 1:
        raise ConfigError(f"quantile must be in [0.5, 1), got {quantile}")
    pos = representative_windows(index)
    if pos.size < 10:
        raise SignalError(f"a training distribution needs at least 10 windows, got {pos.size}")
    x, names = _features(np.asarray(data)[pos], fs_hz)
    yy = np.asarray(y)[pos]
    sub = index.iloc[pos]
    subjects = sub["subject_id"].astype(str).to_numpy()
    records = sub["record_id"].astype(str).to_numpy()
    held: list[float] = []
    n_folds = min(_FOLDS, np.unique(subjects).size)
    if n_folds >= 2:
        # Shuffled subject folds (GroupKFold's shuffle takes a seed from scikit-learn 1.6 on;
        # mapping subjects to random ranks first works with every version).
        rng = np.random.default_rng(seed)
        uniq = np.unique(subjects)
        rank = dict(zip(uniq, rng.permutation(uniq.size), strict=True))
        groups = np.array([rank[s] for s in subjects])
        for train, test in GroupKFold(n_folds).split(x, yy, groups):
            if np.unique(yy[train]).size < 1:
                continue
            part = _fit(x[train], yy[train])
            scores = part.score_features(x[test])
            held.extend(part.score_records(scores, records[test]).values())
    dist = _fit(x, yy)
    dist.feature_names = names
    dist.refuse_factor = float(refuse_factor)
    if held:
        dist.threshold = float(np.quantile(held, quantile))
    else:  # one subject: no held-out subject to learn from; its own records' spread
        own = dist.score_records(dist.score_features(x), records)
        dist.threshold = float(np.max(list(own.values())) * 1.5)
    dist.held_out = {
        "quantile": quantile,
        "folds": n_folds,
        "n_subjects": int(np.unique(subjects).size),
        "n_records": len(held),
        "median": float(np.median(held)) if held else None,
        "max": float(np.max(held)) if held else None,
        "windows_per_record": _MAX_WINDOWS_PER_RECORD,
    }
    return dist
