"""A patient's course across visits: timeline, trend with uncertainty, alerts, plot.

Each visit contributes its latest analysis: the visit-level class probabilities and the mean of
each quantitative EMG measure. A trend is the least-squares slope per year of a quantity against
visit date, with a 95 % confidence interval from the t distribution (needs three visits or
more). Alerts follow fixed rules (:data:`RULES`), chosen before any patient data were seen and
meant to prompt a look, not to decide anything:

* a significant rise of the neurogenic (or myopathic) probability: slope CI above zero and
  slope ≥ ``min_slope_per_year``;
* a jump between the last two visits of at least ``min_jump`` in that probability;
* a change of the predicted class between the last two visits;
* a significant trend (CI excluding zero) in MUAP amplitude or duration (information only).

The jump and class-change rules compare the last two visits only: alerts describe where the
patient stands now (what changed since the previous visit, and the course over all visits),
not every change in the history, which the timeline shows.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "RULES",
    "TimelinePoint",
    "Trend",
    "alerts",
    "quantity_label",
    "timeline_plot",
    "trend",
    "trends",
]

#: Alert thresholds (probability units; per year for slopes).
RULES: dict[str, float] = {"min_slope_per_year": 0.10, "min_jump": 0.25}

#: Measures whose trends are followed (besides the class probabilities).
TRACKED_MEASURES = ("spike_p2p_uv", "spike_duration_ms", "spike_phases", "rms_uv")

#: Probabilities whose rise is alarming (disease classes).
DISEASE_CLASSES = ("neurogenic", "myopathy")


@dataclass(frozen=True)
class TimelinePoint:
    visit_id: str
    date: dt.date
    analysis_id: str
    predicted: str | None
    probs: dict[str, float | None]
    intervals: dict[str, list[float | None]]
    measures: dict[str, float | None]


@dataclass(frozen=True)
class Trend:
    quantity: str
    label: str
    unit: str
    slope_per_year: float | None
    ci95: tuple[float, float] | None
    n_visits: int
    direction: str  # "rising", "falling", "stable" or "unknown" (fewer than two visits)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ci95": list(self.ci95) if self.ci95 else None}


def _years(dates: Sequence[dt.date]) -> np.ndarray:
    first = min(dates)
    return np.array([(d - first).days / 365.25 for d in dates])


def quantity_label(quantity: str) -> str:
    """Words for a timeline quantity: ``p_neurogenic`` → "neurogenic probability"."""
    from emgdx.reference import MEASURES

    if quantity.startswith("p_"):
        return f"{quantity[2:]} probability"
    return MEASURES.get(quantity, (quantity, ""))[0]


def trend(
    quantity: str, unit: str, dates: Sequence[dt.date], values: Sequence[float | None]
) -> Trend:
    """Least-squares slope per year with a 95 % CI (t distribution, n - 2 degrees of freedom)."""
    from scipy import stats

    label = quantity_label(quantity)
    pairs = [
        (d, v) for d, v in zip(dates, values, strict=True) if v is not None and math.isfinite(v)
    ]
    n = len(pairs)
    if n < 2 or len({d for d, _ in pairs}) < 2:
        return Trend(quantity, label, unit, None, None, n, "unknown")
    x = _years([d for d, _ in pairs])
    y = np.array([v for _, v in pairs], dtype=float)
    fit = stats.linregress(x, y)
    slope = float(fit.slope)
    if n < 3:  # two points: a slope but no uncertainty
        direction = "rising" if slope > 0 else "falling" if slope < 0 else "stable"
        return Trend(quantity, label, unit, slope, None, n, direction)
    half = float(stats.t.ppf(0.975, n - 2) * fit.stderr)
    lo, hi = slope - half, slope + half
    direction = "rising" if lo > 0 else "falling" if hi < 0 else "stable"
    return Trend(quantity, label, unit, slope, (lo, hi), n, direction)


def trends(points: Sequence[TimelinePoint], class_names: Sequence[str]) -> list[Trend]:
    from emgdx.reference import MEASURES

    dates = [p.date for p in points]
    out = [
        trend(f"p_{name}", "probability", dates, [p.probs.get(name) for p in points])
        for name in class_names
    ]
    for measure in TRACKED_MEASURES:
        values = [p.measures.get(measure) for p in points]
        if any(v is not None for v in values):
            out.append(trend(measure, MEASURES[measure][1], dates, values))
    return out


def alerts(points: Sequence[TimelinePoint], found: Sequence[Trend]) -> list[dict[str, str]]:
    """The alerts of :data:`RULES` for this course (most important first)."""
    out: list[dict[str, str]] = []

    def add(quantity: str, severity: str, message: str) -> None:
        out.append({"quantity": quantity, "severity": severity, "message": message})

    by_name = {t.quantity: t for t in found}
    for name in DISEASE_CLASSES:
        t = by_name.get(f"p_{name}")
        if (
            t
            and t.ci95
            and t.ci95[0] > 0
            and (t.slope_per_year or 0) >= RULES["min_slope_per_year"]
        ):
            add(
                t.quantity,
                "warning",
                f"{name.capitalize()} probability rising: {t.slope_per_year:+.2f} per year "
                f"(95% CI {t.ci95[0]:+.2f} to {t.ci95[1]:+.2f}) over {t.n_visits} visits.",
            )
    if len(points) >= 2:
        prev, last = points[-2], points[-1]
        for name in DISEASE_CLASSES:
            a, b = prev.probs.get(name), last.probs.get(name)
            if a is not None and b is not None and b - a >= RULES["min_jump"]:
                add(
                    f"p_{name}",
                    "warning",
                    f"{name.capitalize()} probability rose from {a:.2f} ({prev.date}) to "
                    f"{b:.2f} ({last.date}).",
                )
        if prev.predicted and last.predicted and prev.predicted != last.predicted:
            add(
                "predicted",
                "warning" if last.predicted in DISEASE_CLASSES else "info",
                f"Predicted class changed from {prev.predicted} ({prev.date}) to "
                f"{last.predicted} ({last.date}).",
            )
    from emgdx.reference import MEASURES

    for measure in ("spike_p2p_uv", "spike_duration_ms"):
        t = by_name.get(measure)
        if t and t.ci95 and t.direction in ("rising", "falling"):
            label, unit = MEASURES[measure]
            add(
                measure,
                "info",
                f"{label} {t.direction}: {t.slope_per_year:+.3g} {unit} per year "
                f"(95% CI {t.ci95[0]:+.3g} to {t.ci95[1]:+.3g}).",
            )
    return out


def timeline_plot(
    points: Sequence[TimelinePoint], found: Sequence[Trend], class_names: Sequence[str]
) -> bytes:
    """PNG: class probabilities (with intervals and trend lines) and the main measures."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from emgdx.reference import MEASURES

    colours = {"healthy": "#2b8a3e", "neurogenic": "#c92a2a", "myopathy": "#1c7ed6"}
    fig = Figure(figsize=(9, 6.4), layout="constrained")
    ax_p, ax_a, ax_d = fig.subplots(3, 1, sharex=True, height_ratios=[2, 1, 1])
    dates = [p.date for p in points]
    by_name = {t.quantity: t for t in found}
    for name in class_names:
        c = colours.get(name)
        # dtype float: a missing value (None) becomes NaN
        ys = np.array([p.probs.get(name) for p in points], dtype=float)
        bounds = [(p.intervals.get(name) or [None, None])[:2] for p in points]
        lo, hi = np.array(bounds, dtype=float).reshape(-1, 2).T
        err = np.vstack([ys - lo, hi - ys])
        err = np.where(np.isfinite(err), err, 0.0)
        ax_p.errorbar(dates, ys, yerr=err, marker="o", capsize=3, color=c, label=name)
        t = by_name.get(f"p_{name}")
        if t and t.slope_per_year is not None and len(points) >= 2:
            x = _years(dates)
            ok = np.isfinite(ys)
            intercept = float(np.mean(ys[ok]) - t.slope_per_year * np.mean(x[ok]))
            ax_p.plot(
                dates, intercept + t.slope_per_year * x, "--", color=c, alpha=0.6, linewidth=1
            )
    ax_p.set_ylim(-0.02, 1.02)
    ax_p.set_ylabel("model probability")
    if class_names:  # a patient without analysed visits has no classes to name
        ax_p.legend(loc="upper left", fontsize=8, ncols=len(class_names))
    ax_p.set_title(
        "Visit-level probabilities (bars: bootstrap interval; dashed: trend)", fontsize=9
    )
    for ax, measure in ((ax_a, "spike_p2p_uv"), (ax_d, "spike_duration_ms")):
        label, unit = MEASURES[measure]
        ys = np.array([p.measures.get(measure) for p in points], dtype=float)
        ax.plot(dates, ys, marker="s", color="#495057")
        ax.set_ylabel(f"{unit}", fontsize=8)
        ax.set_title(label, fontsize=9)
    for ax in (ax_p, ax_a, ax_d):
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
