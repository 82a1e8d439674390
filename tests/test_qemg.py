"""Quantitative EMG: motor-unit potentials found, aligned, templated and measured."""

from __future__ import annotations

import numpy as np
import pytest

from emgdx.errors import ConfigError
from emgdx.qemg import QEMG_NAMES, QemgConfig, analyse, summarise, turns_and_amplitude
from emgdx.represent import FeatureRepr
from emgdx.simulate import simulate_recording

FS = 6000.0


def _biphasic(p2p_uv: float, width_ms: float) -> np.ndarray:
    """A derivative-of-Gaussian MUP: two phases, ``p2p_uv`` peak to peak."""
    t = np.arange(-15, 15, 1e3 / FS)
    sigma = width_ms / 4
    shape = -t / sigma * np.exp(-0.5 * (t / sigma) ** 2)
    return shape / np.ptp(shape) * p2p_uv


def _train(
    template: np.ndarray, rate_hz: float, duration_s: float, rng: np.random.Generator
) -> np.ndarray:
    n = int(duration_s * FS)
    x = np.zeros(n)
    t = 0.02
    while t < duration_s - 0.03:
        start = int(t * FS)
        x[start : start + template.size] += template
        t += rng.normal(1 / rate_hz, 0.1 / rate_hz)
    return x


def test_one_unit_is_found_and_measured() -> None:
    rng = np.random.default_rng(0)
    x = _train(_biphasic(400, 8), 10, 3.0, rng) + rng.normal(0, 4, int(3 * FS))
    units = analyse(x, FS)
    assert len(units) == 1
    unit = units[0]
    assert 25 <= unit.n_discharges <= 32 and unit.firing_rate_hz == pytest.approx(10, rel=0.15)
    assert unit.amplitude_uv == pytest.approx(400, rel=0.05)
    assert unit.phases == 2 and unit.turns == 2 and not unit.satellite  # up, then down
    assert 5 <= unit.duration_ms <= 12


def test_two_units_of_other_size_and_shape_are_told_apart_and_a_satellite_seen() -> None:
    rng = np.random.default_rng(1)
    small = _biphasic(150, 5)
    big = _biphasic(900, 10)
    late = np.roll(_biphasic(120, 1.5), int(0.011 * FS))  # a time-locked late component
    big_with_satellite = big + late
    x = (
        _train(small, 12, 4.0, rng)
        + _train(big_with_satellite, 8, 4.0, rng)
        + rng.normal(0, 4, int(4 * FS))
    )
    units = sorted(analyse(x, FS), key=lambda u: u.amplitude_uv)
    assert len(units) == 2
    assert units[0].amplitude_uv == pytest.approx(150, rel=0.15)
    assert units[1].amplitude_uv == pytest.approx(900, rel=0.1)
    assert units[1].satellite and not units[0].satellite
    assert units[1].duration_ms > units[0].duration_ms


def test_noise_alone_has_no_motor_unit() -> None:
    x = np.random.default_rng(2).normal(0, 20, int(2 * FS))
    assert analyse(x, FS) == []
    assert analyse(np.zeros(1000), FS) == []
    summary = summarise(x, FS)
    assert summary.shape == (len(QEMG_NAMES),) and summary[0] == 0


def test_turns_count_reversals_beyond_the_step_only() -> None:
    period = 120  # samples
    t = np.arange(50 * period)
    tri = 200 * np.abs(((t / period) % 1.0) * 2 - 1)  # 0..200 µV triangle, 50 periods
    ripple = 15 * np.sin(2 * np.pi * t / 7)
    n, swing = turns_and_amplitude(tri + ripple, 100)
    assert n in (98, 99) and swing == pytest.approx(200, rel=0.15)
    assert turns_and_amplitude(tri, 250) == (0, 0.0)
    assert turns_and_amplitude(np.ones(2), 10) == (0, 0.0)


def test_simulated_units_match_the_ground_truth_and_move_with_disease() -> None:
    """MUPs found in simulated records against the simulator's noise-free units in view."""
    found: dict[str, list[tuple[float, float]]] = {}
    truth: dict[str, list[tuple[float, float]]] = {}
    for label in ("healthy", "neurogenic", "myopathy"):
        for seed in range(4):
            rec = simulate_recording(label, fs_hz=FS, duration_s=4.0, level="low", seed=seed)
            units = rec.truth.units
            real = units[
                (units["kind"] == "motor_unit")
                & (units["n_discharges"] >= 3)
                & (units["amplitude_uv"] >= 50)
            ]
            truth.setdefault(label, []).extend(
                zip(real["amplitude_uv"], real["duration_ms"], strict=True)
            )
            found.setdefault(label, []).extend(
                (u.amplitude_uv, u.duration_ms)
                for u in analyse(rec.recording.signal, FS)
                if not u.brief(QemgConfig())
            )
    amp = {k: float(np.median([a for a, _ in v])) for k, v in found.items()}
    dur = {k: float(np.median([d for _, d in v])) for k, v in found.items()}
    true_amp = {k: float(np.median([a for a, _ in v])) for k, v in truth.items()}
    assert all(len(v) >= 8 for v in found.values())
    assert amp["healthy"] == pytest.approx(true_amp["healthy"], rel=0.25)
    # the clinical directions the simulator builds in
    assert amp["neurogenic"] > amp["healthy"] > amp["myopathy"]
    assert dur["myopathy"] < dur["healthy"]


def test_config_checks_and_the_feature_group() -> None:
    with pytest.raises(ConfigError, match="min_correlation"):
        QemgConfig(min_correlation=1.5)
    with pytest.raises(ConfigError, match="core_ms"):
        QemgConfig(core_ms=40.0, epoch_ms=30.0)
    assert QemgConfig.from_json(QemgConfig(turn_uv=30.0).to_json()).turn_uv == 30.0
    rep = FeatureRepr(groups=("qemg", "time"))
    assert rep.feature_names[-len(QEMG_NAMES) :] == QEMG_NAMES
    rng = np.random.default_rng(3)
    windows = np.stack(
        [_train(_biphasic(400, 8), 10, 2.0, rng) + rng.normal(0, 4, int(2 * FS)) for _ in range(2)]
    ).astype(np.float32)
    x = rep.transform(windows, FS)["x"]
    assert x.shape == (2, len(rep.feature_names)) and np.isfinite(x).all()
    count = x[:, rep.feature_names.index("mup_count")]
    assert (count == 1).all()
