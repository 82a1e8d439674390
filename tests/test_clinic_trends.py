"""Trends across visits (slope and CI against an independent computation) and alert rules."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from emgdx.clinic.trends import RULES, TimelinePoint, alerts, timeline_plot, trend, trends

NAMES = ("healthy", "neurogenic", "myopathy")


def _points(
    neuro: list[float], days: list[int], amp: list[float] | None = None
) -> list[TimelinePoint]:
    start = dt.date(2025, 1, 1)
    out = []
    for i, (p, d) in enumerate(zip(neuro, days, strict=True)):
        rest = (1 - p) / 2
        probs = {"healthy": rest, "neurogenic": p, "myopathy": rest}
        out.append(
            TimelinePoint(
                visit_id=f"v{i}",
                date=start + dt.timedelta(days=d),
                analysis_id=f"a{i}",
                predicted=max(probs, key=probs.__getitem__),
                probs=probs,
                intervals={n: [max(0.0, v - 0.1), min(1.0, v + 0.1)] for n, v in probs.items()},
                measures={"spike_p2p_uv": amp[i]} if amp else {},
            )
        )
    return out


def test_slope_and_interval_match_an_independent_fit() -> None:
    rng = np.random.default_rng(0)
    days = [0, 90, 200, 380, 500, 640]
    years = np.array(days) / 365.25
    y = 0.2 + 0.3 * years + rng.normal(0, 0.03, len(days))
    t = trend(
        "p_neurogenic",
        "probability",
        [dt.date(2025, 1, 1) + dt.timedelta(days=d) for d in days],
        list(y),
    )
    # statsmodels-free reference: the normal equations and the t quantile for n - 2 = 4 dof.
    X = np.column_stack([np.ones_like(years), years])
    beta, res, *_ = np.linalg.lstsq(X, y, rcond=None)
    sigma2 = res[0] / (len(y) - 2)
    se = np.sqrt(sigma2 * np.linalg.inv(X.T @ X)[1, 1])
    assert t.slope_per_year == pytest.approx(beta[1], rel=1e-9)
    assert t.ci95 is not None
    assert t.ci95[1] - t.slope_per_year == pytest.approx(2.7764451 * se, rel=1e-6)
    assert t.direction == "rising" and t.n_visits == 6


def test_missing_values_and_too_few_visits() -> None:
    dates = [dt.date(2025, 1, 1), dt.date(2025, 6, 1), dt.date(2026, 1, 1)]
    assert trend("x", "", dates[:1], [0.5]).direction == "unknown"
    assert trend("x", "", dates, [None, 0.5, float("nan")]).slope_per_year is None
    two = trend("x", "", dates, [0.2, None, 0.6])
    assert two.ci95 is None and two.direction == "rising" and two.n_visits == 2
    same_day = trend("x", "", [dates[0], dates[0]], [0.1, 0.9])
    assert same_day.slope_per_year is None


def test_rising_neurogenic_probability_raises_an_alert() -> None:
    pts = _points([0.15, 0.3, 0.45, 0.62], [0, 120, 250, 400])
    found = trends(pts, NAMES)
    messages = [a["message"] for a in alerts(pts, found)]
    assert any(m.startswith("Neurogenic probability rising") for m in messages)


def test_stable_course_raises_no_alert() -> None:
    pts = _points([0.2, 0.22, 0.18, 0.21], [0, 120, 250, 400])
    assert alerts(pts, trends(pts, NAMES)) == []


def test_a_jump_between_two_visits_is_flagged_even_without_a_trend() -> None:
    jump = RULES["min_jump"] + 0.05
    pts = _points([0.1, 0.1 + jump], [0, 30])
    found = trends(pts, NAMES)
    assert all(t.ci95 is None for t in found)
    messages = [a["message"] for a in alerts(pts, found)]
    assert any("rose from 0.10" in m for m in messages)
    assert any("Predicted class changed from healthy" in m for m in messages)
    small = _points([0.1, 0.1 + RULES["min_jump"] - 0.05], [0, 30])
    assert not any("rose from" in a["message"] for a in alerts(small, trends(small, NAMES)))


def test_measure_trend_is_information_only() -> None:
    pts = _points([0.2, 0.2, 0.2, 0.2], [0, 100, 200, 300], amp=[400.0, 520.0, 640.0, 760.0])
    found = alerts(pts, trends(pts, NAMES))
    assert [a["severity"] for a in found] == ["info"] and "MUAP amplitude" in found[0]["message"]


def test_timeline_plot_is_a_png_even_with_gaps() -> None:
    pts = _points([0.2, 0.5, 0.7], [0, 100, 300], amp=[300.0, float("nan"), 500.0])
    pts[1].measures["spike_p2p_uv"] = None
    png = timeline_plot(pts, trends(pts, NAMES), NAMES)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
