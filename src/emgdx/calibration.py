"""Calibrated probabilities: temperature scaling fitted on held-out training subjects, and the
measures of calibration (expected calibration error, reliability tables).

A model's probabilities are *calibrated* when, of the records it calls ALS with probability
0.8, about 80 % are ALS. Models trained on few subjects are usually over-confident: a random
forest's vote shares and a network's softmax both reach 1.00 on records they get wrong.
Temperature scaling (Guo et al., ICML 2017) divides the log-probabilities by one number
``T`` fitted on data the model did not learn from; ``T > 1`` softens them. emgdx fits ``T`` on
**held-out training subjects** (never on test subjects): the subjects of the early-stopping
split for a torch model, grouped inner folds for a classical one
(:meth:`emgdx.pipeline.Pipeline.fit`). It is fitted at the *record* level, where a clinician
reads the probability: window probabilities are tempered, then averaged per record, and the
negative log-likelihood of the records' true classes is minimised.

The expected calibration error (ECE) is the mean gap between confidence and accuracy over
``n_bins`` equal-width confidence bins, weighted by the bins' counts (top-label ECE).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from emgdx.errors import SignalError

__all__ = [
    "expected_calibration_error",
    "fit_temperature",
    "record_probs",
    "reliability_table",
    "temper",
]

#: Added to every probability before tempering, so that a class a random forest gave no vote
#: can still receive some probability when ``T > 1`` (a power of 0 stays 0).
PROB_FLOOR = 1e-3
_T_RANGE = (0.05, 50.0)


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``probs ** (1 / T)``, renormalised (after :data:`PROB_FLOOR`); ``T = 1`` only floors."""
    p = np.asarray(probs, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    logp = np.log(p + PROB_FLOOR) / float(temperature)
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=1, keepdims=True)


def record_probs(
    probs: np.ndarray, record_ids: np.ndarray, y: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean window probability per record (records in order of first appearance), and each
    record's class (the first window's) when ``y`` is given."""
    ids = pd.Series(np.asarray(record_ids).astype(str))
    codes, uniques = pd.factorize(ids)
    counts = np.bincount(codes, minlength=len(uniques)).astype(np.float64)
    sums = np.zeros((len(uniques), probs.shape[1]))
    np.add.at(sums, codes, probs)
    rec_y = None
    if y is not None:
        first = pd.Series(np.arange(codes.size)).groupby(codes).first().to_numpy()
        rec_y = np.asarray(y)[first]
    return sums / counts[:, None], rec_y


def fit_temperature(probs: np.ndarray, y: np.ndarray, record_ids: np.ndarray) -> float:
    """The temperature minimising the record-level negative log-likelihood.

    Parameters
    ----------
    probs
        Window probabilities ``[n, n_classes]`` of held-out subjects' windows.
    y
        Each window's class index.
    record_ids
        Each window's record.
    """
    from scipy.optimize import minimize_scalar

    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(y) or len(p) == 0:
        raise SignalError(f"calibration needs probabilities [n, k] and n labels, got {p.shape}")
    codes, _ = pd.factorize(pd.Series(np.asarray(record_ids).astype(str)))

    def nll(log_t: float) -> float:
        rec, rec_y = record_probs(temper(p, math.exp(log_t)), codes, y)
        assert rec_y is not None
        return float(-np.mean(np.log(rec[np.arange(len(rec)), rec_y] + 1e-12)))

    lo, hi = (math.log(v) for v in _T_RANGE)
    best = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
    return float(math.exp(best.x))


def reliability_table(probs: np.ndarray, y: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Per confidence bin: ``bin_low``, ``bin_high``, ``n``, ``confidence`` (mean top
    probability) and ``accuracy`` (share whose top class is right); empty bins left out."""
    p = np.asarray(probs, dtype=np.float64)
    conf = p.max(axis=1)
    right = (p.argmax(axis=1) == np.asarray(y)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = which == b
        if m.any():
            rows.append(
                {
                    "bin_low": edges[b],
                    "bin_high": edges[b + 1],
                    "n": int(m.sum()),
                    "confidence": float(conf[m].mean()),
                    "accuracy": float(right[m].mean()),
                }
            )
    return pd.DataFrame(rows, columns=["bin_low", "bin_high", "n", "confidence", "accuracy"])


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """Top-label ECE: mean |accuracy - confidence| over the bins, weighted by their counts."""
    table = reliability_table(probs, y, n_bins)
    if table.empty:
        return math.nan
    gap = (table["accuracy"] - table["confidence"]).abs()
    return float((gap * table["n"]).sum() / table["n"].sum())
