"""Quantitative EMG measures of a record and reference ranges learned from healthy subjects.

A clinician reads a needle-EMG study against normal values: MUAP amplitude, duration, phases,
firing and interference-pattern measures. emgdx computes such measures per window with the
hand-crafted feature set (:mod:`emgdx.represent.features`), summarises each record by the median
over its windows, and learns reference ranges from the *healthy subjects of the training data*
(each subject weighted equally, so one subject with many records does not set the norm). The
ranges are stored with the pipeline and used by the clinical report. They are population ranges
of this measurement chain (needle, muscle, preprocessing), not textbook normal values; ranges are
kept per contraction level when the training data say which level each record is.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from emgdx.errors import ConfigError
from emgdx.recording import Windows

__all__ = [
    "MEASURES",
    "compare_to_reference",
    "record_measures",
    "reference_ranges",
]

#: Measure -> (label, unit) shown in reports, in clinical reading order.
MEASURES: dict[str, tuple[str, str]] = {
    "spike_p2p_uv": ("MUAP amplitude (peak to peak)", "µV"),
    "spike_duration_ms": ("MUAP duration", "ms"),
    "spike_phases": ("MUAP phases", ""),
    "spike_rate_hz": ("MUAP discharges", "per s"),
    "turns_per_s": ("turns", "per s"),
    "rms_uv": ("RMS amplitude", "µV"),
    "p99_abs_uv": ("peak amplitude (99th percentile of |x|)", "µV"),
    "zc_per_s": ("zero crossings", "per s"),
    "mean_freq_hz": ("mean frequency", "Hz"),
    "median_freq_hz": ("median frequency", "Hz"),
}

#: Central coverage of a reference range (2.5th to 97.5th percentile).
COVERAGE = 0.95
# Windows per record that enter a record's median: plenty for a median, and bounded cost in fit.
_MAX_WINDOWS_PER_RECORD = 6


def _feature_repr() -> Any:
    from emgdx.represent import make_representation

    return make_representation("features")


def _subsample(windows: Windows, per_record: int) -> Windows:
    """At most ``per_record`` windows per record, evenly spread over the record."""
    idx = windows.index.reset_index(drop=True)
    keep: list[int] = []
    for rows in idx.groupby("record_id", sort=False).indices.values():
        rows = np.asarray(rows)
        if rows.size > per_record:
            rows = rows[np.linspace(0, rows.size - 1, per_record).round().astype(np.int64)]
        keep.extend(int(r) for r in rows)
    return windows.select(np.sort(np.asarray(keep, dtype=np.int64)))


def record_measures(
    windows: Windows, *, max_windows_per_record: int | None = _MAX_WINDOWS_PER_RECORD
) -> pd.DataFrame:
    """Median of each measure over each record's windows (µV windows, before normalisation).

    Returns
    -------
    pandas.DataFrame
        ``record_id``, ``subject_id``, ``label``, ``level`` (when known), ``n_windows`` and one
        column per :data:`MEASURES` entry.
    """
    if len(windows) == 0:
        return pd.DataFrame(columns=["record_id", "subject_id", "n_windows", *MEASURES])
    use = windows if max_windows_per_record is None else _subsample(windows, max_windows_per_record)
    rep = _feature_repr()
    x = rep.transform(use.data, use.fs_hz)["x"]
    names = list(rep.feature_names)
    frame = pd.DataFrame(x[:, [names.index(m) for m in MEASURES]], columns=list(MEASURES))
    # A window without any spike has no MUAP shape: leave it out of the shape medians.
    no_spike = x[:, names.index("spike_count")] <= 0
    for shape in ("spike_p2p_uv", "spike_duration_ms", "spike_phases"):
        frame.loc[no_spike, shape] = np.nan
    meta = [c for c in ("record_id", "subject_id", "label", "level") if c in use.index.columns]
    frame[meta] = use.index[meta].reset_index(drop=True)
    grouped = frame.groupby("record_id", sort=False)
    out = grouped[list(MEASURES)].median()
    out.insert(0, "n_windows", grouped.size())
    for column in reversed(meta[1:]):
        out.insert(0, column, grouped[column].first())
    return out.reset_index()


def _ranges(per_record: pd.DataFrame) -> dict[str, Any]:
    # Each subject counts once: per subject median of its records, then percentiles over subjects
    # would leave 5 numbers for N2001; instead weight records by 1 / (records of their subject).
    weights = 1.0 / per_record.groupby("subject_id")["record_id"].transform("count").to_numpy()
    lo_q, hi_q = (1 - COVERAGE) / 2, 1 - (1 - COVERAGE) / 2
    out: dict[str, Any] = {}
    for measure in MEASURES:
        values = per_record[measure].to_numpy(np.float64)
        ok = np.isfinite(values)
        if ok.sum() < 3:
            continue
        v, w = values[ok], weights[ok]
        order = np.argsort(v)
        v, w = v[order], w[order]
        cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
        out[measure] = {
            "low": float(np.interp(lo_q, cdf, v)),
            "median": float(np.interp(0.5, cdf, v)),
            "high": float(np.interp(hi_q, cdf, v)),
            "n_records": int(ok.sum()),
            "n_subjects": int(per_record.loc[ok, "subject_id"].nunique()),
        }
    return out


def reference_ranges(windows: Windows, *, healthy_label: str = "healthy") -> dict[str, Any]:
    """Reference ranges of :data:`MEASURES` from the healthy records among ``windows``.

    Parameters
    ----------
    windows
        Training windows (µV, with ``label`` in the index).
    healthy_label
        The label of reference subjects.

    Returns
    -------
    dict
        ``{"available": bool, "coverage": 0.95, "by_level": {level: {measure: {low, median,
        high, n_records, n_subjects}}}, "n_subjects": ..., "reason": ...}``; level ``"all"``
        pools every record.
    """
    if "label" not in windows.index.columns:
        return {"available": False, "reason": "training windows carry no labels"}
    healthy = windows.select(windows.index["label"].astype(str).eq(healthy_label).to_numpy())
    if len(healthy) == 0:
        return {"available": False, "reason": f"no {healthy_label} subject in the training data"}
    per_record = record_measures(healthy)
    by_level: dict[str, Any] = {"all": _ranges(per_record)}
    if "level" in per_record.columns:
        for level, rows in per_record.groupby("level"):
            if rows["subject_id"].nunique() >= 2:
                by_level[str(level)] = _ranges(rows)
    return {
        "available": True,
        "coverage": COVERAGE,
        "by_level": by_level,
        "n_subjects": int(per_record["subject_id"].nunique()),
        "n_records": len(per_record),
        "measures": {k: {"label": v[0], "unit": v[1]} for k, v in MEASURES.items()},
    }


def compare_to_reference(
    measures: pd.Series | dict[str, float], reference: dict[str, Any] | None, level: str | None
) -> pd.DataFrame:
    """One row per measure: value, reference range and whether it lies outside.

    Parameters
    ----------
    measures
        A record's measures (a row of :func:`record_measures`).
    reference
        :func:`reference_ranges` output (or None).
    level
        The record's contraction level; the pooled ranges are used when none match.

    Returns
    -------
    pandas.DataFrame
        ``measure``, ``label``, ``unit``, ``value``, ``low``, ``high``, ``median``, ``flag``
        (``"low"``, ``"high"``, ``""`` or ``"n/a"``), ``reference_level``.
    """
    if reference is not None and not isinstance(reference, dict):
        raise ConfigError("reference must be the dict from reference_ranges()")
    by_level = (reference or {}).get("by_level", {}) if (reference or {}).get("available") else {}
    chosen = level if level in by_level else ("all" if "all" in by_level else None)
    ranges = by_level.get(chosen, {}) if chosen else {}
    rows = []
    for measure, (label, unit) in MEASURES.items():
        value = float(measures.get(measure, math.nan))
        rng = ranges.get(measure)
        if rng is None or not math.isfinite(value):
            flag = "n/a"
            low = high = median = math.nan
        else:
            low, high, median = rng["low"], rng["high"], rng["median"]
            flag = "low" if value < low else "high" if value > high else ""
        rows.append(
            {
                "measure": measure,
                "label": label,
                "unit": unit,
                "value": value,
                "low": low,
                "high": high,
                "median": median,
                "flag": flag,
                "reference_level": chosen or "",
            }
        )
    return pd.DataFrame(rows)
