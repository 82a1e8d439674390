"""Quantitative EMG as a clinician reads it: motor-unit potentials (MUPs) found in the signal,
and interference-pattern measures.

For one signal (a window or a record, in µV, after the front end):

1. **Detection.** Candidate discharges are peaks of ``|x|`` above ``detect_noise_k`` robust
   noise floors (median absolute deviation / 0.6745) and ``min_peak_uv``, at least
   ``min_gap_ms`` apart (:func:`scipy.signal.find_peaks`).
2. **Alignment.** Every candidate's epoch (``epoch_ms`` centred on its peak) is cut out;
   candidates too close to either end are left out.
3. **Templates.** Epochs are grouped greedily, largest first, by shape (correlation of their
   central ``core_ms`` of at least ``min_correlation`` at the best shift within
   ``max_shift_ms``) and size (peak-to-peak within a factor
   ``max_size_ratio``), which is the multi-MUP analysis a clinical system runs. A group with at
   least ``min_discharges`` members is a motor unit; its **template** is the median of its
   members (the median ignores other units' discharges that overlap a few of them).
4. **Measures per MUP** (on the template): peak-to-peak **amplitude** (µV); **duration**
   (ms) from the first to the last departure from the baseline band, the band being
   ``max(baseline_noise_k`` noise floors of the template, ``baseline_fraction`` of its
   amplitude) and gaps shorter than ``join_ms`` bridged; **phases** (baseline crossings
   within the duration + 1, counting excursions beyond the band); **turns** (changes of
   direction by at least ``turn_uv``); a **satellite** when a separate component beyond the
   band follows the main one after an isoelectric gap; and the unit's **firing rate**.
   Potentials shorter than ``min_mup_ms`` are not counted as MUPs but as brief,
   fibrillation-like potentials (their discharge rate is a measure of its own).
5. **Interference pattern**: turns per second (changes of direction by at least
   ``ip_turn_uv``, Willison's count) and mean amplitude between turns, the turns/amplitude
   pair of clinical interference-pattern analysis.

Summaries over the MUPs of a signal (:data:`QEMG_NAMES`) are the ``"qemg"`` feature group of
:class:`emgdx.represent.features.FeatureRepr`, so every model, explanation and report that
reads features can use them. Physiological measures of this kind should depend less on the
amplifier than the raw waveform does; ``docs/multisite.md`` measures how much less.

Expected direction (e.g. the ehealthlab MUAP table in ``../shared/data``): neurogenic MUPs are
longer and larger, with more phases and satellites; myopathic ones shorter, smaller and
polyphasic, with a dense low-amplitude interference pattern.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import ndimage, signal

from emgdx.config import JsonConfig, check_fields
from emgdx.errors import ConfigError
from emgdx.preprocess import true_runs

__all__ = [
    "QEMG_NAMES",
    "MotorUnit",
    "QemgConfig",
    "analyse",
    "measure",
    "noise_floor",
    "summarise",
    "turns_and_amplitude",
]

#: Summary measures of one signal, in this order (0 where a signal has no MUP).
QEMG_NAMES: tuple[str, ...] = (
    "mup_count",
    "mup_discharge_rate_hz",
    "mup_amplitude_uv",
    "mup_duration_ms",
    "mup_phases",
    "mup_turns",
    "mup_polyphasic_fraction",
    "mup_satellite_fraction",
    "brief_potential_rate_hz",
    "ip_turns_per_s",
    "ip_amplitude_per_turn_uv",
)
#: MAD of Gaussian noise is 0.6745 sigma: the robust noise floor is MAD / this.
MAD_TO_SIGMA = 0.6745
# More than this many phases makes a MUP polyphasic (the clinical convention).
_POLYPHASIC_PHASES = 4


@dataclass(frozen=True)
class QemgConfig(JsonConfig):
    """Settings of the MUP analysis (see the module docstring for what each one bounds)."""

    config_name: ClassVar[str] = "QEMG config"

    detect_noise_k: float = 5.0
    min_peak_uv: float = 20.0
    min_gap_ms: float = 3.0
    epoch_ms: float = 30.0
    core_ms: float = 10.0
    max_shift_ms: float = 0.5
    min_correlation: float = 0.85
    max_size_ratio: float = 1.4
    min_discharges: int = 3
    baseline_noise_k: float = 3.0
    baseline_fraction: float = 0.05
    join_ms: float = 1.5
    turn_uv: float = 25.0
    ip_turn_uv: float = 100.0
    min_mup_ms: float = 3.0

    def __post_init__(self) -> None:
        problems = check_fields(
            self,
            positive="detect_noise_k min_gap_ms epoch_ms core_ms max_shift_ms max_size_ratio "
            "baseline_noise_k turn_uv ip_turn_uv",
            non_negative="min_peak_uv baseline_fraction join_ms min_mup_ms",
            fraction="min_correlation",
            positive_int="min_discharges",
        )
        if not problems and self.core_ms / 2 + self.max_shift_ms > self.epoch_ms / 2:
            problems.append(
                f"core_ms / 2 + max_shift_ms must fit in epoch_ms / 2, got {self.core_ms}, "
                f"{self.max_shift_ms} and {self.epoch_ms}"
            )
        if not problems and self.max_size_ratio < 1:
            problems.append(f"max_size_ratio must be >= 1, got {self.max_size_ratio}")
        if problems:
            raise ConfigError(f"{self.config_name}: " + "; ".join(problems))


@dataclass(frozen=True)
class MotorUnit:
    """One motor unit found in a signal: its template and the clinician's measures of it."""

    template_uv: np.ndarray
    n_discharges: int
    firing_rate_hz: float
    amplitude_uv: float
    duration_ms: float
    phases: int
    turns: int
    satellite: bool

    @property
    def polyphasic(self) -> bool:
        return self.phases > _POLYPHASIC_PHASES

    def brief(self, config: QemgConfig) -> bool:
        """Shorter than a MUP (``min_mup_ms``): a fibrillation-like potential, not a unit."""
        return self.duration_ms < config.min_mup_ms


def noise_floor(x: np.ndarray) -> float:
    """Robust noise floor (µV): median absolute deviation / 0.6745."""
    return float(np.median(np.abs(x - np.median(x))) / MAD_TO_SIGMA)


def _samples(ms: float, fs_hz: float) -> int:
    return max(1, round(ms * 1e-3 * fs_hz))


def _epochs(
    x: np.ndarray, fs_hz: float, cfg: QemgConfig, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """Epochs ``[n, 2 * half + 1]`` of the discharges and their aligned sample positions,
    largest peak-to-peak first.

    Each detected peak is re-aligned on the steepest slope within ``core_ms`` of it: a MUP has
    one main fast transition but often two peaks of similar size, and aligning on the slope
    keeps every discharge of a unit on the same point (and counts a discharge once).
    """
    half = _samples(cfg.epoch_ms / 2, fs_hz)
    core = _samples(cfg.core_ms / 2, fs_hz)
    height = max(cfg.detect_noise_k * noise, cfg.min_peak_uv)
    peaks, _ = signal.find_peaks(np.abs(x), height=height, distance=_samples(cfg.min_gap_ms, fs_hz))
    peaks = peaks[(peaks >= half + core) & (peaks < x.size - half - core)]
    if peaks.size == 0:
        return np.zeros((0, 2 * half + 1)), np.zeros(0, dtype=np.int64)
    slope = np.abs(np.diff(x, append=x[-1]))
    around = peaks[:, None] + np.arange(-core, core + 1)[None, :]
    points = around[np.arange(peaks.size), np.argmax(slope[around], axis=1)]
    # One discharge, one epoch: the largest peak claims its aligned point, and smaller peaks
    # of the same discharge (its other phase, its tail) that align within core_ms go.
    taken = np.zeros(x.size, dtype=bool)
    aligned = []
    for i in np.argsort(-np.abs(x[peaks]), kind="stable"):
        if not taken[points[i]]:
            aligned.append(points[i])
            taken[max(0, points[i] - core) : points[i] + core + 1] = True
    aligned_at = np.sort(np.asarray(aligned))
    epochs = x[aligned_at[:, None] + np.arange(-half, half + 1)[None, :]]
    order = np.argsort(-np.ptp(epochs, axis=1), kind="stable")
    return epochs[order], aligned_at[order]


def _group(
    epochs: np.ndarray, fs_hz: float, cfg: QemgConfig
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Groups of similar epochs (greedy, largest first): ``(member indices, shifts)``, the
    shift (samples) that aligns each member best with its group.

    Written by hand: a clinical multi-MUP grouping compares each discharge with the units
    found so far, at small shifts (alignment on a noisy slope jitters by a sample or two),
    which no library clustering does with both a shape and a size criterion.
    """
    centre, core = epochs.shape[1] // 2, _samples(cfg.core_ms / 2, fs_hz)
    max_lag = _samples(cfg.max_shift_ms, fs_hz)
    lags = np.arange(-max_lag, max_lag + 1)
    # the central core of every epoch at every shift: [n_lags, n, width]
    cores = np.stack([epochs[:, centre - core + k : centre + core + 1 + k] for k in lags])
    cores = cores - cores.mean(axis=2, keepdims=True)
    norms = np.linalg.norm(cores, axis=2)
    unit_cores = cores / np.where(norms > 0, norms, 1.0)[..., None]
    sizes = np.ptp(cores[max_lag], axis=1)  # the core's size: a neighbour does not count
    groups: list[list[int]] = []
    shifts: list[list[int]] = []
    means: list[np.ndarray] = []
    for i in range(len(epochs)):
        best, best_r, best_k = -1, cfg.min_correlation, max_lag
        for g, mean in enumerate(means):
            ratio = sizes[i] / max(float(np.ptp(mean)), 1e-12)
            if not 1 / cfg.max_size_ratio <= ratio <= cfg.max_size_ratio:
                continue
            # unit-length cores: these are correlations with the group's mean at each shift
            r = unit_cores[:, i, :] @ mean / max(float(np.linalg.norm(mean)), 1e-12)
            k = int(np.argmax(r))
            if r[k] >= best_r:
                best, best_r, best_k = g, float(r[k]), k
        if best < 0:
            groups.append([i])
            shifts.append([0])
            means.append(cores[max_lag, i].copy())
        else:
            groups[best].append(i)
            shifts[best].append(int(lags[best_k]))
            means[best] += (cores[best_k, i] - means[best]) / len(groups[best])
    return [(np.asarray(g), np.asarray(k)) for g, k in zip(groups, shifts, strict=True)]


def _without_locked_components(units: list[np.ndarray], half: int, jitter: int) -> list[np.ndarray]:
    """Units (discharge positions, largest unit first) less those time-locked to a larger one:
    a late component (satellite) or another phase of a unit can be detected on its own, but
    then follows that unit's discharges at an almost constant latency (spread within
    ``jitter`` samples), which an independent unit does not."""
    kept: list[np.ndarray] = []
    for times in units:
        locked = False
        for parent in kept:
            gaps = times[:, None] - parent[None, :]
            nearest = gaps[np.arange(times.size), np.abs(gaps).argmin(axis=1)]
            near = np.abs(nearest) <= half
            if near.mean() >= 0.8 and np.std(nearest[near]) <= jitter:
                locked = True
                break
        if not locked:
            kept.append(times)
    return kept


def turns_and_amplitude(x: np.ndarray, step_uv: float) -> tuple[int, float]:
    """Willison turns: reversals of direction after a swing of at least ``step_uv``.

    A turn is confirmed when the signal has come back ``step_uv`` from the extreme it reached
    (hysteresis), so ripples smaller than ``step_uv`` neither count nor split a swing. Returns
    the number of turns and their mean swing (µV) from the previous turn.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size < 3:
        return 0, 0.0
    # Only local extrema can be turns: walk those (a few hundred per second of EMG).
    d = np.diff(x)
    inner = np.flatnonzero(d[:-1] * d[1:] < 0) + 1
    values = x[np.concatenate(([0], inner, [x.size - 1]))]
    swings: list[float] = []
    low = high = float(values[0])
    pivot = extreme = 0.0
    direction = 0
    for v in map(float, values[1:]):
        if direction == 0:  # no swing yet: wait for the first one of step_uv
            low, high = min(low, v), max(high, v)
            if v - low >= step_uv:
                direction, pivot, extreme = 1, low, v
            elif high - v >= step_uv:
                direction, pivot, extreme = -1, high, v
        elif direction * (v - extreme) > 0:
            extreme = v  # the swing goes on
        elif abs(extreme - v) >= step_uv:
            swings.append(abs(extreme - pivot))
            direction, pivot, extreme = -direction, extreme, v
    return len(swings), float(np.mean(swings)) if swings else 0.0


def measure(template: np.ndarray, fs_hz: float, noise: float, cfg: QemgConfig) -> dict[str, float]:
    """Amplitude, duration, phases, turns and satellite of one MUP template."""
    centre = template.size // 2
    amplitude_guess = float(np.ptp(template))
    band = max(cfg.baseline_noise_k * noise, cfg.baseline_fraction * amplitude_guess)
    outside = np.abs(template) > band
    join = _samples(cfg.join_ms, fs_hz)
    if join > 1:  # bridge short dips back into the band within one component
        outside = ndimage.binary_closing(outside, structure=np.ones(join + 1, dtype=bool))
    outside[centre] = True
    runs = list(zip(*true_runs(outside), strict=True))
    main = next(r for r in runs if r[0] <= centre < r[1])
    start, stop = main
    part = template[start:stop]
    signs = np.sign(part) * (np.abs(part) > band)
    nonzero = signs[signs != 0]
    phases = int(np.count_nonzero(np.diff(nonzero))) + 1 if nonzero.size else 1
    turns, _ = turns_and_amplitude(part, cfg.turn_uv)
    satellite = any(s >= stop + join for s, _ in runs)
    return {
        "amplitude_uv": float(np.ptp(part)),
        "duration_ms": (stop - start) / fs_hz * 1e3,
        "phases": float(phases),
        "turns": float(turns),
        "satellite": float(satellite),
    }


def analyse(x: np.ndarray, fs_hz: float, config: QemgConfig | None = None) -> list[MotorUnit]:
    """The motor units found in one signal (µV), largest first (module docstring)."""
    cfg = config or QemgConfig()
    x = np.asarray(x, dtype=np.float64)
    noise = noise_floor(x)
    if not noise > 0:
        return []
    epochs, at = _epochs(x, fs_hz, cfg, noise)
    if len(epochs) < cfg.min_discharges:
        return []
    half = epochs.shape[1] // 2
    positions = [
        np.sort(at[members] + shift)
        for members, shift in _group(epochs, fs_hz, cfg)
        if members.size >= cfg.min_discharges
    ]
    positions = [p[(p >= half) & (p < x.size - half)] for p in positions]
    positions = _without_locked_components(
        [p for p in positions if p.size >= cfg.min_discharges], half, _samples(0.5, fs_hz)
    )
    units = []
    duration_s = x.size / fs_hz
    for times in positions:
        template = np.median(x[times[:, None] + np.arange(-half, half + 1)[None, :]], axis=0)
        # the median of n discharges has about 1.25 / sqrt(n) of the signal's noise
        m = measure(template, fs_hz, 1.25 * noise / np.sqrt(times.size), cfg)
        units.append(
            MotorUnit(
                template_uv=template,
                n_discharges=int(times.size),
                firing_rate_hz=times.size / duration_s,
                amplitude_uv=m["amplitude_uv"],
                duration_ms=m["duration_ms"],
                phases=int(m["phases"]),
                turns=int(m["turns"]),
                satellite=bool(m["satellite"]),
            )
        )
    return units


def summarise(x: np.ndarray, fs_hz: float, config: QemgConfig | None = None) -> np.ndarray:
    """:data:`QEMG_NAMES` of one signal: medians over its MUPs and the interference pattern."""
    cfg = config or QemgConfig()
    found = analyse(x, fs_hz, cfg)
    units = [u for u in found if not u.brief(cfg)]
    duration_s = len(x) / fs_hz
    brief_rate = sum(u.n_discharges for u in found if u.brief(cfg)) / duration_s
    n_turns, per_turn = turns_and_amplitude(np.asarray(x, dtype=np.float64), cfg.ip_turn_uv)
    if units:
        shape = [
            float(np.median([getattr(u, name) for u in units]))
            for name in ("amplitude_uv", "duration_ms", "phases", "turns")
        ]
        rate = sum(u.n_discharges for u in units) / duration_s
        fractions = [
            float(np.mean([u.polyphasic for u in units])),
            float(np.mean([u.satellite for u in units])),
        ]
    else:
        shape, rate, fractions = [0.0] * 4, 0.0, [0.0, 0.0]
    return np.array(
        [len(units), rate, *shape, *fractions, brief_rate, n_turns / duration_s, per_turn],
        dtype=np.float64,
    )
