"""Hand-crafted EMG features, vectorised over windows.

Four groups, each a block of named columns (see :attr:`FeatureRepr.feature_names`):

``time``
    ``mav_uv`` (mean absolute value), ``rms_uv``, ``log_rms`` (log10 µV), ``wl_uv_per_s``
    (waveform length per second), ``zc_per_s`` / ``ssc_per_s`` / ``wamp_per_s`` (zero
    crossings, slope-sign changes and Willison amplitude per second, Hudgins et al. 1993;
    Zardoshti-Kermani et al. 1995), ``skewness``, ``kurtosis`` (excess), ``p50_abs_uv`` /
    ``p90_abs_uv`` / ``p99_abs_uv`` (percentiles of ``|x|``) and ``noise_uv`` (robust noise
    floor: median absolute deviation / 0.6745).
``spectral``
    From a Welch PSD: ``mean_freq_hz``, ``median_freq_hz`` and, per band, the fraction of
    total power ``band_<lo>_<hi>hz``.
``wavelet``
    From a discrete wavelet decomposition (:func:`pywt.wavedec`): relative energy of every
    sub-band (``wt_energy_a<L>``, ``wt_energy_d<L>`` ... ``wt_energy_d1``), the normalised
    Shannon entropy of the energy within every sub-band (``wt_entropy_*``: 1 when energy is
    spread evenly over the coefficients, near 0 when a few spikes hold it) and the entropy of
    the relative energies across sub-bands (``wt_entropy_total``).
``muap``
    Spikes are samples where ``|x|`` exceeds ``spike_noise_k`` noise floors and is the
    largest within ``± spike_min_gap_ms``. ``spike_count``, ``spike_rate_hz``; per spike the
    duration (contiguous stretch around the peak above ``duration_noise_k`` noise floors,
    bridging gaps up to ``duration_gap_ms``), the phases (baseline crossings + 1 within the
    duration, counting only excursions beyond the duration level and beyond
    ``phase_min_fraction`` of the spike's peak, so that noise ripples in the tails do not
    count) and the peak-to-peak
    amplitude, averaged over the window's spikes (``spike_duration_ms``, ``spike_phases``,
    ``spike_p2p_uv``; 0 when the window has no spike); ``turns_per_s`` (local extrema that
    differ from both neighbouring extrema by at least the turn threshold; a vectorised,
    non-hysteresis form of Willison's turns count).
``qemg`` (not in the default groups: it is slower)
    Quantitative EMG as a clinician reads it (:mod:`emgdx.qemg`): motor units found by
    detection, alignment and templates, with the medians of their amplitude, duration,
    phases and turns, the polyphasic and satellite fractions, their discharge rate, and the
    interference pattern's turns per second and amplitude per turn. Longer windows hold more
    discharges per unit (2-5 s suit it).

Every threshold is either absolute (µV) or relative to the window's own noise floor, so no
statistic is fitted across windows and nothing can leak between subjects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pywt
from scipy import ndimage, signal, stats

from emgdx.config import check_fields
from emgdx.errors import ConfigError, SignalError
from emgdx.qemg import MAD_TO_SIGMA, QEMG_NAMES, summarise
from emgdx.represent._common import AMPLITUDE_FLOOR_UV, ReprBase

__all__ = ["DEFAULT_GROUPS", "FEATURE_GROUPS", "FeatureRepr"]

FEATURE_GROUPS: tuple[str, ...] = ("time", "spectral", "wavelet", "muap", "qemg")
#: Groups a feature representation computes unless told otherwise.
DEFAULT_GROUPS: tuple[str, ...] = ("time", "spectral", "wavelet", "muap")

# Windows per float64 block: bounded memory (~25 MB per block at 6000 samples).
_CHUNK_ROWS = 512
_TIME_NAMES = (
    "mav_uv",
    "rms_uv",
    "log_rms",
    "wl_uv_per_s",
    "zc_per_s",
    "ssc_per_s",
    "wamp_per_s",
    "skewness",
    "kurtosis",
    "p50_abs_uv",
    "p90_abs_uv",
    "p99_abs_uv",
    "noise_uv",
)
_MUAP_NAMES = (
    "spike_count",
    "spike_rate_hz",
    "spike_duration_ms",
    "spike_phases",
    "spike_p2p_uv",
    "turns_per_s",
)


def _band_name(band: tuple[float, float]) -> str:
    return f"band_{band[0]:g}_{band[1]:g}hz"


def _threshold(absolute_uv: float | None, noise_k: float, noise: np.ndarray) -> np.ndarray:
    """Per-window threshold: ``absolute_uv`` when set, else ``noise_k`` noise floors."""
    if absolute_uv is not None:
        return np.full(noise.shape[0], float(absolute_uv))
    return noise_k * noise


def _entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of every row of ``p``; zero entries contribute nothing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)


@dataclass(frozen=True)
class FeatureRepr(ReprBase):
    """A fixed-length vector of classical EMG features per window (``x``: ``[n, n_features]``).

    Parameters
    ----------
    groups
        Feature groups to compute, any of ``"time"``, ``"spectral"``, ``"wavelet"``,
        ``"muap"``, ``"qemg"`` (columns come in this order whatever the order given).
    threshold_uv
        Threshold of ZC, SSC and WAMP in µV; ``None`` uses ``threshold_noise_k`` times the
        window's noise floor instead (robust across amplifier gains).
    threshold_noise_k
        Relative threshold when ``threshold_uv`` is ``None``.
    bands_hz
        Bands whose share of the total power is reported; edges above Nyquist are clipped.
    welch_window_ms
        Welch segment length (Hann, 50 % overlap).
    wavelet, wavelet_level
        DWT mother wavelet and number of levels.
    spike_noise_k
        Spike detection threshold in noise floors.
    spike_min_gap_ms
        A spike must be the largest ``|x|`` within this distance on both sides.
    spike_span_ms
        Longest stretch searched around a spike peak for its duration (total, centred).
    duration_noise_k
        Level (noise floors) that bounds a spike's duration.
    duration_gap_ms
        Gaps below the duration level shorter than this do not end the spike.
    phase_min_fraction
        A phase counts only if it exceeds this fraction of the spike's peak ``|x|``.
    turns_uv
        Minimal excursion of a turn in µV; ``None`` uses ``turns_noise_k`` noise floors.
    turns_noise_k
        Relative turn threshold when ``turns_uv`` is ``None``.
    """

    name: ClassVar[str] = "features"
    min_samples: ClassVar[int] = 8

    groups: tuple[str, ...] = DEFAULT_GROUPS
    threshold_uv: float | None = None
    threshold_noise_k: float = 0.5
    bands_hz: tuple[tuple[float, float], ...] = (
        (20.0, 150.0),
        (150.0, 500.0),
        (500.0, 1000.0),
        (1000.0, 2500.0),
    )
    welch_window_ms: float = 32.0
    wavelet: str = "db4"
    wavelet_level: int = 5
    spike_noise_k: float = 5.0
    spike_min_gap_ms: float = 3.0
    spike_span_ms: float = 30.0
    duration_noise_k: float = 2.0
    duration_gap_ms: float = 1.0
    phase_min_fraction: float = 0.1
    turns_uv: float | None = None
    turns_noise_k: float = 2.0

    def __post_init__(self) -> None:
        groups = tuple(self.groups) if not isinstance(self.groups, str) else (self.groups,)
        unknown = [g for g in groups if g not in FEATURE_GROUPS]
        if unknown or not groups:
            raise ConfigError(
                f"features: groups must be a non-empty subset of {FEATURE_GROUPS}, got {groups}"
            )
        object.__setattr__(self, "groups", tuple(g for g in FEATURE_GROUPS if g in groups))
        try:
            bands = tuple((float(lo), float(hi)) for lo, hi in self.bands_hz)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"features: bands_hz must be (low, high) pairs, got {self.bands_hz!r}"
            ) from exc
        bad = [b for b in bands if not (0 <= b[0] < b[1] and math.isfinite(b[1]))]
        if bad:
            raise ConfigError(f"features: bands need 0 <= low < high, got {bad}")
        object.__setattr__(self, "bands_hz", bands)
        problems = check_fields(
            self,
            optional="threshold_uv turns_uv",
            positive="threshold_noise_k welch_window_ms spike_noise_k spike_min_gap_ms "
            "spike_span_ms duration_noise_k turns_noise_k",
            non_negative="phase_min_fraction duration_gap_ms threshold_uv turns_uv",
            positive_int="wavelet_level",
        )
        self._check(problems, normalise=None)
        if self.wavelet not in pywt.wavelist(kind="discrete"):
            raise ConfigError(f"features: {self.wavelet!r} is not a discrete PyWavelets wavelet")

    # ---- names ---------------------------------------------------------------------------

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Column names of ``x``, in order."""
        names: list[str] = []
        if "time" in self.groups:
            names += _TIME_NAMES
        if "spectral" in self.groups:
            names += ["mean_freq_hz", "median_freq_hz", *map(_band_name, self.bands_hz)]
        if "wavelet" in self.groups:
            bands = [f"a{self.wavelet_level}"] + [f"d{j}" for j in range(self.wavelet_level, 0, -1)]
            names += [f"wt_energy_{b}" for b in bands]
            names += [f"wt_entropy_{b}" for b in bands] + ["wt_entropy_total"]
        if "muap" in self.groups:
            names += _MUAP_NAMES
        if "qemg" in self.groups:
            names += QEMG_NAMES
        return tuple(names)

    def _x_shape(self, n_times: int, fs_hz: float) -> tuple[int, ...]:
        """``(n_features,)``."""
        self._check_length(n_times, fs_hz)
        return (len(self.feature_names),)

    def _check_length(self, n_times: int, fs_hz: float) -> None:
        if "wavelet" in self.groups:
            max_level = pywt.dwt_max_level(n_times, self.wavelet)
            if self.wavelet_level > max_level:
                raise SignalError(
                    f"features: windows of {n_times} samples allow at most {max_level} "
                    f"{self.wavelet} levels, {self.wavelet_level} requested"
                )
        if "spectral" in self.groups and round(self.welch_window_ms * 1e-3 * fs_hz) < 4:
            raise ConfigError(
                f"features: welch_window_ms={self.welch_window_ms} is under 4 samples at "
                f"fs_hz={fs_hz}"
            )

    # ---- transform -----------------------------------------------------------------------

    def _x(self, arr: np.ndarray, fs_hz: float) -> np.ndarray:
        """``[n, n_features]`` feature matrix, columns named by :attr:`feature_names`."""
        self._check_length(arr.shape[1], fs_hz)
        out = np.empty((arr.shape[0], len(self.feature_names)), dtype=np.float32)
        for i in range(0, arr.shape[0], _CHUNK_ROWS):
            block = arr[i : i + _CHUNK_ROWS].astype(np.float64)
            noise = np.median(np.abs(block - np.median(block, axis=1, keepdims=True)), axis=1)
            noise /= MAD_TO_SIGMA
            cols: list[np.ndarray] = []
            if "time" in self.groups:
                cols += self._time(block, fs_hz, noise)
            if "spectral" in self.groups:
                cols += self._spectral(block, fs_hz)
            if "wavelet" in self.groups:
                cols += self._wavelet(block)
            if "muap" in self.groups:
                cols += self._muap(block, fs_hz, noise)
            if "qemg" in self.groups:
                cols += list(np.stack([summarise(w, fs_hz) for w in block], axis=1))
            out[i : i + _CHUNK_ROWS] = np.stack(cols, axis=1)
        return out

    def _time(self, x: np.ndarray, fs: float, noise: np.ndarray) -> list[np.ndarray]:
        duration_s = x.shape[1] / fs
        thr = _threshold(self.threshold_uv, self.threshold_noise_k, noise)[:, None]
        d = np.diff(x, axis=1)
        absd = np.abs(d)
        zc = (x[:, :-1] * x[:, 1:] < 0) & (absd >= thr)
        # SSC: a local extremum whose rise or fall on either side reaches the threshold.
        ssc = (d[:, :-1] * d[:, 1:] < 0) & ((absd[:, :-1] >= thr) | (absd[:, 1:] >= thr))
        wamp = absd >= np.maximum(thr, np.finfo(float).tiny)  # never count flat steps
        absx = np.abs(x)
        rms = np.sqrt(np.mean(x * x, axis=1))
        p50, p90, p99 = np.percentile(absx, [50, 90, 99], axis=1)
        flat = x.std(axis=1) <= 1e-12
        # Moments of a flat window are undefined (0/0); report the Gaussian values instead.
        with np.errstate(invalid="ignore", divide="ignore"):
            skew = np.where(flat, 0.0, stats.skew(x, axis=1))
            kurt = np.where(flat, 0.0, stats.kurtosis(x, axis=1))
        return [
            absx.mean(axis=1),
            rms,
            np.log10(np.maximum(rms, AMPLITUDE_FLOOR_UV)),
            absd.sum(axis=1) / duration_s,
            zc.sum(axis=1) / duration_s,
            ssc.sum(axis=1) / duration_s,
            wamp.sum(axis=1) / duration_s,
            skew,
            kurt,
            p50,
            p90,
            p99,
            noise,
        ]

    def _spectral(self, x: np.ndarray, fs: float) -> list[np.ndarray]:
        nperseg = min(x.shape[1], round(self.welch_window_ms * 1e-3 * fs))
        f, psd = signal.welch(x, fs=fs, window="hann", nperseg=nperseg, axis=-1)
        total = psd.sum(axis=1)
        safe = np.where(total > 0, total, 1.0)
        mean_f = (psd * f).sum(axis=1) / safe
        # Median frequency: where the cumulative power crosses half, interpolated linearly
        # between bins (the PSD is treated as piecewise constant around bin centres).
        cum = np.cumsum(psd, axis=1) / safe[:, None]
        k = np.clip((cum < 0.5).sum(axis=1), 0, f.size - 1)
        rows = np.arange(x.shape[0])
        prev = np.where(k > 0, cum[rows, np.maximum(k - 1, 0)], 0.0)
        step = cum[rows, k] - prev
        frac = np.where(step > 0, (0.5 - prev) / np.where(step > 0, step, 1.0), 0.5)
        df = f[1] - f[0]
        median_f = f[k] - df / 2 + frac * df
        median_f = np.clip(median_f, 0.0, fs / 2)
        cols = [np.where(total > 0, mean_f, 0.0), np.where(total > 0, median_f, 0.0)]
        for lo, hi in self.bands_hz:
            # Bands are half-open [lo, hi); one reaching Nyquist includes the Nyquist bin.
            upper = (f < hi) if hi < fs / 2 else (f <= fs / 2)
            in_band = (f >= lo) & upper
            cols.append(psd[:, in_band].sum(axis=1) / safe)
        return cols

    def _wavelet(self, x: np.ndarray) -> list[np.ndarray]:
        coeffs = pywt.wavedec(x, self.wavelet, level=self.wavelet_level, axis=-1)
        energies = np.stack([(c * c).sum(axis=1) for c in coeffs], axis=1)
        total = energies.sum(axis=1, keepdims=True)
        rel = energies / np.where(total > 0, total, 1.0)
        entropies = []
        for c, e in zip(coeffs, energies.T, strict=True):
            h = _entropy((c * c) / np.where(e > 0, e, 1.0)[:, None])
            entropies.append(h / math.log(c.shape[1]) if c.shape[1] > 1 else np.zeros_like(h))
        h_total = _entropy(rel) / math.log(rel.shape[1])
        return [*rel.T, *entropies, h_total]

    def _muap(self, x: np.ndarray, fs: float, noise: np.ndarray) -> list[np.ndarray]:
        n, n_times = x.shape
        duration_s = n_times / fs
        absx = np.abs(x)
        gap = max(1, round(self.spike_min_gap_ms * 1e-3 * fs))
        # A spike: above threshold, the maximum of |x| within +-gap, and strictly above its
        # left neighbour (so a flat-topped peak counts once).
        local_max = ndimage.maximum_filter1d(absx, size=2 * gap + 1, axis=1, mode="constant")
        rising = np.zeros_like(absx, dtype=bool)
        rising[:, 1:] = absx[:, 1:] > absx[:, :-1]
        peaks = (absx >= local_max) & rising & (absx > self.spike_noise_k * noise[:, None])
        peaks &= noise[:, None] > 0  # a noiseless (e.g. flat) window has no defined threshold
        row, pos = np.nonzero(peaks)
        count = np.bincount(row, minlength=n).astype(np.float64)

        dur_ms, phases, p2p = self._spike_shapes(x, fs, noise, row, pos)
        mean_of = np.where(count > 0, count, 1.0)
        cols = [
            count,
            count / duration_s,
            np.bincount(row, weights=dur_ms, minlength=n) / mean_of,
            np.bincount(row, weights=phases, minlength=n) / mean_of,
            np.bincount(row, weights=p2p, minlength=n) / mean_of,
            self._turns(x, noise) / duration_s,
        ]
        return cols

    def _spike_shapes(
        self, x: np.ndarray, fs: float, noise: np.ndarray, row: np.ndarray, pos: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Duration (ms), phases and peak-to-peak (µV) of every spike, vectorised over spikes."""
        if row.size == 0:
            empty = np.zeros(0)
            return empty, empty, empty
        n_times = x.shape[1]
        half = max(1, round(self.spike_span_ms * 1e-3 * fs / 2))
        offsets = np.arange(-half, half + 1)
        idx = pos[:, None] + offsets[None, :]
        inside = (idx >= 0) & (idx < n_times)
        seg = np.where(inside, x[row[:, None], np.clip(idx, 0, n_times - 1)], 0.0)
        level = self.duration_noise_k * noise[row][:, None]
        above = np.abs(seg) > level
        bridge = round(self.duration_gap_ms * 1e-3 * fs)
        if bridge > 0:  # close gaps shorter than duration_gap_ms (within each spike's row)
            structure = np.ones((1, bridge + 1), dtype=bool)
            above = above | ndimage.binary_closing(above, structure=structure)
        above[:, half] = True
        # Extent of the run of 'above' that contains the peak (column ``half``).
        below_left = ~above[:, :half][:, ::-1]  # walking left from the peak
        below_right = ~above[:, half + 1 :]
        left = np.where(below_left.any(axis=1), below_left.argmax(axis=1), half)
        right = np.where(below_right.any(axis=1), below_right.argmax(axis=1), half)
        on = half - left
        off = half + right
        cols = np.arange(seg.shape[1])[None, :]
        in_span = (cols >= on[:, None]) & (cols <= off[:, None])
        duration_ms = (off - on + 1) / fs * 1e3

        # Phases: sign changes between successive samples beyond the phase level in the span.
        peak_uv = np.abs(seg[:, half])
        phase_level = np.maximum(level[:, 0], self.phase_min_fraction * peak_uv)[:, None]
        signs = np.where(in_span & (np.abs(seg) > phase_level), np.sign(seg), 0.0)
        pos_idx = np.where(signs != 0, cols, -1)
        last = np.maximum.accumulate(pos_idx, axis=1)  # most recent nonzero-sign column
        prev_last = np.concatenate([np.full((seg.shape[0], 1), -1), last[:, :-1]], axis=1)
        prev_sign = np.where(
            prev_last >= 0, np.take_along_axis(signs, np.maximum(prev_last, 0), axis=1), 0.0
        )
        changes = ((signs != 0) & (prev_sign != 0) & (signs != prev_sign)).sum(axis=1)
        phases = changes + 1.0

        big = np.finfo(float).max
        p2p = np.where(in_span, seg, -big).max(axis=1) - np.where(in_span, seg, big).min(axis=1)
        return duration_ms, phases, p2p

    def _turns(self, x: np.ndarray, noise: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        thr = _threshold(self.turns_uv, self.turns_noise_k, noise)
        d = np.diff(x, axis=1)
        ext_row, ext_col = np.nonzero(d[:, :-1] * d[:, 1:] < 0)
        if ext_row.size < 3:
            return np.zeros(n)
        values = x[ext_row, ext_col + 1]
        same_prev = np.concatenate([[False], ext_row[1:] == ext_row[:-1]])
        same_next = np.concatenate([ext_row[:-1] == ext_row[1:], [False]])
        step_prev = np.abs(np.diff(values, prepend=values[0]))
        step_next = np.abs(np.diff(values, append=values[-1]))
        t = thr[ext_row]
        turn = same_prev & same_next & (step_prev >= t) & (step_next >= t) & (t > 0)
        return np.bincount(ext_row[turn], minlength=n).astype(np.float64)
