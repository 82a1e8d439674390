"""Is this needle EMG at all? Checks that look past faults in a good recording.

:func:`emgdx.quality.assess` finds faults in a recording (clipping, flat stretches, a corrupt
tail, hum). This module asks the question before it: does the usable signal look like needle
EMG, i.e. motor-unit potentials standing out of a background? :func:`needle_checks` returns
flags (names below) and the measurements behind them. The thresholds live in
:class:`NeedleConfig`; the numbers quoted come from ``benchmarks/safety.py`` over the 355 N2001
and 200 Algiers records and the generated panel of docs/safety.md.

``no_mu_activity``
    Motor-unit potentials are brief (a few ms), sharp and sparse, so needle EMG high-passed at
    150 Hz has a heavy-tailed amplitude distribution, also at strong effort, where potentials
    overlap. Noise of any colour, filtered noise (surface-EMG-like) and tones have a Gaussian
    or lighter tail. The measure is the excess kurtosis of the 150 Hz high-passed (and, when QC
    found hum, notched) signal after dividing it by its own RMS over 0.25 s, so that a slowly
    modulated noise (a contraction pattern) does not pass for spiky: the *local kurtosis*.
    Gaussian noise gives 0 (generated panel: -0.11 to 0.04), tones -1.5 to -0.3, real records
    1.1 and more (one Algiers record dominated by hum harmonics: -0.3). Below
    ``min_local_kurtosis`` (0.5) the record has no motor-unit activity, and one of the causes
    below names what it holds instead:

    ``tonal``: at least ``tonal_share`` (80 %) of the power above 20 Hz lies within 2 Hz of
    its five largest spectral peaks (tone mixtures: 97-100 %; real records at most 59 %).
    ``ecg_dominated``: at least four regular beats, 30 a minute or more (intervals 0.3-2 s,
    coefficient of variation below 0.2), stand far out of the 5-40 Hz band.
    ``surface_emg_like``: less than ``surface_hf_share`` (20 %) of the power above 20 Hz lies
    above 500 Hz: a smooth low-frequency spectrum without the sharp edges of needle potentials.
    ``stationary_noise``: none of those: broadband noise.

``implausible_amplitude``
    The RMS above 20 Hz is outside ``amplitude_rms_uv`` (2-3,000 µV), or the 99.9th percentile
    of the 150 Hz high-passed magnitude exceeds ``amplitude_peak_uv`` (15,000 µV). The real
    records span 6.4-1,065 µV RMS; a wrongly scaled file (µV read as mV, or the reverse) lands
    outside. A channel below 0.5 µV is ``empty`` (see :mod:`emgdx.quality`).

``saturated``
    At least ``saturated_fraction`` (30 %) of the record sits at the ADC rails (the clipped
    real records: 0.5-15 %): too much of the signal is lost to judge what is left.

``movement_artefact``
    The slow part of the signal (2-20 Hz, taken out by the band-pass before analysis) has more
    than ``movement_ratio`` (3) times the RMS of the EMG above 20 Hz: the needle or the limb
    moved. A warning: the band-pass removes the movement, and what is left is judged.

Everything runs on at most ``max_s`` (10 s) of the usable samples: about 15-20 ms for an
11 s N2001 record on one core (most of it the 150 Hz high-pass at 23 kHz).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import uniform_filter1d
from scipy.signal import find_peaks, get_window

from emgdx.config import JsonConfig, check_fields
from emgdx.errors import ConfigError
from emgdx.preprocess import design_filter

__all__ = [
    "NEEDLE_FLAGS",
    "NEEDLE_METRICS",
    "NOT_NEEDLE_CAUSES",
    "NeedleConfig",
    "needle_checks",
    "welch_psd",
]

#: Flags this module can raise, in report order.
NEEDLE_FLAGS: tuple[str, ...] = (
    "no_mu_activity",
    "stationary_noise",
    "surface_emg_like",
    "ecg_dominated",
    "tonal",
    "implausible_amplitude",
    "saturated",
    "movement_artefact",
)
#: Measurements :func:`needle_checks` returns (NaN where not measured).
NEEDLE_METRICS: tuple[str, ...] = (
    "local_kurtosis",
    "tonal_share",
    "hf_share",
    "emg_rms_uv",
    "peak_uv",
    "movement_ratio",
)
#: What a record without motor-unit activity holds instead (one of them accompanies
#: ``no_mu_activity``).
NOT_NEEDLE_CAUSES: tuple[str, ...] = (
    "tonal",
    "ecg_dominated",
    "surface_emg_like",
    "stationary_noise",
)


@dataclass(frozen=True)
class NeedleConfig(JsonConfig):
    """Thresholds of :func:`needle_checks` (see the module docstring for each value)."""

    max_s: float = 10.0
    highpass_hz: float = 150.0
    envelope_s: float = 0.25
    min_local_kurtosis: float = 0.5
    tonal_share: float = 0.8
    surface_hf_share: float = 0.2
    amplitude_rms_uv: tuple[float, float] = (2.0, 3000.0)
    amplitude_peak_uv: float = 15000.0
    saturated_fraction: float = 0.3
    movement_ratio: float = 3.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "amplitude_rms_uv", tuple(float(v) for v in self.amplitude_rms_uv))
        problems = check_fields(
            self,
            fraction="tonal_share surface_hf_share saturated_fraction",
            positive="max_s highpass_hz envelope_s amplitude_peak_uv movement_ratio",
        )
        lo_hi = self.amplitude_rms_uv
        if len(lo_hi) != 2 or not 0 <= lo_hi[0] < lo_hi[1]:
            problems.append(f"amplitude_rms_uv must be (low, high) with 0 <= low < high: {lo_hi}")
        if problems:
            raise ConfigError("invalid NeedleConfig: " + "; ".join(problems))


def welch_psd(x: np.ndarray, fs_hz: float, n_per: int) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Welch PSD (Hann window, 50 % overlap, mean removed per segment).

    The same estimator as :func:`scipy.signal.welch` with those settings, written as one
    batched FFT because scipy's version transforms segment by segment, which costs ~2 ms per
    record here, most of the per-record QC budget.
    """
    hop = n_per // 2
    segments = sliding_window_view(x, n_per)[::hop]
    window = get_window("hann", n_per)
    centred = segments - segments.mean(axis=1, keepdims=True)
    spectra = np.fft.rfft(centred * window, axis=1)
    psd = (spectra.real**2 + spectra.imag**2).mean(axis=0) / (fs_hz * float(window @ window))
    psd[1 : (n_per + 1) // 2] *= 2  # one-sided: fold negative frequencies (not DC/Nyquist)
    return np.fft.rfftfreq(n_per, 1 / fs_hz), psd


def _spectrum(x: np.ndarray, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Welch PSD of ``x`` at about 2 Hz resolution, box-car averaged down to 4-8 kHz first
    (and corrected for the box-car's gain) so that a 10 s record costs a few ms."""
    q = max(1, int(fs_hz // 4000))
    fs_d = fs_hz / q
    m = x.size // q
    x_d = x[: m * q].reshape(m, q).mean(axis=1) if q > 1 else x
    n_per = min(2 ** math.ceil(math.log2(fs_d / 2)), 2 ** int(math.log2(max(m, 2))))
    freqs, psd = welch_psd(x_d, fs_d, n_per)
    if q > 1:
        w = np.pi * np.maximum(freqs, 1e-9) / fs_hz
        gain = np.sin(q * w) / (q * np.sin(w))
        psd = psd / np.maximum(gain**2, 1e-3)
    return freqs, psd


def _local_kurtosis(hp: np.ndarray, fs_hz: float, envelope_s: float) -> float:
    """Excess kurtosis of ``hp`` divided by its moving RMS over ``envelope_s``."""
    squared = hp * hp
    power = uniform_filter1d(squared, max(3, round(envelope_s * fs_hz)))
    power += 1e-12 * (float(power.max()) + 1e-30)
    z2 = squared / power  # the normalised signal, squared: no square root needed
    m2 = float(z2.mean())
    return float(np.dot(z2, z2) / z2.size / (m2 * m2) - 3.0) if m2 > 0 else math.nan


def _tonal_share(freqs: np.ndarray, psd: np.ndarray) -> float:
    band = freqs >= 20
    p = psd[band]
    total = float(p.sum())
    peaks, _ = find_peaks(p)
    if total <= 0 or not peaks.size:
        return 0.0
    top = peaks[np.argsort(p[peaks])[-5:]]
    half = max(1, round(2.0 / float(freqs[1] - freqs[0])))
    near = np.zeros(p.size, dtype=bool)
    for i in top:
        near[max(0, i - half) : i + half + 1] = True
    return float(p[near].sum() / total)


def _regular_beats(x: np.ndarray, fs_hz: float) -> bool:
    """At least four regular, prominent beats (ECG), 30 a minute or more, in the 5-40 Hz band."""
    q = max(1, int(fs_hz // 250))
    m = x.size // q
    fs_d = fs_hz / q
    if m < 3 * fs_d or fs_d <= 90:
        return False
    low = design_filter(fs_d, (5.0, 40.0), 2).apply(x[: m * q].reshape(m, q).mean(axis=1))
    mag = np.abs(low)
    height = max(0.5 * float(mag.max()), 8 * float(np.median(mag)))
    peaks, _ = find_peaks(mag, height=height, distance=max(1, round(0.3 * fs_d)))
    if peaks.size < max(4, 0.5 * m / fs_d):  # at least 30 beats/min
        return False
    rr = np.diff(peaks) / fs_d
    return bool(rr.min() >= 0.3 and rr.max() <= 2.0 and rr.std() / rr.mean() < 0.2)


def needle_checks(
    x: np.ndarray,
    fs_hz: float,
    *,
    line_hz: float | None,
    n_harmonics: int,
    clipped_fraction: float,
    config: NeedleConfig | None = None,
) -> tuple[set[str], dict[str, float]]:
    """Flags (:data:`NEEDLE_FLAGS`) and measurements for the usable samples ``x`` (µV).

    Parameters
    ----------
    x
        The usable samples of one record, in order (at least a second of them).
    fs_hz
        Their sampling rate.
    line_hz, n_harmonics
        Mains frequency QC found (``None``: none) and how many of its harmonics to notch.
    clipped_fraction
        Share of the record at the ADC rails (from QC).
    """
    cfg = config or NeedleConfig()
    nan = math.nan
    metrics = dict.fromkeys(NEEDLE_METRICS, nan)
    flags: set[str] = set()
    if clipped_fraction >= cfg.saturated_fraction:
        flags.add("saturated")
    n = min(x.size, round(cfg.max_s * fs_hz))
    if n < fs_hz or fs_hz <= 2.2 * cfg.highpass_hz:
        return flags, metrics  # too short or too slow to judge: other checks say so
    sig = x[:n].astype(np.float32)
    sig -= sig.mean(dtype=np.float64)
    # One float32 cascade: the high-pass with QC's mains notches (harmonics above 150 Hz).
    hp = design_filter(fs_hz, (cfg.highpass_hz, fs_hz), 4, line_hz, n_harmonics).apply(sig)
    hp = hp.astype(np.float64)
    freqs, psd = _spectrum(sig, fs_hz)
    df = float(freqs[1] - freqs[0])
    emg = float(psd[freqs >= 20].sum() * df)
    slow = float(psd[(freqs >= 2) & (freqs < 20)].sum() * df)
    metrics["emg_rms_uv"] = emg_rms = math.sqrt(emg)
    metrics["movement_ratio"] = math.sqrt(slow / emg) if emg > 0 else math.inf
    metrics["hf_share"] = float(psd[freqs >= 500].sum() * df / emg) if emg > 0 else 0.0
    metrics["tonal_share"] = _tonal_share(freqs, psd)
    metrics["peak_uv"] = peak = float(np.percentile(np.abs(hp), 99.9))
    metrics["local_kurtosis"] = _local_kurtosis(hp, fs_hz, cfg.envelope_s)
    lo, hi = cfg.amplitude_rms_uv
    if not lo <= emg_rms <= hi or peak > cfg.amplitude_peak_uv:
        flags.add("implausible_amplitude")
    if metrics["movement_ratio"] > cfg.movement_ratio:
        flags.add("movement_artefact")
    lk = metrics["local_kurtosis"]
    if math.isfinite(lk) and lk < cfg.min_local_kurtosis:
        flags.add("no_mu_activity")
        if metrics["tonal_share"] >= cfg.tonal_share:
            flags.add("tonal")
        elif _regular_beats(sig, fs_hz):
            flags.add("ecg_dominated")
        elif metrics["hf_share"] < cfg.surface_hf_share:
            flags.add("surface_emg_like")
        else:
            flags.add("stationary_noise")
    return flags, metrics
