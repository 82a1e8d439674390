"""Synthetic concentric-needle EMG with known ground truth (healthy, neurogenic, myopathic).

The simulator gives emgdx its embedded default cohort (``emgdx demo`` needs no download) and
the ground truth that explainability checks need: which discharges, of which motor units, carry
the disease signature.

Model, in the order the signal is built
---------------------------------------
1. **Motor-unit pool per subject.** A patch of muscle cross-section holds ``n_units`` motor
   units (MUs) with territory centres spread uniformly and circular territories 2-3.5 mm in
   radius. Recruitment thresholds (fraction of maximal excitation) are spread exponentially
   (Henneman's size principle as modelled by Fuglevand et al., 1993): many small low-threshold
   units, few large high-threshold ones; the number of fibres of a unit grows with its threshold.
   Each fibre has a position, a diameter (which sets its conduction velocity and the size of its
   potential) and an end-plate position.
2. **Disease remodels the pool** (before any record is drawn, so all records of a subject share
   it). *Neurogenic* (ALS): a severity-dependent fraction of MUs dies; surviving units whose
   territory covers an orphaned fibre adopt it by collateral sprouting (reinnervation), so the
   survivors have more fibres packed in the same territory (fibre-type grouping), and the adopted
   fibres are reached through immature, slowly conducting sprouts (extra delay; a few with long
   delays give satellite potentials). Fibres that nobody adopts stay denervated.
   *Myopathic*: each unit loses a (patchy, unit-specific) fraction of its fibres; the survivors
   vary more in diameter (atrophic and hypertrophic fibres), hence in conduction velocity
   (2.2 + 0.05 D m/s, Håkansson 1956) and potential size; fibres split into thin daughters; and
   split, necrotic or regenerating fibres conduct over a short segment only.
3. **MUAP templates as a concentric needle sees them** (single-fibre potentials summed, after
   Nandedkar & Stålberg, simplified). Every fibre within 3 mm of the needle tip adds (a) a
   sharp spike whose size decays with a 0.3 mm length constant and whose width grows with
   distance (main phase 0.16 ms close to the needle; an exponential, not Gaussian, spectrum,
   so that a sum over many distances has the power-law spectrum of real needle EMG), and (b) a
   far field (the potential of a tripole travelling along the fibre, (2u² - 1)/(1 + u²)^5/2,
   3 ms time scale, 1 mm length constant, power-law tails) whose size grows with the fibre's
   cross-section and with its functional length. A fibre's arrival time is its end-plate-to-
   needle distance over its conduction velocity plus its sprout delay; the spikes of a unit are
   triphasic to nearly biphasic depending on where the needle sits along the fibres. So the
   amplitude comes from the few fibres within ~0.5 mm, the duration (the time the sum stays
   above 10 µV) from the number of fibres within ~2 mm and the phases from temporal dispersion:
   reinnervated units come out larger, longer and polyphasic, myopathic units smaller, shorter
   and polyphasic, without either being written in as a rule. Templates are rendered in the
   frequency domain (closed-form spectra times delays), so they are exactly band-limited.
   Each needle position (record) sees the pool from another place, so records of one subject
   show overlapping sets of units at different distances, as in real data.
4. **Firing.** The contraction level ("low" = 0.04, "moderate" = 0.1, or a number in (0, 1])
   is the excitation of the pool. A unit fires when the excitation exceeds its threshold, at a
   rate that starts at 6-8 Hz and rises by 40-50 Hz per unit of excitation to a 30 Hz
   ceiling; inter-spike intervals are gamma distributed with a coefficient of variation of
   0.1-0.2 (renewal process). Neurogenic units start faster (reduced recruitment: few units
   firing fast); myopathic units are recruited early (each unit makes less force, so more
   must fire for the same effort).
5. **Spontaneous activity.** Fibrillation potentials (bi/triphasic, initially positive,
   1-5 ms, 20-200 µV, very regular at 0.5-15 Hz), positive sharp waves (sharp positive
   deflection then a slow negative phase of ~10 ms) and fasciculations (irregular, Poisson
   discharges of whole surviving motor units) in neurogenic subjects; occasional fibrillations
   in myopathic ones (as in inflammatory myopathies).
6. **Recording chain.** Shapes are defined in physical time and pass a Gaussian anti-alias
   low-pass (20 dB down at Nyquist, never narrower than the amplifier's 10 kHz), so 4 kHz,
   10 kHz and 23437.5 Hz give MUAPs of the same physical duration. Instrumentation noise
   (white plus pink), baseline wander and power-line interference (50 or 60 Hz with a few
   harmonics) are added last.

Calibration: the constants marked "tuned" below were set so that low-level simulated records
reproduce the direction of every class difference that the real N2001 low-level records show
(amplitude: neurogenic > healthy > myopathy; mean and median frequency: myopathy > healthy >
neurogenic) and that the MUAP table of Pattichis et al. (1995) shows (duration and amplitude
neurogenic > healthy > myopathy; more phases in both diseases). ``tests/test_simulate.py``
checks this against the real data.

Between-subject variability: every subject draws its own pool size, fibre density, MUAP size
and width factors, needle-to-fibre gap, severity, noise, line-noise and wander levels
(:class:`SubjectParams`). Randomness flows from one seed through
:class:`numpy.random.SeedSequence` children, so the same seed gives bit-identical output and
each record's noise is drawn from its own stream (changing ``fs_hz`` does not change the MUAPs
or the firing).

Ground truth (:class:`GroundTruth`) comes with every record: every discharge (peak sample, unit,
kind), every unit in view (measured amplitude, duration, phases, turns, distance, fibre counts,
whether it carries the disease signature) and :meth:`GroundTruth.signature_mask`, the per-sample
mask of disease-signature stretches.

Not modelled: jitter and blocking of individual discharges, MUAP shape change along the
recording, needle movement, complex repetitive discharges, myotonia, myokymia.

References
----------
A.J. Fuglevand, D.A. Winter, A.E. Patla, "Models of recruitment and rate coding organization in
motor-unit pools", J. Neurophysiol. 70:2470-2488, 1993.
S.D. Nandedkar, E.V. Stålberg, D.B. Sanders, "Simulation techniques in electromyography",
IEEE Trans. Biomed. Eng. 32:775-785, 1985.
A. Hamilton-Wright, D.W. Stashuk, "Physiologically based simulation of clinical EMG signals",
IEEE Trans. Biomed. Eng. 52:171-183, 2005.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.fft
import scipy.special
from scipy.spatial import cKDTree

from emgdx.config import JsonConfig, atomic_write, check_fields, json_ready
from emgdx.errors import ConfigError, ReadError
from emgdx.recording import LABELS, Cohort, Label, Recording

__all__ = [
    "EVENT_KINDS",
    "FAULT_KINDS",
    "LEVEL_EXCITATION",
    "MUSCLE",
    "GroundTruth",
    "Level",
    "SimulatedCohort",
    "SimulatedRecord",
    "SimulationConfig",
    "SubjectParams",
    "draw_subject",
    "inject_fault",
    "load_truth",
    "muap_measures",
    "simulate_cohort",
    "simulate_recording",
    "simulate_subject",
    "write_cohort",
]

#: A contraction level: a named level or the excitation as a fraction of maximum (0, 1].
Level = str | float

#: Excitation (fraction of maximal) of the named contraction levels. "low" recruits a few
#: units near the needle firing at 8-10 Hz (a clinical "slight contraction"); "moderate"
#: roughly doubles the signal amplitude, as N2001's moderate control records do.
LEVEL_EXCITATION: dict[str, float] = {"low": 0.04, "moderate": 0.1}

#: Kinds of discharge events in :attr:`GroundTruth.events`.
EVENT_KINDS: tuple[str, ...] = ("muap", "fibrillation", "positive_sharp_wave", "fasciculation")

#: The muscle every simulated record claims to be.
MUSCLE = "simulated biceps brachii"

_CLASS_CODE: dict[str, str] = {"healthy": "H", "neurogenic": "N", "myopathy": "M"}
_DIAGNOSIS: dict[str, str] = {
    "healthy": "healthy control (simulated)",
    "neurogenic": "ALS (simulated neurogenic)",
    "myopathy": "myopathy (simulated)",
}

# --- geometry and physiology constants (mm, ms) ---------------------------------------------
# Values are physiological where a number is known (cited); the rest (marked "tuned") were
# set so that simulated low-level records reproduce the class differences of the real N2001
# records and of the Pattichis et al. MUAP table (see tests/test_simulate.py).
_NEEDLE_SPREAD_MM = 2.0  # needle positions of one subject fall within this radius
_VIEW_MM = 3.0  # fibres further away add < 5 % of the far field: ignored
_SPIKE_VIEW_MM = 1.5  # beyond this a fibre's spike is < 1 % of a close one: ignored
_PATCH_MM = _NEEDLE_SPREAD_MM + _VIEW_MM + 3.5  # unit centres; covers every view uniformly
_FIBRE_DENSITY = (150.0, 200.0)  # model fibres per mm² (a model fibre ~ 2 real ones)
_SPIKE_LAMBDA_MM = 0.3  # spike amplitude length constant (concentric needle pick-up)
_SPIKE_HALF_MS = 0.08  # half the main-phase duration of a close fibre's spike
_SPIKE_ORDER = 3  # spike family (see _spike_spectrum)
_SPIKE_PHASE_MAX = 1.2  # rad; spikes range from triphasic (0) to nearly biphasic
_SPIKE_WIDEN_MM = 0.2  # spike width doubles at this distance (volume-conductor low-pass)
_SPIKE_UV = 90.0  # tuned: spike of a fibre at the needle (before amplitude_scale)
_SLOW_LAMBDA_MM = 1.0  # the far field decays slowly with distance
_SLOW_WIDTH_MS = 2.0  # tuned: time scale of the far field (MUAP durations ~10 ms)
_SLOW_SPAN = 10.0  # the far field is rendered to +-10 time scales
_TAIL_UV = 0.05  # templates are cropped where all are below this
_LEAD_S = 0.25  # firing starts this long before the record (templates are shorter)
_SLOW_UV = 11.0  # tuned: far field of one fibre at the needle
# Conduction velocity (m/s = mm/ms) vs fibre diameter D (µm): 2.2 + 0.05 D (Håkansson, 1956);
# a normal fibre (diameter factor 1) is 50 µm across.
_CV_OFFSET = 2.2
_CV_PER_UM = 0.05
_FIBRE_UM = 50.0
_DEPTH_MM = (5.0, 35.0)  # needle distance from the end-plate zone along the fibres (mm)
_ENDPLATE_SD_MM = 0.6  # spread of end-plate positions along the fibres
# Potential size vs fibre diameter: near the fibre the spike follows the membrane current
# density (~ diameter); far away the fibre is a line source whose strength is its axial
# current (~ cross-section, diameter²). So thin (atrophic) fibres lose their far field first.
_SPIKE_DIAM_EXP = 1.0
_SLOW_DIAM_EXP = 2.0
_AMPLIFIER_LOWPASS_HZ = 10_000.0  # N2001's amplifier low-pass
_RATE_CEILING_HZ = 30.0
# Disease remodelling, each "a + b * severity" or "b * severity" (tuned within the ranges
# reported for ALS and myopathy).
_NEURO_LOSS = (0.25, 0.5)  # fraction of motor units lost
_NEURO_ADOPT = (0.8, 0.4)  # fraction of orphaned fibres reinnervated (a - b * severity)
_NEURO_SPROUT = (0.4, 1.0)  # mean extra delay (ms) of fibres reached through new sprouts
_MYO_LOSS = (0.2, 0.3)  # mean fraction of fibres lost per unit
_MYO_DCV = 0.45  # added spread (log-sd) of fibre diameters
_MYO_DMEAN = 0.2  # atrophy: mean diameter 1 - b * severity
_MYO_SPLIT = 1.0  # fraction of fibres that split
_MYO_SEG = 1.0  # fraction of fibres that conduct over a short segment only
_SEG_RANGE = (0.4, 0.9)  # functional length of such fibres (fraction of a whole fibre)
_MYO_GAIN = 2.5  # early recruitment: excitation x (1 + b * severity)


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------


def _excitation(level: Level) -> float:
    """Excitation in (0, 1] of a named or numeric contraction level."""
    if isinstance(level, str):
        key = level.strip().lower()
        if key not in LEVEL_EXCITATION:
            raise ConfigError(
                f"unknown contraction level {level!r}; use one of {sorted(LEVEL_EXCITATION)} "
                "or a number in (0, 1]"
            )
        return LEVEL_EXCITATION[key]
    value = float(level)
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise ConfigError(f"contraction level must be in (0, 1], got {level!r}")
    return value


@dataclass(frozen=True)
class SimulationConfig(JsonConfig):
    """Recording-chain settings shared by every simulated record.

    Levels given here are typical values; each subject draws its own around them (see
    :func:`draw_subject`).

    Parameters
    ----------
    fs_hz
        Sampling rate in Hz (at least 2 kHz).
    duration_s
        Length of each record in seconds.
    level
        Contraction level: ``"low"``, ``"moderate"`` or an excitation in (0, 1].
    line_hz
        Mains frequency, 50 or 60 Hz.
    line_uv
        Typical amplitude (µV, peak) of the mains fundamental; 0 disables it.
    line_harmonics
        Number of harmonics above the fundamental (amplitude halves with each one).
    noise_uv
        Typical RMS (µV) of the instrumentation noise.
    pink_fraction
        Share of the noise variance that is 1/f (pink) rather than white.
    wander_uv
        Typical RMS (µV) of the baseline wander (below 1 Hz).
    muscle
        Muscle name written into every record.
    """

    fs_hz: float
    duration_s: float
    level: Level = "low"
    line_hz: float = 50.0
    line_uv: float = 2.0
    line_harmonics: int = 3
    noise_uv: float = 2.5
    pink_fraction: float = 0.3
    wander_uv: float = 5.0
    muscle: str = MUSCLE

    def __post_init__(self) -> None:
        problems = check_fields(
            self,
            positive="fs_hz duration_s line_hz",
            non_negative="line_uv noise_uv wander_uv",
            unit_interval="pink_fraction",
            non_negative_int="line_harmonics",
        )
        if problems:
            raise ConfigError("; ".join(problems))
        if self.fs_hz < 2000.0:
            raise ConfigError(f"fs_hz must be at least 2000 Hz for needle EMG, got {self.fs_hz}")
        _excitation(self.level)
        if self.line_hz >= self.fs_hz / 2:
            raise ConfigError(f"line_hz must lie in (0, fs_hz/2), got {self.line_hz}")

    @property
    def n_samples(self) -> int:
        return round(self.duration_s * self.fs_hz)


def _resolve_config(
    config: SimulationConfig | None,
    fs_hz: float | None,
    duration_s: float | None,
    level: Level | None,
) -> SimulationConfig:
    """Merge explicit arguments into a config; fs_hz and duration_s must come from somewhere."""
    if config is None:
        if fs_hz is None or duration_s is None:
            raise ConfigError("give fs_hz and duration_s (or a SimulationConfig)")
        return SimulationConfig(
            fs_hz=fs_hz, duration_s=duration_s, level="low" if level is None else level
        )
    given: dict[str, Any] = {"fs_hz": fs_hz, "duration_s": duration_s, "level": level}
    changes = {key: value for key, value in given.items() if value is not None}
    return replace(config, **changes) if changes else config


@dataclass(frozen=True)
class SubjectParams(JsonConfig):
    """Everything that makes one simulated subject (drawn by :func:`draw_subject`).

    Records of a subject share its motor-unit pool, which is rebuilt from ``pool_seed``.

    Attributes
    ----------
    subject_id, label
        Identity and class (one of :data:`~emgdx.recording.LABELS`).
    severity
        0 for healthy subjects, 0..1 for patients; scales every disease change below.
    n_units
        Motor units in the simulated patch before any loss.
    fibre_density_per_mm2
        Model fibres per mm² of muscle (one model fibre stands for a few real ones).
    amplitude_scale, width_scale
        Subject factors on potential size and width (tissue, needle, temperature).
    electrode_gap_mm
        Closest a fibre gets to the needle's recording surface.
    noise_uv, pink_fraction, line_uv, line_hz, wander_uv
        This subject's recording chain (see :class:`SimulationConfig`).
    min_rate_hz, rate_gain_hz, isi_cv
        Firing rate at recruitment, its rise per unit of excitation above threshold, and the
        inter-spike-interval coefficient of variation.
    max_threshold, recruitment_range
        Recruitment thresholds span ``max_threshold / recruitment_range .. max_threshold``.
    excitation_gain
        Multiplies the excitation (> 1: early recruitment, as in myopathy).
    unit_loss, reinnervation, sprout_delay_ms, satellite_fraction
        Neurogenic remodelling: fraction of units lost, fraction of orphaned fibres adopted,
        mean extra delay of adopted fibres and fraction of them that become late satellites.
    fibre_loss, diameter_cv, diameter_mean, split_fraction, segment_fraction
        Myopathic remodelling: mean fraction of fibres lost per unit, the fibre diameter
        spread and mean (1 = normal), the fraction of surviving fibres that split and the
        fraction that conduct over a short segment only (necrosis, regeneration).
    fibrillation_rate, psw_rate, fasciculation_rate
        Expected numbers of fibrillating fibres, positive-sharp-wave sources and
        fasciculating units per needle position.
    pool_seed
        Seed of the motor-unit pool.
    """

    subject_id: str
    label: Label
    severity: float
    n_units: int
    fibre_density_per_mm2: float
    amplitude_scale: float
    width_scale: float
    electrode_gap_mm: float
    noise_uv: float
    pink_fraction: float
    line_uv: float
    line_hz: float
    wander_uv: float
    min_rate_hz: float
    rate_gain_hz: float
    isi_cv: float
    max_threshold: float
    recruitment_range: float
    excitation_gain: float
    unit_loss: float
    reinnervation: float
    sprout_delay_ms: float
    satellite_fraction: float
    fibre_loss: float
    diameter_cv: float
    diameter_mean: float
    split_fraction: float
    segment_fraction: float
    fibrillation_rate: float
    psw_rate: float
    fasciculation_rate: float
    pool_seed: int

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ConfigError(f"{self.subject_id}: label must be one of {LABELS}")
        if not 0.0 <= self.severity <= 1.0:
            raise ConfigError(f"{self.subject_id}: severity must be in [0, 1]")
        if self.n_units < 5:
            raise ConfigError(f"{self.subject_id}: need at least 5 motor units")


def draw_subject(
    label: str,
    *,
    rng: np.random.Generator,
    subject_id: str | None = None,
    config: SimulationConfig | None = None,
    severity: float | None = None,
) -> SubjectParams:
    """Draw one subject's parameters: pool size, shape factors, severity, noise levels.

    Parameters
    ----------
    label
        ``"healthy"``, ``"neurogenic"`` or ``"myopathy"`` (free text is normalised).
    rng
        Source of randomness.
    subject_id
        Defaults to ``SIM-<H|N|M>01``.
    config
        Typical recording-chain levels (noise, mains, wander) to draw around; defaults of
        :class:`SimulationConfig` when omitted.
    severity
        Fix the severity (0..1) instead of drawing it (ignored for healthy subjects).
    """
    lab = _check_label(label)
    # Only the recording-chain levels of the config are used; rate and length do not matter.
    chain = config if config is not None else SimulationConfig(fs_hz=10_000.0, duration_s=1.0)
    sev = 0.0
    if lab != "healthy":
        sev = float(rng.uniform(0.35, 0.9)) if severity is None else float(severity)
    u = rng.uniform(size=8)
    common: dict[str, Any] = {
        "subject_id": subject_id or f"SIM-{_CLASS_CODE[lab]}01",
        "label": lab,
        "severity": sev,
        "n_units": round(170 + 60 * float(u[0])),
        "fibre_density_per_mm2": float(
            _FIBRE_DENSITY[0] + (_FIBRE_DENSITY[1] - _FIBRE_DENSITY[0]) * u[1]
        ),
        "amplitude_scale": float(np.exp(0.2 * rng.standard_normal())),
        "width_scale": float(np.exp(0.08 * rng.standard_normal())),
        "electrode_gap_mm": float(0.02 + 0.04 * u[2]),
        "noise_uv": float(chain.noise_uv * np.exp(0.25 * rng.standard_normal())),
        "pink_fraction": float(chain.pink_fraction),
        "line_uv": float(chain.line_uv * np.exp(0.5 * rng.standard_normal())),
        "line_hz": float(chain.line_hz),
        "wander_uv": float(chain.wander_uv * np.exp(0.3 * rng.standard_normal())),
        "min_rate_hz": float(6.0 + 2.0 * u[3]),
        "rate_gain_hz": float(40.0 + 10.0 * u[4]),
        "isi_cv": float(0.1 + 0.1 * u[5]),
        "max_threshold": float(0.55 + 0.1 * u[6]),
        "recruitment_range": float(25.0 + 10.0 * u[7]),
        "excitation_gain": 1.0,
        "unit_loss": 0.0,
        "reinnervation": 0.0,
        "sprout_delay_ms": 0.0,
        "satellite_fraction": 0.0,
        "fibre_loss": 0.0,
        "diameter_cv": 0.08,
        "diameter_mean": 1.0,
        "split_fraction": 0.0,
        "segment_fraction": 0.0,
        "fibrillation_rate": 0.0,
        "psw_rate": 0.0,
        "fasciculation_rate": 0.0,
        "pool_seed": int(rng.integers(2**62)),
    }
    if lab == "neurogenic":
        # ALS: half to four fifths of the units gone; sprouting capacity runs out late in
        # the disease.
        common.update(
            unit_loss=_NEURO_LOSS[0] + _NEURO_LOSS[1] * sev,
            reinnervation=_NEURO_ADOPT[0] - _NEURO_ADOPT[1] * sev,
            sprout_delay_ms=_NEURO_SPROUT[0] + _NEURO_SPROUT[1] * sev,
            satellite_fraction=0.03 + 0.07 * sev,
            # reduced recruitment: the few units left fire fast already at recruitment
            min_rate_hz=common["min_rate_hz"] + 7.0 * sev,
            rate_gain_hz=common["rate_gain_hz"] * (1.0 + sev),
            fibrillation_rate=1.0 + 3.0 * sev,
            psw_rate=0.5 + 1.5 * sev,
            fasciculation_rate=0.5 + 1.5 * sev,
        )
    elif lab == "myopathy":
        common.update(
            fibre_loss=_MYO_LOSS[0] + _MYO_LOSS[1] * sev,
            diameter_cv=0.08 + _MYO_DCV * sev,
            diameter_mean=1.0 - _MYO_DMEAN * sev,
            split_fraction=_MYO_SPLIT * sev,
            segment_fraction=_MYO_SEG * sev,
            excitation_gain=1.0 + _MYO_GAIN * sev,  # early recruitment
            fibrillation_rate=0.3 * sev,
        )
    return SubjectParams(**common)


def _check_label(label: str) -> Label:
    from emgdx.recording import normalise_label

    lab = normalise_label(label)
    if lab is None:
        raise ConfigError(f"unknown label {label!r}; use one of {LABELS}")
    return lab


# ---------------------------------------------------------------------------------------------
# motor-unit pool
# ---------------------------------------------------------------------------------------------


@dataclass
class _Pool:
    """A subject's motor units and fibres after disease remodelling (mm, ms)."""

    threshold: np.ndarray  # (N,) excitation at recruitment
    n_fibres_orig: np.ndarray  # (N,)
    n_fibres: np.ndarray  # (N,)
    unit_fibre_loss: np.ndarray  # (N,) realised myopathic loss fraction
    fibre_xy: np.ndarray  # (F, 2)
    fibre_owner: np.ndarray  # (F,) unit index, -1 = denervated
    fibre_diam: np.ndarray  # (F,)
    fibre_endplate_mm: np.ndarray  # (F,)
    fibre_delay_ms: np.ndarray  # (F,) extra delay through immature sprouts
    fibre_segment: np.ndarray  # (F,) functional length (1 = whole fibre conducts)


def _build_pool(sp: SubjectParams) -> _Pool:
    """Build the subject's motor-unit pool from ``sp.pool_seed`` and remodel it for disease."""
    rng = np.random.default_rng(sp.pool_seed)
    n = sp.n_units
    # Size principle: thresholds and innervation ratios both grow exponentially with rank.
    rank = np.arange(n) / (n - 1)
    threshold = sp.max_threshold * np.exp(np.log(sp.recruitment_range) * (rank - 1.0))
    size = np.exp(np.log(10.0) * rank)  # 10-fold range of fibres per unit
    order = rng.permutation(n)  # unit position is unrelated to its size
    threshold, size = threshold[order], size[order]
    r = _PATCH_MM * np.sqrt(rng.uniform(size=n))
    phi = rng.uniform(0, 2 * np.pi, size=n)
    centre = np.column_stack([r * np.cos(phi), r * np.sin(phi)])
    radius = (2.0 + 1.5 * rng.uniform(size=n)) * (size / size.mean()) ** 0.15
    total = sp.fibre_density_per_mm2 * np.pi * _PATCH_MM**2
    n_fib = np.maximum(np.round(size / size.sum() * total), 3).astype(int)
    owner = np.repeat(np.arange(n), n_fib)
    fr = radius[owner] * np.sqrt(rng.uniform(size=owner.size))
    fphi = rng.uniform(0, 2 * np.pi, size=owner.size)
    xy = centre[owner] + np.column_stack([fr * np.cos(fphi), fr * np.sin(fphi)])
    diam = np.exp(sp.diameter_cv * rng.standard_normal(owner.size)) * sp.diameter_mean
    endplate = _ENDPLATE_SD_MM * rng.standard_normal(owner.size)
    delay = np.zeros(owner.size)
    unit_loss = np.zeros(n)

    if sp.unit_loss > 0:
        # Motor neuron loss, then collateral reinnervation of the orphans by the nearest
        # surviving unit whose territory reaches them.
        alive = rng.uniform(size=n) >= sp.unit_loss
        if not alive.any():
            alive[rng.integers(n)] = True
        survivors = np.flatnonzero(alive)
        orphan = ~alive[owner]
        dist, nearest = cKDTree(centre[survivors]).query(xy[orphan])
        host = survivors[nearest]
        reach = dist <= 1.2 * radius[host]
        take = reach & (rng.uniform(size=host.size) < sp.reinnervation)
        idx = np.flatnonzero(orphan)
        owner[idx] = np.where(take, host, -1)
        # Immature sprouts conduct slowly: extra delay; a few become late satellites.
        n_take = int(take.sum())
        extra = rng.exponential(sp.sprout_delay_ms, size=n_take)
        late = rng.uniform(size=n_take) < sp.satellite_fraction
        extra[late] = rng.uniform(4.0, 15.0, size=int(late.sum()))
        delay[idx[take]] = extra
    if sp.fibre_loss > 0:
        # Patchy myopathy: each unit loses its own fraction of fibres (beta around the mean).
        conc = 6.0
        unit_loss = rng.beta(sp.fibre_loss * conc, (1 - sp.fibre_loss) * conc, size=n)
        keep = rng.uniform(size=owner.size) >= unit_loss[owner]
        owner, xy, diam = owner[keep], xy[keep], diam[keep]
        endplate, delay = endplate[keep], delay[keep]
        n_left = np.bincount(owner, minlength=n)
        unit_loss = 1.0 - n_left / n_fib
    split = np.zeros(owner.size, dtype=bool)
    if sp.split_fraction > 0:
        # Fibre splitting: a parent becomes 2-3 thin daughters side by side (cross-section
        # conserved). Thin fibres keep their spikes but lose far field, and conduct slower.
        parents = np.flatnonzero(rng.uniform(size=owner.size) < sp.split_fraction)
        k = rng.integers(2, 4, size=parents.size)
        src = np.repeat(parents, k - 1)
        diam[parents] /= np.sqrt(k)
        split = np.ones(owner.size + src.size, dtype=bool)  # split fibres are short branches
        split[: owner.size] = False
        split[parents] = True
        owner = np.concatenate([owner, owner[src]])
        xy = np.concatenate([xy, xy[src] + 0.02 * rng.standard_normal((src.size, 2))])
        diam = np.concatenate([diam, diam[src] * np.exp(0.1 * rng.standard_normal(src.size))])
        endplate = np.concatenate([endplate, endplate[src]])
        delay = np.concatenate([delay, delay[src]])
    segment = np.ones(owner.size)
    if sp.segment_fraction > 0:
        # Segmental necrosis, regeneration and splitting leave fibres that conduct only over a
        # short segment: their potential starts and stops near the needle, so its far field
        # (the MUAP's slow initial and terminal phases) is shorter and weaker.
        short = split | (rng.uniform(size=owner.size) < sp.segment_fraction)
        segment = np.where(
            short, np.round(rng.uniform(_SEG_RANGE[0], _SEG_RANGE[1], size=owner.size), 1), 1.0
        )
    n_now = np.bincount(owner[owner >= 0], minlength=n)
    return _Pool(
        threshold=threshold,
        n_fibres_orig=n_fib,
        n_fibres=n_now,
        unit_fibre_loss=unit_loss,
        fibre_xy=xy,
        fibre_owner=owner,
        fibre_diam=diam,
        fibre_endplate_mm=endplate,
        fibre_delay_ms=delay,
        fibre_segment=segment,
    )


# ---------------------------------------------------------------------------------------------
# waveforms
# ---------------------------------------------------------------------------------------------


def _aa_sigma_ms(fs_hz: float) -> float:
    """Width (ms) of the Gaussian anti-alias low-pass of the recording chain.

    A Gaussian of this width attenuates 20 dB at Nyquist, and never less than the amplifier's
    10 kHz low-pass does. Being Gaussian, it widens Gaussian-derivative shapes analytically.
    """
    sigma_nyq = 2.146 / (2 * np.pi * fs_hz / 2)  # exp(-x²/2) = 0.1 at x = 2.146
    sigma_amp = math.sqrt(math.log(2)) / (2 * np.pi * _AMPLIFIER_LOWPASS_HZ)
    return 1e3 * max(sigma_nyq, sigma_amp)


def _mexican_hat(t_ms: np.ndarray, sigma_ms: np.ndarray | float, aa_ms: float) -> np.ndarray:
    """Triphasic spike -(1 - u²) exp(-u²/2) (main phase -1), low-passed by a Gaussian.

    It is the (negated, scaled) second derivative of a Gaussian, so the Gaussian low-pass only
    widens it to sqrt(sigma² + aa²) and scales it by (sigma / widened)³: exact, no resampling.
    """
    s_eff = np.sqrt(np.square(sigma_ms) + aa_ms**2)
    u = t_ms / s_eff
    return -((sigma_ms / s_eff) ** 3) * (1.0 - u * u) * np.exp(-0.5 * u * u)


def _gauss_d1(t_ms: np.ndarray, sigma_ms: float, aa_ms: float) -> np.ndarray:
    """Biphasic, initially positive first derivative of a Gaussian (peak 1), low-passed."""
    s_eff = math.sqrt(sigma_ms**2 + aa_ms**2)
    u = t_ms / s_eff
    return -((sigma_ms / s_eff) ** 2) * u * np.exp(0.5 - 0.5 * u * u)


def _tripole_far(u: np.ndarray) -> np.ndarray:
    """Far field of a tripole travelling along a fibre: (2u² - 1) / (1 + u²)^(5/2).

    ``u`` is time over the travel time across the effective distance. Main phase -1 at 0,
    side phases +0.2, and power-law (1/u³) tails: the larger the sum of these from many fibres,
    the longer it stays above a fixed level (duration grows with the number of fibres).
    """
    u2 = np.square(u)
    return (2.0 * u2 - 1.0) / (1.0 + u2) ** 2.5


def _psw_shape(t_ms: np.ndarray, tau1_ms: float, tau2_ms: float, neg: float) -> np.ndarray:
    """Positive sharp wave: sharp positive peak, then a slow, shallow negative phase."""
    t = np.maximum(t_ms, 0.0)
    pos = (1.0 - np.exp(-t / 0.15)) * np.exp(-t / tau1_ms)
    pos /= max(float(pos.max()), 1e-12)
    slow = (t / tau2_ms) * np.exp(1.0 - t / tau2_ms)
    return np.where(t_ms > 0, pos - neg * slow, 0.0)


def _render_lowpassed(
    shape: Callable[..., np.ndarray], t0_ms: float, t1_ms: float, fs_hz: float, **params: float
) -> tuple[np.ndarray, int]:
    """Sample ``shape(t_ms, **params)``, not Gaussian-derived, through the anti-alias Gaussian.

    Evaluates on a grid k times finer than ``fs_hz`` (at least 200 kHz), convolves with the
    Gaussian low-pass and keeps every k-th sample. Returns the samples and the index of t = 0.
    Used for the few positive-sharp-wave shapes of a record, so its cost does not matter.
    """
    k = max(1, math.ceil(200_000.0 / fs_hz))
    fine_fs = fs_hz * k
    aa = _aa_sigma_ms(fs_hz) * 1e-3 * fine_fs  # in fine samples
    i0 = math.floor(t0_ms * 1e-3 * fs_hz)
    i1 = math.ceil(t1_ms * 1e-3 * fs_hz)
    fine_idx = np.arange(i0 * k, i1 * k + 1)
    values = shape(fine_idx / fine_fs * 1e3, **params)
    half = max(1, math.ceil(4 * aa))
    kern = np.exp(-0.5 * (np.arange(-half, half + 1) / aa) ** 2)
    smooth = np.convolve(values, kern / kern.sum(), mode="same")
    coarse = smooth[::k]
    return coarse, -i0


def _spike_spectrum(x: np.ndarray) -> np.ndarray:
    """Fourier transform of the near-field spike shape (main phase -1 at u = 0).

    The spectrum is -(π/n!) |x|^n exp(-|x|) (n = ``_SPIKE_ORDER``); in time the shape is
    -Re[(1 + iu)^-(n+1)]: triphasic with side phases of 0.35 (n = 3), zero crossings at
    u = ±tan(π / (2n + 2)) and power-law tails. Its exponential (not Gaussian) spectral
    fall-off makes a sum of spikes from fibres at many distances show the power-law
    spectrum of real needle EMG.
    """
    ax = np.abs(x)
    return (-np.pi / math.factorial(_SPIKE_ORDER)) * np.exp(_SPIKE_ORDER * np.log(ax + 1e-300) - ax)


def _tripole_spectrum(x: np.ndarray) -> np.ndarray:
    """Fourier transform of the far-field shape :func:`_tripole_far`: -2 x² K0(|x|)."""
    ax = np.abs(x)
    out = np.zeros_like(ax)
    pos = ax > 0
    # K0 overflows nothing and underflows to 0 for large x; x² K0(x) -> 0 at 0.
    out[pos] = -2.0 * ax[pos] ** 2 * scipy.special.k0(ax[pos])
    return out


def _unit_templates(
    pool: _Pool,
    units: np.ndarray,
    dist_mm: np.ndarray,
    fibres: np.ndarray,
    arrival_ms: np.ndarray,
    spike_phase: np.ndarray,
    sp: SubjectParams,
    fs_hz: float,
) -> tuple[np.ndarray, int]:
    """MUAP templates (µV) of ``units`` as sums of their fibres' potentials.

    ``spike_phase`` (rad, per fibre) turns a spike from triphasic (0) towards biphasic (±π/2),
    as the needle's position along the fibre does (a constant phase shift of the spectrum mixes
    the shape with its Hilbert transform).

    Rendered in the frequency domain: every fibre adds its shape's closed-form spectrum times
    its delay, and the recording chain's Gaussian anti-alias low-pass is one more factor. So
    the templates are exactly band-limited at any ``fs_hz`` and keep fractional-sample delays.

    Returns ``templates`` (n_units, L) on a common grid and ``g0``, the sample offset of the
    grid's first sample relative to the discharge time.
    """
    aa = _aa_sigma_ms(fs_hz)
    slow_w = _SLOW_WIDTH_MS * sp.width_scale
    margin = _SLOW_SPAN * slow_w
    dt_ms = 1e3 / fs_hz
    g0 = math.floor((float(arrival_ms.min()) - margin) / dt_ms)
    g1 = math.ceil((float(arrival_ms.max()) + margin) / dt_ms)
    n_len = g1 - g0 + 1
    nfft = scipy.fft.next_fast_len(n_len, real=True)
    omega = 2 * np.pi * np.fft.rfftfreq(nfft, dt_ms)  # rad/ms
    lowpass = np.exp(-0.5 * (omega * aa) ** 2)
    rows = np.searchsorted(units, pool.fibre_owner[fibres])  # units are sorted and unique
    diam = pool.fibre_diam[fibres]
    tau = arrival_ms - g0 * dt_ms  # delay from the grid's first sample

    # Far field of every fibre in view. Fibres of one functional length share one shape, so
    # sum their delayed impulses per unit (split linearly between samples) and multiply by
    # the shape's spectrum once per length.
    segment = pool.fibre_segment[fibres]
    slow_amp = _SLOW_UV * sp.amplitude_scale * diam**_SLOW_DIAM_EXP * segment
    slow_amp *= np.exp(-dist_mm / _SLOW_LAMBDA_MM)
    pos_f = tau / dt_ms
    lo = np.floor(pos_f).astype(int)
    frac = pos_f - lo
    spec = np.zeros((units.size, omega.size), dtype=complex)
    for seg in np.unique(segment):
        sel = segment == seg
        imp = np.bincount(
            np.concatenate([rows[sel] * nfft + lo[sel], rows[sel] * nfft + lo[sel] + 1]),
            weights=np.concatenate([slow_amp[sel] * (1 - frac[sel]), slow_amp[sel] * frac[sel]]),
            minlength=units.size * nfft,
        ).reshape(units.size, nfft)
        w_seg = slow_w * seg
        spec += np.fft.rfft(imp, axis=1) * (w_seg / dt_ms * _tripole_spectrum(omega * w_seg))

    # Spikes of the near fibres: each its own width (wider with distance), exact delay.
    near = np.flatnonzero(dist_mm < _SPIKE_VIEW_MM)
    if near.size:
        near = near[np.argsort(rows[near], kind="stable")]
        d = dist_mm[near]
        # Time scale such that a close fibre's main phase lasts 2 * _SPIKE_HALF_MS.
        u0 = math.tan(np.pi / (2 * _SPIKE_ORDER + 2))
        w = _SPIKE_HALF_MS / u0 * sp.width_scale * (1.0 + d / _SPIKE_WIDEN_MM)
        amp = _SPIKE_UV * sp.amplitude_scale * diam[near] ** _SPIKE_DIAM_EXP
        amp *= np.exp(-d / _SPIKE_LAMBDA_MM)
        # Only frequencies where the widest spike still has content matter; above that the
        # exponential spectrum is < 1e-9 of its peak.
        k_max = int(np.searchsorted(omega, 40.0 / float(w.min()))) + 1
        om = omega[:k_max]
        fib = (amp * w / dt_ms)[:, None] * _spike_spectrum(om[None, :] * w[:, None])
        # exp(-i w_k tau) for all k as powers of one phasor: a complex product per bin instead
        # of a complex exponential (3-4x faster; rounding error stays ~1e-13 over 10^3 bins).
        step = np.exp(-1j * (omega[1] - omega[0]) * tau[near])
        phasor = np.empty((near.size, om.size), dtype=complex)
        phasor[:, 0] = np.exp(1j * spike_phase[near])
        if om.size > 1:
            phasor[:, 1:] = step[:, None]
            np.cumprod(phasor, axis=1, out=phasor)
        fib = fib * phasor
        r = rows[near]
        starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
        summed = np.add.reduceat(fib, starts, axis=0)
        spec[r[starts], :k_max] += summed
    out = np.fft.irfft(spec * lowpass, nfft, axis=1)[:, :n_len]
    # Crop the far-field tails where every template is below 0.05 µV: shorter templates make
    # placing the discharges cheaper and change nothing visible.
    big = np.flatnonzero(np.max(np.abs(out), axis=0) > _TAIL_UV)
    if big.size:
        out = out[:, big[0] : big[-1] + 1]
        g0 += int(big[0])
    return out, g0


# ---------------------------------------------------------------------------------------------
# MUAP measures
# ---------------------------------------------------------------------------------------------


def muap_measures(
    templates: np.ndarray,
    fs_hz: float,
    *,
    onset_uv: float = 10.0,
    gap_ms: float = 3.0,
    turn_uv: float = 25.0,
) -> pd.DataFrame:
    """Clinical MUAP measures of noise-free templates (one per row).

    Parameters
    ----------
    templates
        ``(n, L)`` MUAP waveforms in µV.
    fs_hz
        Sampling rate of the templates.
    onset_uv
        The MUAP starts and ends where ``|v|`` first and last exceeds this level.
    gap_ms
        Stretches above ``onset_uv`` separated from the main MUAP by an isoelectric gap
        longer than this are satellite potentials, not part of the MUAP duration.
    turn_uv
        Minimal excursion between successive turns.

    Returns
    -------
    pandas.DataFrame
        ``amplitude_uv`` (peak to peak), ``duration_ms``, ``phases`` (baseline crossings + 1
        within the duration, counting only excursions beyond ``onset_uv / 2``), ``turns``,
        ``satellites`` (separate late/early components), ``peak_index``, ``onset_index``,
        ``end_index`` (sample positions within the template; onset/end inclusive).
    """
    tmpl = np.atleast_2d(np.asarray(templates, dtype=float))
    rows: list[dict[str, Any]] = []
    gap = max(1, round(gap_ms * 1e-3 * fs_hz))
    for v in tmpl:
        peak = int(np.argmax(np.abs(v)))
        above = np.abs(v) >= onset_uv
        on = off = peak
        duration_ms = 0.0
        phases = turns = satellites = 0
        if above[peak]:
            idx = np.flatnonzero(above)
            # Split the supra-threshold samples into clusters separated by > gap samples.
            breaks = np.flatnonzero(np.diff(idx) > gap)
            starts = np.concatenate([[idx[0]], idx[breaks + 1]])
            ends = np.concatenate([idx[breaks], [idx[-1]]])
            k = int(np.searchsorted(starts, peak, side="right") - 1)
            on, off = int(starts[k]), int(ends[k])
            seg = v[on : off + 1]
            sig = np.sign(seg[np.abs(seg) >= onset_uv / 2])
            duration_ms = (off - on + 1) / fs_hz * 1e3
            phases = int(np.count_nonzero(np.diff(sig))) + 1 if sig.size else 0
            turns = _count_turns(seg, turn_uv)
            satellites = len(starts) - 1
        rows.append(
            dict(
                amplitude_uv=float(v.max() - v.min()),
                duration_ms=duration_ms,
                phases=phases,
                turns=turns,
                satellites=satellites,
                peak_index=peak,
                onset_index=on,
                end_index=off,
            )
        )
    return pd.DataFrame(rows)


def _count_turns(seg: np.ndarray, turn_uv: float) -> int:
    """Turns: direction changes whose excursion from the previous turn exceeds ``turn_uv``."""
    d = np.diff(seg)
    ext = np.flatnonzero(np.sign(d[1:]) * np.sign(d[:-1]) < 0) + 1
    # Hand-written loop over the few local extrema (tens per MUAP): a hysteresis has no
    # vectorised form and this stays far cheaper than rendering the MUAP.
    turns = 0
    last = seg[0]
    direction = 0
    for i in ext:
        step = seg[i] - last
        if abs(step) < turn_uv:
            continue
        new_dir = 1 if step > 0 else -1
        if direction != 0 and new_dir != direction:
            turns += 1
        direction = new_dir
        last = seg[i]
    return turns


# ---------------------------------------------------------------------------------------------
# ground truth
# ---------------------------------------------------------------------------------------------

#: The MUAP measures of :func:`muap_measures` the unit table holds as they are.
_MEASURE_COLUMNS = ("amplitude_uv", "duration_ms", "phases", "turns", "satellites")

#: The columns of :attr:`GroundTruth.units` and their types (JSON keeps neither order nor type).
_UNIT_DTYPES: dict[str, Any] = {
    "unit_id": np.int64,
    "kind": str,
    "active": bool,
    "fasciculating": bool,
    "threshold": float,
    "rate_hz": float,
    "n_discharges": np.int64,
    "distance_mm": float,
    "n_fibres": np.int64,
    "n_fibres_orig": np.int64,
    "n_fibres_near": np.int64,
    "fibre_loss": float,
    "amplitude_uv": float,
    "duration_ms": float,
    "phases": np.int64,
    "turns": np.int64,
    "satellites": np.int64,
    "onset_offset": np.int64,
    "end_offset": np.int64,
    "reinnervated": bool,
    "myopathic": bool,
    "disease_signature": bool,
}


@dataclass
class GroundTruth:
    """What is really in a simulated record.

    Attributes
    ----------
    record_id, subject_id, label
        Identity of the record.
    fs_hz, n_samples
        Sampling rate and length of the record.
    events
        One row per discharge: ``sample`` (index of the potential's largest peak in the
        record), ``unit_id``, ``kind`` (one of :data:`EVENT_KINDS`). Sorted by sample.
    units
        One row per source in view: motor units (``kind == "motor_unit"``, ids are stable
        across the subject's records) and spontaneous fibre sources (``"fibrillation"``,
        ``"positive_sharp_wave"``, ids from ``10_000``). Columns: activity (``active``,
        ``fasciculating``, ``threshold``, ``rate_hz``, ``n_discharges``), geometry
        (``distance_mm`` of the nearest fibre, fibre counts), the MUAP measured from the
        noise-free template (``amplitude_uv``, ``duration_ms``, ``phases``, ``turns``,
        ``satellites``; see :func:`muap_measures`), the MUAP's extent around its peak in
        samples (``onset_offset`` <= 0 <= ``end_offset``) and the disease flags
        (``reinnervated``: a neurogenic unit enlarged by >= 25 % through reinnervation;
        ``myopathic``: a unit that lost >= 25 % of its fibres; ``disease_signature``: either,
        or a spontaneous source).
    params
        The subject parameters, the simulation config, level, excitation and needle position.
    templates
        ``(n_units, L)`` noise-free potentials of the rows of :attr:`units` (same order), kept
        in memory only (not written to JSON); ``template_peak`` gives each one's peak index.
    """

    record_id: str
    subject_id: str
    label: Label
    fs_hz: float
    n_samples: int
    events: pd.DataFrame
    units: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)
    templates: np.ndarray | None = None
    template_peak: np.ndarray | None = None

    def signature_mask(
        self, kinds: Sequence[str] | None = None, *, disease_only: bool = True
    ) -> np.ndarray:
        """Per-sample boolean mask of the stretches carrying the disease signature.

        Parameters
        ----------
        kinds
            Event kinds to include (default: all of :data:`EVENT_KINDS`).
        disease_only
            Only events of sources flagged ``disease_signature`` (default). With ``False`` the
            mask covers every discharge of the chosen kinds.

        Returns
        -------
        numpy.ndarray
            ``bool`` array of length :attr:`n_samples`; each selected discharge marks
            ``[sample + onset_offset, sample + end_offset]``.
        """
        ev = self.events
        if kinds is not None:
            bad = sorted(set(kinds) - set(EVENT_KINDS))
            if bad:
                raise ConfigError(f"unknown event kinds {bad}; use {EVENT_KINDS}")
            ev = ev[ev["kind"].isin(list(kinds))]
        units = self.units.set_index("unit_id")
        if disease_only:
            flagged = units.index[units["disease_signature"].to_numpy(bool)]
            ev = ev[ev["unit_id"].isin(flagged)]
        on = ev["sample"].to_numpy() + units.loc[ev["unit_id"], "onset_offset"].to_numpy()
        off = ev["sample"].to_numpy() + units.loc[ev["unit_id"], "end_offset"].to_numpy() + 1
        # Difference array: +1 at each start, -1 after each end, cumulative sum > 0 = covered.
        edges = np.zeros(self.n_samples + 1, dtype=np.int64)
        np.add.at(edges, np.clip(on, 0, self.n_samples), 1)
        np.add.at(edges, np.clip(off, 0, self.n_samples), -1)
        return np.cumsum(edges[:-1]) > 0

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (templates are not included)."""
        return {
            "record_id": self.record_id,
            "subject_id": self.subject_id,
            "label": self.label,
            "fs_hz": self.fs_hz,
            "n_samples": self.n_samples,
            "events": {c: self.events[c].tolist() for c in ("sample", "unit_id", "kind")},
            "units": json.loads(self.units.to_json(orient="records")),
            "params": self.params,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroundTruth:
        """Inverse of :meth:`to_dict`."""
        events = pd.DataFrame(data["events"], columns=["sample", "unit_id", "kind"])
        events = events.astype({"sample": np.int64, "unit_id": np.int64, "kind": str})
        # JSON has no NaN or dtypes: restore them (null -> NaN, 0/1 -> bool, ...).
        units = pd.DataFrame(list(data["units"]), columns=list(_UNIT_DTYPES))
        units = units.astype({c: t for c, t in _UNIT_DTYPES.items() if c != "kind"})
        return cls(
            record_id=str(data["record_id"]),
            subject_id=str(data["subject_id"]),
            label=data["label"],
            fs_hz=float(data["fs_hz"]),
            n_samples=int(data["n_samples"]),
            events=events,
            units=units,
            params=dict(data.get("params", {})),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON (atomically: temp file, then rename)."""
        out = Path(path)
        atomic_write(out, json.dumps(json_ready(self.to_dict())))
        return out


def load_truth(path: str | os.PathLike[str]) -> GroundTruth:
    """Read a ``<record_id>.truth.json`` written by :func:`write_cohort`.

    Raises
    ------
    emgdx.errors.ReadError
        When the file is missing or is not a ground-truth file.
    """
    p = Path(path)
    try:
        return GroundTruth.from_dict(json.loads(p.read_text()))
    except FileNotFoundError as exc:
        raise ReadError(p, "ground-truth file not found") from exc
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ReadError(p, f"not a simulation ground-truth file ({exc})") from exc


# ---------------------------------------------------------------------------------------------
# one record
# ---------------------------------------------------------------------------------------------


@dataclass
class SimulatedRecord:
    """One simulated record and its ground truth.

    Attributes
    ----------
    recording
        The signal (float32 µV) with ``record_id``, ``subject_id``, ``label``, ``muscle`` and
        ``meta`` (``level``, ``excitation``, ``simulated``, ``diagnosis``, ``severity``, ...).
    truth
        Discharges, units and the disease-signature mask.
    subject
        The subject's parameters.
    clean
        The noise-free signal (MUAPs + spontaneous potentials), if asked for.
    """

    recording: Recording
    truth: GroundTruth
    subject: SubjectParams
    clean: np.ndarray | None = None


def _spike_trains(
    rate_hz: np.ndarray, cv: float, duration_s: float, lead_s: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Stationary gamma renewal trains (times in s, from -lead_s to duration_s) per rate."""
    if rate_hz.size == 0:
        return []
    span = duration_s + lead_s
    shape = 1.0 / cv**2
    n_max = math.ceil(span * float(rate_hz.max()) * 1.3) + 8
    isi = rng.gamma(shape, 1.0, size=(rate_hz.size, n_max)) / (shape * rate_hz[:, None])
    # A random phase in the first interval makes the train stationary from its start.
    times = np.cumsum(isi, axis=1) - rng.uniform(size=(rate_hz.size, 1)) * isi[:, :1] - lead_s
    return [row[row < duration_s] for row in times]


def _poisson_train(rate_hz: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    n = rng.poisson(rate_hz * duration_s)
    return np.sort(rng.uniform(0, duration_s, size=n))


def _simulate_with_pool(
    sp: SubjectParams,
    pool: _Pool,
    cfg: SimulationConfig,
    seq: np.random.SeedSequence,
    record_id: str,
    keep_clean: bool,
) -> SimulatedRecord:
    fs = cfg.fs_hz
    n = cfg.n_samples
    dur = n / fs
    # Independent streams: geometry/firing never depend on fs_hz or on how many noise samples
    # were drawn, so the same seed gives the same MUAPs and discharges at every rate.
    geo_seq, fire_seq, spont_seq, noise_seq = seq.spawn(4)
    geo_rng, fire_rng, spont_rng = map(np.random.default_rng, (geo_seq, fire_seq, spont_seq))

    # --- needle position and what it sees
    rn = _NEEDLE_SPREAD_MM * math.sqrt(geo_rng.uniform())
    phi = geo_rng.uniform(0, 2 * np.pi)
    needle = np.array([rn * math.cos(phi), rn * math.sin(phi)])
    depth_mm = float(geo_rng.uniform(_DEPTH_MM[0], _DEPTH_MM[1]))  # from the end-plate zone
    r = np.hypot(*(pool.fibre_xy - needle).T)
    dist = np.sqrt(r**2 + sp.electrode_gap_mm**2)
    fibres = np.flatnonzero((pool.fibre_owner >= 0) & (dist < _VIEW_MM))  # innervated, in view
    units = np.unique(pool.fibre_owner[fibres])
    d_f = dist[fibres]
    cv = _CV_OFFSET + _CV_PER_UM * _FIBRE_UM * pool.fibre_diam[fibres]
    arrival = (
        np.abs(depth_mm - pool.fibre_endplate_mm[fibres]) / np.maximum(cv, 0.8)
        + pool.fibre_delay_ms[fibres]
    )
    # Spike shape (triphasic .. biphasic) follows where the needle sits along the fibres: one
    # phase per unit; fibres that conduct over a short segment only end near the needle, so
    # each has its own shape (irregular, polyphasic MUAPs in myopathy).
    unit_phase = geo_rng.uniform(-_SPIKE_PHASE_MAX, _SPIKE_PHASE_MAX, size=units.size)
    unit_of = np.searchsorted(units, pool.fibre_owner[fibres])  # each fibre's row in units
    phase = unit_phase[unit_of]
    short = pool.fibre_segment[fibres] < 1.0
    phase[short] = geo_rng.uniform(-np.pi / 2, np.pi / 2, size=int(short.sum()))
    if units.size:
        templates, g0 = _unit_templates(pool, units, d_f, fibres, arrival, phase, sp, fs)
    else:  # a needle in a patch with no fibres (only possible for tiny custom pools)
        templates, g0 = np.zeros((0, 1)), 0

    # --- recruitment and rate coding
    excitation = _excitation(cfg.level)
    drive = min(1.0, excitation * sp.excitation_gain)
    thr = pool.threshold[units]
    active = drive >= thr
    rate = np.where(
        active,
        np.minimum(sp.min_rate_hz + sp.rate_gain_hz * (drive - thr), _RATE_CEILING_HZ),
        0.0,
    )
    # Discharges up to _LEAD_S before t = 0 still show their tails. A fixed physical lead (not
    # one in samples) keeps the discharge times identical at every fs_hz.
    trains = _spike_trains(rate[active], sp.isi_cv, dur, _LEAD_S, fire_rng)
    train_of = dict(zip(np.flatnonzero(active).tolist(), trains, strict=True))
    times = [train_of.get(i, np.empty(0)) for i in range(units.size)]
    kinds = [np.zeros(t.size, dtype=np.int8) for t in times]  # EVENT_KINDS[0]: "muap"

    # --- fasciculations: irregular discharges of whole surviving units
    fasc = np.zeros(units.size, dtype=bool)
    n_fasc = min(int(spont_rng.poisson(sp.fasciculation_rate)), units.size)
    if n_fasc:
        # A fasciculation is noticed where the unit's MUAP is seen: pick units in proportion
        # to their MUAP amplitude at this needle position.
        weight = np.ptp(templates, axis=1) + 1e-9
        pick = spont_rng.choice(units.size, size=n_fasc, replace=False, p=weight / weight.sum())
        for i in pick:
            ft = _poisson_train(float(spont_rng.uniform(0.1, 0.6)), dur, spont_rng)
            fasc[i] = ft.size > 0
            times[i] = np.concatenate([times[i], ft])
            kinds[i] = np.concatenate([kinds[i], np.full(ft.size, 3, dtype=np.int8)])

    # --- spontaneous single-fibre sources: fibrillations and positive sharp waves
    n_fib = int(spont_rng.poisson(sp.fibrillation_rate))
    n_psw = int(spont_rng.poisson(sp.psw_rate))
    aa = _aa_sigma_ms(fs)
    src_templates: list[np.ndarray] = []
    src_g0: list[int] = []
    src_times: list[np.ndarray] = []
    src_kind: list[str] = []
    for j in range(n_fib + n_psw):
        is_fib = j < n_fib
        amp_uv = float(np.exp(spont_rng.uniform(np.log(20.0), np.log(200.0))))
        if is_fib:
            sigma = float(spont_rng.uniform(0.17, 0.8))  # 1-5 ms in all
            mix = float(spont_rng.uniform(0.3, 1.0))  # biphasic (1) .. triphasic (0)
            half_ms = 5.0 * math.sqrt(sigma**2 + aa**2)
            t = np.arange(math.floor(-half_ms * fs / 1e3), math.ceil(half_ms * fs / 1e3) + 1)
            t_ms = t / fs * 1e3
            w = mix * _gauss_d1(t_ms, sigma, aa) - (1 - mix) * _mexican_hat(t_ms, sigma, aa)
            w = w * amp_uv / max(float(np.ptp(w)), 1e-9)
            g = int(t[0])
            rate_src, cv_src = float(spont_rng.uniform(0.5, 15.0)), 0.02
        else:
            tau1 = float(spont_rng.uniform(1.0, 2.5))
            tau2 = float(spont_rng.uniform(3.0, 6.0))
            neg = float(spont_rng.uniform(0.15, 0.35))
            shape = {"tau1_ms": tau1, "tau2_ms": tau2, "neg": neg}
            w, zero = _render_lowpassed(_psw_shape, -1.0, 6 * tau2, fs, **shape)
            w = w * amp_uv / max(float(w.max()), 1e-9)
            g = -zero
            rate_src, cv_src = float(spont_rng.uniform(0.5, 10.0)), 0.03
        tr = _spike_trains(np.array([rate_src]), cv_src, dur, 0.0, spont_rng)[0]
        src_templates.append(w)
        src_g0.append(g)
        src_times.append(tr)
        src_kind.append("fibrillation" if is_fib else "positive_sharp_wave")
        kinds.append(np.full(tr.size, EVENT_KINDS.index(src_kind[-1]), dtype=np.int8))

    # --- put every discharge into the signal, and note where its peak lands
    n_src = len(src_templates)
    ids = np.r_[units, 10_000 + np.arange(n_src)].astype(np.int64)
    clean = np.zeros(n)
    all_tmpl: list[np.ndarray] = [templates[i] for i in range(units.size)] + src_templates
    all_g0 = [g0] * units.size + src_g0
    all_times = times + src_times
    peak_of = [int(np.argmax(np.abs(w))) for w in all_tmpl]
    ev_sample: list[np.ndarray] = [np.empty(0, np.int64)]
    ev_unit: list[np.ndarray] = [np.empty(0, np.int64)]
    ev_kind: list[np.ndarray] = [np.empty(0, str)]
    kind_names = np.array(EVENT_KINDS)
    for k, (w, g, tt, pk) in enumerate(zip(all_tmpl, all_g0, all_times, peak_of, strict=True)):
        if tt.size == 0:
            continue
        start = np.rint(tt * fs).astype(np.int64) + g
        idx = start[:, None] + np.arange(w.size)[None, :]
        ok = (idx >= 0) & (idx < n)
        clean += np.bincount(idx[ok], weights=np.broadcast_to(w, idx.shape)[ok], minlength=n)
        peak = start + pk
        keep = (peak >= 0) & (peak < n)
        ev_sample.append(peak[keep])
        ev_unit.append(np.full(int(keep.sum()), ids[k], dtype=np.int64))
        ev_kind.append(kind_names[kinds[k]][keep])

    # --- truth
    events = pd.DataFrame(
        {
            "sample": np.concatenate(ev_sample),
            "unit_id": np.concatenate(ev_unit),
            "kind": np.concatenate(ev_kind).astype(str),
        }
    )
    events = events.sort_values(["sample", "unit_id"], kind="stable").reset_index(drop=True)
    counts = events["unit_id"].value_counts()

    nearest = np.full(units.size, np.inf)
    np.minimum.at(nearest, unit_of, d_f)
    near_count = np.bincount(unit_of[d_f < 0.5], minlength=units.size)
    enlarge = pool.n_fibres[units] / np.maximum(pool.n_fibres_orig[units], 1)
    reinn = (sp.unit_loss > 0) & (enlarge >= 1.25)
    myo = pool.unit_fibre_loss[units] >= 0.25
    # Motor units first, then the spontaneous single-fibre sources (one fibre each, always
    # active, always a disease signature).
    meas = pd.concat(
        [muap_measures(w, fs) for w in [templates, *(w[None, :] for w in src_templates)]],
        ignore_index=True,
    )
    one, yes, no = np.ones(n_src, np.int64), np.ones(n_src, bool), np.zeros(n_src, bool)
    unit_table = pd.DataFrame(
        {
            "unit_id": ids,
            "kind": ["motor_unit"] * units.size + src_kind,
            "active": np.r_[active, yes],
            "fasciculating": np.r_[fasc, no],
            "threshold": np.r_[thr, np.zeros(n_src)],
            "rate_hz": np.r_[rate, [t.size / dur for t in src_times]],
            "n_discharges": [int(counts.get(i, 0)) for i in ids],
            "distance_mm": np.r_[nearest, np.full(n_src, np.nan)],
            "n_fibres": np.r_[pool.n_fibres[units], one],
            "n_fibres_orig": np.r_[pool.n_fibres_orig[units], one],
            "n_fibres_near": np.r_[near_count, one],
            "fibre_loss": np.r_[pool.unit_fibre_loss[units], np.zeros(n_src)],
            **{c: meas[c].to_numpy() for c in _MEASURE_COLUMNS},
            "onset_offset": (meas["onset_index"] - meas["peak_index"]).to_numpy(),
            "end_offset": (meas["end_index"] - meas["peak_index"]).to_numpy(),
            "reinnervated": np.r_[reinn, no],
            "myopathic": np.r_[myo, no],
            "disease_signature": np.r_[reinn | myo, yes],
        }
    )

    # --- recording chain: noise, wander, mains
    noisy = clean + _chain_noise(sp, cfg, n, fs, noise_seq)

    meta: dict[str, Any] = {
        "level": cfg.level,
        "excitation": excitation,
        "simulated": True,
        "diagnosis": _DIAGNOSIS[sp.label],
        "severity": sp.severity,
        "line_hz": sp.line_hz,
        "n_active_units": int(active.sum()),
    }
    rec = Recording(
        signal=noisy.astype(np.float32),
        fs_hz=fs,
        record_id=record_id,
        subject_id=sp.subject_id,
        label=sp.label,
        muscle=cfg.muscle,
        meta=meta,
    )
    params = {
        "subject": sp.to_dict(),
        "config": cfg.to_dict(),
        "excitation": excitation,
        "drive": drive,
        "needle_mm": needle.tolist(),
        "needle_depth_mm": depth_mm,
        "seed_entropy": str(seq.entropy),
        "seed_spawn_key": list(seq.spawn_key),
    }
    # Template matrix of every row of the unit table, padded to one length for convenience.
    width = max(int(w.size) for w in all_tmpl) if all_tmpl else 0
    tm = np.zeros((len(all_tmpl), width), dtype=np.float32)
    for i, tmpl in enumerate(all_tmpl):
        tm[i, : tmpl.size] = tmpl
    truth = GroundTruth(
        record_id=record_id,
        subject_id=sp.subject_id,
        label=sp.label,
        fs_hz=fs,
        n_samples=n,
        events=events,
        units=unit_table,
        params=params,
        templates=tm,
        template_peak=np.asarray(peak_of, dtype=np.int64),
    )
    return SimulatedRecord(rec, truth, sp, clean.astype(np.float32) if keep_clean else None)


def _chain_noise(
    sp: SubjectParams, cfg: SimulationConfig, n: int, fs: float, seq: np.random.SeedSequence
) -> np.ndarray:
    """Instrumentation noise (white + pink), baseline wander and mains interference."""
    w_rng, p_rng, b_rng, l_rng = (np.random.default_rng(s) for s in seq.spawn(4))
    out = math.sqrt(1 - sp.pink_fraction) * sp.noise_uv * w_rng.standard_normal(n)
    if sp.pink_fraction > 0 and sp.noise_uv > 0:
        # 1/f power: shape white noise in the frequency domain (scipy has no pink generator).
        spec = np.fft.rfft(p_rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / fs)
        spec *= 1.0 / np.sqrt(np.maximum(f, 1.0))
        spec[0] = 0
        pink = np.fft.irfft(spec, n)
        pink *= math.sqrt(sp.pink_fraction) * sp.noise_uv / max(float(pink.std()), 1e-12)
        out += pink
    if sp.wander_uv > 0:
        # Below 1 Hz: evaluate on a 1 kHz grid and interpolate (exact to < 0.01 %).
        f_w = b_rng.uniform(0.05, 1.0, size=3)
        ph = b_rng.uniform(0, 2 * np.pi, size=3)
        t_c = np.arange(0.0, n / fs + 2e-3, 1e-3)
        coarse = np.sin(2 * np.pi * f_w[:, None] * t_c[None, :] + ph[:, None]).sum(0)
        wander = np.interp(np.arange(n) / fs, t_c, coarse)
        out += wander * sp.wander_uv / math.sqrt(1.5)  # 3 unit sines have RMS sqrt(1.5)
    if sp.line_uv > 0:
        # Harmonic h is the h-th power of the fundamental's phasor: one complex exponential
        # for all harmonics.
        base = np.exp(2j * np.pi * sp.line_hz / fs * np.arange(n))
        power = np.ones(n, dtype=complex)
        for h in range(1, cfg.line_harmonics + 2):
            power *= base
            if h * sp.line_hz >= fs / 2:
                break
            amp = sp.line_uv * 0.5 ** (h - 1)
            out += amp * (power * np.exp(1j * l_rng.uniform(0, 2 * np.pi))).imag
    return out


def _seed_sequence(
    seed: int | np.random.SeedSequence | None, rng: np.random.Generator | None
) -> np.random.SeedSequence:
    if seed is not None and rng is not None:
        raise ConfigError("give either seed or rng, not both")
    if rng is not None:
        return np.random.SeedSequence(rng.integers(2**63, size=4).tolist())
    if isinstance(seed, np.random.SeedSequence):
        return seed
    return np.random.SeedSequence(seed)


def simulate_recording(
    label: str,
    *,
    fs_hz: float | None = None,
    duration_s: float | None = None,
    level: Level | None = None,
    seed: int | np.random.SeedSequence | None = None,
    rng: np.random.Generator | None = None,
    subject: SubjectParams | None = None,
    config: SimulationConfig | None = None,
    record_id: str | None = None,
    keep_clean: bool = False,
) -> SimulatedRecord:
    """Simulate one needle-EMG record with its ground truth.

    Parameters
    ----------
    label
        ``"healthy"``, ``"neurogenic"`` or ``"myopathy"``.
    fs_hz, duration_s, level
        Sampling rate (Hz), length (s) and contraction level (``"low"``, ``"moderate"`` or an
        excitation in (0, 1]). Required unless ``config`` holds them; when both are given these
        override the config.
    seed, rng
        Either a seed (same seed -> bit-identical record) or a generator to draw from.
    subject
        A subject to record from (default: draw a new one of ``label``; its label must match).
    config
        Recording-chain settings (mains, noise, wander, muscle name).
    record_id
        Default ``<subject_id>-R01``.
    keep_clean
        Also return the noise-free signal in :attr:`SimulatedRecord.clean`.

    Returns
    -------
    SimulatedRecord
        ``.recording`` (:class:`~emgdx.recording.Recording`, float32 µV) and ``.truth``.

    Examples
    --------
    >>> sim = simulate_recording("neurogenic", fs_hz=10_000, duration_s=2.0, seed=1)
    >>> sim.recording.label, sim.recording.fs_hz
    ('neurogenic', 10000.0)
    """
    cfg = _resolve_config(config, fs_hz, duration_s, level)
    subject, pool, (rec_seq,) = _subject_pool(label, 1, seed, rng, subject, None, cfg)
    rid = record_id or f"{subject.subject_id}-R01"
    return _simulate_with_pool(subject, pool, cfg, rec_seq, rid, keep_clean)


def _subject_pool(
    label: str,
    n_records: int,
    seed: int | np.random.SeedSequence | None,
    rng: np.random.Generator | None,
    subject: SubjectParams | None,
    subject_id: str | None,
    cfg: SimulationConfig,
) -> tuple[SubjectParams, _Pool, list[np.random.SeedSequence]]:
    """The subject (drawn unless given), its motor-unit pool and one seed per record."""
    lab = _check_label(label)
    subj_seq, *rec_seqs = _seed_sequence(seed, rng).spawn(1 + n_records)
    if subject is None:
        subject = draw_subject(
            lab, rng=np.random.default_rng(subj_seq), subject_id=subject_id, config=cfg
        )
    elif subject.label != lab:
        raise ConfigError(f"{subject.subject_id} is {subject.label}, not {lab}")
    return subject, _build_pool(subject), rec_seqs


def simulate_subject(
    label: str,
    n_records: int,
    *,
    fs_hz: float | None = None,
    duration_s: float | None = None,
    levels: Sequence[Level] | None = None,
    seed: int | np.random.SeedSequence | None = None,
    rng: np.random.Generator | None = None,
    subject: SubjectParams | None = None,
    subject_id: str | None = None,
    config: SimulationConfig | None = None,
    keep_clean: bool = False,
) -> list[SimulatedRecord]:
    """Simulate ``n_records`` needle positions in one subject (one shared motor-unit pool).

    Parameters
    ----------
    label
        Class of the subject.
    n_records
        Records to make; ids ``<subject_id>-R01`` .. ``-Rnn``.
    fs_hz, duration_s
        Sampling rate and record length (or from ``config``).
    levels
        Contraction levels, cycled over the records (default: the config's level).
    seed, rng
        Seed or generator.
    subject
        Fixed subject parameters (default: drawn).
    subject_id
        Id for a drawn subject (default ``SIM-<H|N|M>01``).
    config
        Recording-chain settings.
    keep_clean
        Keep the noise-free signals.

    Returns
    -------
    list of SimulatedRecord
    """
    cfg = _resolve_config(config, fs_hz, duration_s, None)
    if n_records < 1:
        raise ConfigError(f"n_records must be >= 1, got {n_records}")
    subject, pool, rec_seqs = _subject_pool(label, n_records, seed, rng, subject, subject_id, cfg)
    lv = list(levels) if levels is not None else [cfg.level]
    if not lv:
        raise ConfigError("levels is empty")
    for value in lv:
        _excitation(value)
    out = []
    for i, rs in enumerate(rec_seqs):
        rcfg = replace(cfg, level=lv[i % len(lv)])
        rid = f"{subject.subject_id}-R{i + 1:02d}"
        out.append(_simulate_with_pool(subject, pool, rcfg, rs, rid, keep_clean))
    return out


# ---------------------------------------------------------------------------------------------
# cohorts
# ---------------------------------------------------------------------------------------------


@dataclass
class SimulatedCohort:
    """A simulated cohort: the :class:`~emgdx.recording.Cohort` plus its ground truth.

    Attributes
    ----------
    cohort
        Recordings and manifest (with ``severity`` and ``simulated`` columns added).
    truth
        Ground truth per ``record_id``.
    subjects
        Subject parameters per ``subject_id``.
    config
        The shared recording-chain settings.
    seed
        The cohort seed.
    """

    cohort: Cohort
    truth: dict[str, GroundTruth]
    subjects: dict[str, SubjectParams]
    config: SimulationConfig
    seed: int | None


def simulate_cohort(
    n_subjects_per_class: int = 4,
    records_per_subject: int = 5,
    *,
    fs_hz: float | None = None,
    duration_s: float | None = None,
    levels: Sequence[Level] | Mapping[str, Sequence[Level]] = ("low",),
    seed: int | None = 0,
    labels: Sequence[str] = LABELS,
    config: SimulationConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SimulatedCohort:
    """Simulate a cohort: ``n_subjects_per_class`` subjects of every class, several records each.

    Subject ids are ``SIM-H01``, ``SIM-N01``, ``SIM-M01``, ... and record ids
    ``SIM-H01-R01`` ... (H healthy, N neurogenic, M myopathy).

    Parameters
    ----------
    n_subjects_per_class, records_per_subject
        Cohort size.
    fs_hz, duration_s
        Sampling rate and record length (or from ``config``).
    levels
        Contraction levels cycled over each subject's records, or a mapping from label to
        levels (e.g. ``{"healthy": ["low", "moderate"], "neurogenic": ["low"], ...}`` mimics
        N2001's protocol, where only controls had moderate-level records).
    seed
        Cohort seed; the same seed gives bit-identical signals and truth.
    labels
        Classes to include.
    config
        Recording-chain settings (mains frequency, noise, ...).
    on_progress
        Called as ``on_progress(done, total)`` after each subject.

    Returns
    -------
    SimulatedCohort
    """
    cfg = _resolve_config(config, fs_hz, duration_s, None)
    if n_subjects_per_class < 1 or records_per_subject < 1:
        raise ConfigError("n_subjects_per_class and records_per_subject must be >= 1")
    labs = [_check_label(lab) for lab in labels]
    if isinstance(levels, Mapping):
        by_label = {_check_label(k): list(v) for k, v in levels.items()}
        missing = [lab for lab in labs if lab not in by_label]
        if missing:
            raise ConfigError(f"levels has no entry for {missing}")
    else:
        by_label = {lab: list(levels) for lab in labs}
    root = np.random.SeedSequence(seed)
    class_seqs = root.spawn(len(LABELS))
    total = len(labs) * n_subjects_per_class
    recs: list[Recording] = []
    truth: dict[str, GroundTruth] = {}
    subjects: dict[str, SubjectParams] = {}
    for lab in labs:
        # One stream per class (by its fixed position in LABELS): adding subjects to one
        # class or leaving a class out does not change the others.
        subj_seqs = class_seqs[LABELS.index(lab)].spawn(n_subjects_per_class)
        for k, sseq in enumerate(subj_seqs):
            sid = f"SIM-{_CLASS_CODE[lab]}{k + 1:02d}"
            sims = simulate_subject(
                lab,
                records_per_subject,
                config=cfg,
                levels=by_label[lab],
                seed=sseq,
                subject_id=sid,
            )
            subjects[sid] = sims[0].subject
            for s in sims:
                recs.append(s.recording)
                truth[s.recording.record_id] = s.truth
            if on_progress is not None:
                on_progress(len(subjects), total)
    cohort = Cohort.from_recordings(recs)
    cohort.manifest["severity"] = [subjects[r.subject_id].severity for r in recs]
    cohort.manifest["simulated"] = True
    return SimulatedCohort(cohort, truth, subjects, cfg, seed)


#: Acquisition faults :func:`inject_fault` can add, each one a case the QC must catch.
FAULT_KINDS: tuple[str, ...] = ("clipping", "garbage_tail", "dropout", "line_noise")


def inject_fault(
    recording: Recording,
    kind: str,
    *,
    rng: np.random.Generator,
    adc_range_uv: float = 2500.0,
) -> Recording:
    """A copy of ``recording`` with one acquisition fault of the kind real clinics produce.

    ``"clipping"``: a 1-2 s burst (needle movement) driven far past the amplifier's range and
    saturated at ±``adc_range_uv`` (``meta["digital_range_uv"]`` then holds the rails, as a
    reader of integer files would set it). ``"garbage_tail"``: the last 0.3-0.6 s replaced by
    non-EMG bit patterns (powers of two up to the rails), as when an acquisition system dumps
    its buffer. ``"dropout"``: the whole record is an exact 0 (disconnected amplifier).
    ``"line_noise"``: strong 60 Hz mains hum with two harmonics, twice the EMG's RMS.
    ``meta["injected_fault"]`` names the fault, so demos and tests can score the QC.
    """
    if kind not in FAULT_KINDS:
        raise ConfigError(f"unknown fault {kind!r}; choose from {FAULT_KINDS}")
    x = recording.signal.astype(np.float64)
    fs = recording.fs_hz
    n = x.size
    rail = float(adc_range_uv)
    if kind == "clipping":
        length = int(rng.uniform(1.0, 2.0) * fs)
        start = int(rng.integers(0, max(1, n - length)))
        burst = x[start : start + length]
        # drive the burst well past the rails whatever the muscle's own amplitude
        typical = max(float(np.percentile(np.abs(burst), 90)), 1e-6)
        x[start : start + length] = burst * max(30.0, 1.5 * rail / typical)
        x = np.clip(x, -rail, rail)
    elif kind == "garbage_tail":
        length = min(n, int(rng.uniform(0.3, 0.6) * fs))
        exponents = rng.integers(4, 16, size=length)
        counts = np.minimum(2.0**exponents, 32767.0) * rng.choice([-1.0, 1.0], size=length)
        x[n - length :] = counts / 32767.0 * rail
    elif kind == "dropout":
        x[:] = 0.0
    else:  # line_noise
        t = np.arange(n) / fs
        amp = 2.0 * math.sqrt(2.0) * float(np.sqrt(np.mean(x**2)))
        for k, rel in ((1, 1.0), (2, 0.3), (3, 0.2)):
            x += amp * rel * np.sin(2 * np.pi * 60.0 * k * t + rng.uniform(0, 2 * np.pi))
    out = recording.with_signal(x.astype(np.float32))
    out.meta["injected_fault"] = kind
    out.meta["digital_range_uv"] = (-rail, rail)
    return out


def _adc_gain(signal: np.ndarray, digital_range_uv: tuple[float, float] | None = None) -> float:
    """A round ADC gain (counts per µV) that fits the signal into int16 with headroom.

    With known rails the gain maps them onto the int16 range, so clipped stretches stay at the
    rails of the written file.
    """
    if digital_range_uv is not None:
        return 32767.0 / max(abs(float(digital_range_uv[0])), abs(float(digital_range_uv[1])))
    peak = max(float(np.max(np.abs(signal))), 1e-3)
    gain = 30_000.0 / peak
    # Round down to 3 significant digits so that the header's printed gain is exact.
    scale = 10.0 ** (math.floor(math.log10(gain)) - 2)
    return math.floor(gain / scale) * scale


def write_cohort(
    sim: SimulatedCohort, out_dir: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write a simulated cohort as PhysioNet WFDB records with manifest and ground truth.

    For every record: ``<record_id>.hea`` + ``<record_id>.dat`` (format 16, units ``uV``, gain
    chosen to fit the signal, header comments ``diagnosis:``, ``level:``, ``muscle:``,
    ``subject:``, ``simulated: true``, ``seed:``) and ``<record_id>.truth.json``
    (:func:`load_truth`). Plus ``manifest.csv`` (record_id, subject_id, label, level, muscle,
    fs_hz, duration_s, severity).

    The files are written to a temporary folder beside ``out_dir`` and moved into place only
    when all are complete.

    Parameters
    ----------
    sim
        From :func:`simulate_cohort`.
    out_dir
        Target folder; must be absent or empty unless ``overwrite``.
    overwrite
        Replace files of the same name in an existing folder.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    import wfdb

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out}: folder is not empty (pass overwrite=True to replace files)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    manifest_columns = (
        "record_id",
        "subject_id",
        "label",
        "level",
        "muscle",
        "fs_hz",
        "duration_s",
    )
    try:
        rows = []
        for rec in sim.cohort.recordings:
            x = rec.signal.astype(np.float64)
            gain = _adc_gain(x, rec.meta.get("digital_range_uv"))
            digital = np.clip(np.rint(x * gain), -32767, 32767).astype(np.int16)
            comments = [
                f"diagnosis: {rec.meta.get('diagnosis', rec.label)}",
                f"level: {rec.meta.get('level')}",
                f"muscle: {rec.muscle}",
                f"subject: {rec.subject_id}",
                "simulated: true",
                f"seed: {sim.seed}",
                f"severity: {rec.meta.get('severity', 0.0):.3f}",
            ]
            wfdb.wrsamp(
                rec.record_id,
                fs=rec.fs_hz,
                units=["uV"],
                sig_name=["EMG"],
                d_signal=digital[:, None],
                fmt=["16"],
                adc_gain=[gain],
                baseline=[0],
                comments=comments,
                write_dir=str(tmp),
            )
            sim.truth[rec.record_id].save(tmp / f"{rec.record_id}.truth.json")
            row = {column: getattr(rec, column) for column in manifest_columns}
            rows.append({**row, "severity": rec.meta.get("severity", 0.0)})
        pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False)
        if not out.exists() or not any(out.iterdir()):
            if out.exists():
                out.rmdir()
            os.replace(tmp, out)
        else:
            for f in sorted(tmp.iterdir()):
                os.replace(f, out / f.name)
            tmp.rmdir()
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
