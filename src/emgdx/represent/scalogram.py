"""Complex Morlet scalogram of each window, pooled in time to a fixed width.

Three interchangeable implementations (tests check that they agree; ``fft`` and ``torch`` to
1e-4, ``pywt`` up to its discretisation, described below):

* ``"pywt"``: :func:`pywt.cwt` with the ``cmor{B}-{C}`` wavelet (the reference);
* ``"fft"``: the wavelet's closed-form Fourier transform applied in the frequency domain with
  :mod:`scipy.fft` (numpy arrays, float32, threads);
* ``"torch"``: the same arithmetic with :mod:`torch.fft`, on a CUDA device when one is given
  (or ``device="auto"`` and one is available).

Why a hand-written FFT version next to PyWavelets: ``pywt.cwt`` works in float64, integrates
and re-samples the wavelet for every scale and differentiates the result; the complex Morlet
has an exact Gaussian spectrum, so one forward FFT per window (per padding length) and one
inverse FFT per scale in float32 do the same job. ``benchmarks/bench_cwt.py`` measures the
speed of each; the default ``method`` is the fastest CPU implementation it found.

The FFT form is also the more faithful one at the top of the band: a wavelet sampled in time
(as PyWavelets does) aliases the part of its spectrum beyond Nyquist into negative
frequencies, so its coefficients stop being analytic near Nyquist (at 2.4 kHz and 6 kHz
sampling, the ridge power is off by ~40 %); PyWavelets' resampled integrated wavelet also
leaks about -40 dB of power off the ridge. Up to fs/5 (where the sampled wavelet does not
alias) the FFT form equals a direct correlation with the sampled wavelet to 2e-3 (tested).

The wavelet (PyWavelets' ``cmor``): ``psi(t) = (pi B)^-1/2 exp(-t^2 / B) exp(2 pi i C t)``
whose Fourier transform is ``Psi(f) = exp(-pi^2 B (f - C)^2)``. At scale ``a`` (samples) it
peaks at ``C / a`` cycles per sample, i.e. ``C fs / a`` Hz; coefficients are
``W(a, b) = a^-1/2 sum_t x(t) conj(psi((t - b) / a))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pywt
import scipy.fft

from emgdx.config import check_fields
from emgdx.errors import ConfigError, SignalError, require
from emgdx.represent._common import (
    ReprBase,
    band_problems,
    check_fs,
    check_windows,
    zscore_rows,
)

__all__ = ["CWT_METHODS", "ScalogramRepr", "cwt_power"]

CWT_METHODS: tuple[str, ...] = ("fft", "torch", "pywt")

# Power floor (µV²) before the log, so that a flat window gives a finite image.
_POWER_FLOOR = 1e-10
# Complex coefficients held at once per chunk (elements): ~128 MB of complex64 on the CPU
# (torch and pywt: all scales at once), ~4 MB for the scale-by-scale FFT method.
_CPU_CHUNK_ELEMENTS = 16_000_000
_CPU_SCALE_CHUNK_ELEMENTS = 500_000
_GPU_CHUNK_ELEMENTS = 256_000_000
# The Gaussian envelope of the wavelet is cut at this many standard deviations when padding
# (exp(-18) ~ 2e-8 of its peak): enough zeros that the circular FFT correlation is linear.
_PAD_SIGMAS = 6.0


def _pool_edges(n_times: int, n_out: int) -> np.ndarray:
    """Column boundaries of ``n_out`` near-equal time segments (first 0, last ``n_times``)."""
    return np.round(np.linspace(0, n_times, n_out + 1)).astype(np.int64)


def _pool_numpy(power: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of ``power`` over each segment along the last axis."""
    sums = np.add.reduceat(power, edges[:-1], axis=-1)
    return sums / np.diff(edges).astype(power.dtype)


def _morlet_gain(scales: np.ndarray, nfft: int, bandwidth: float, center_freq: float) -> np.ndarray:
    """``sqrt(a) Psi(a f)`` for every scale (rows) and non-negative FFT bin (columns)."""
    f = np.arange(nfft // 2 + 1) / nfft  # cycles per sample
    af = scales[:, None] * f[None, :]
    gain = np.sqrt(scales)[:, None] * np.exp(-(math.pi**2) * bandwidth * (af - center_freq) ** 2)
    return gain.astype(np.float32)


def _reach(scales: np.ndarray, bandwidth: float) -> np.ndarray:
    """Zero padding (samples) each scale needs for the circular FFT correlation to be linear."""
    # Time-domain envelope of psi(t/a): exp(-t^2 / (B a^2)), standard deviation a sqrt(B/2).
    return np.ceil(_PAD_SIGMAS * scales * math.sqrt(bandwidth / 2.0)).astype(np.int64)


def _fft_sizes(n_times: int, scales: np.ndarray, bandwidth: float) -> np.ndarray:
    """FFT length of every scale: the window plus that scale's padding, rounded up to fast."""
    return np.array(
        [scipy.fft.next_fast_len(n_times + int(r), real=True) for r in _reach(scales, bandwidth)]
    )


def _chunk_rows(n_scales: int, nfft: int, budget: int) -> int:
    return max(1, budget // max(1, n_scales * nfft))


def _cwt_fft(
    data: np.ndarray, scales: np.ndarray, bandwidth: float, center_freq: float, edges: np.ndarray
) -> np.ndarray:
    n, n_times = data.shape
    # One FFT length per scale (small scales need little padding), and one scale at a time:
    # a working set of a few MB stays in cache, which measured faster than one broadcast over
    # all scales, most of all on a loaded machine (benchmarks/bench_cwt.py).
    sizes = [int(v) for v in _fft_sizes(n_times, scales, bandwidth)]
    gains = [
        _morlet_gain(scales[s : s + 1], nfft, bandwidth, center_freq)[0]
        for s, nfft in enumerate(sizes)
    ]
    out = np.empty((n, scales.size, edges.size - 1), dtype=np.float32)
    step = _chunk_rows(1, max(sizes), _CPU_SCALE_CHUNK_ELEMENTS)
    for i in range(0, n, step):
        block = data[i : i + step]
        spectra: dict[int, np.ndarray] = {}
        for s, nfft in enumerate(sizes):
            if nfft not in spectra:
                spectra = {nfft: scipy.fft.rfft(block, n=nfft, axis=-1, workers=-1)}
            # Only non-negative frequencies are filled: the inverse FFT of a one-sided spectrum
            # is the analytic coefficient (Psi is ~0 at negative frequencies for C >= 0.5).
            coef = scipy.fft.ifft(spectra[nfft] * gains[s], n=nfft, axis=-1, workers=-1)
            coef = coef[:, :n_times]
            out[i : i + step, s] = _pool_numpy(coef.real**2 + coef.imag**2, edges)
    return out


def _torch_device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"cwt: unknown torch device {device!r}") from exc
    # A config saved on a GPU machine may be loaded on one without: say so plainly.
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"cwt: device {device!r} requested but CUDA is not available here")
    return dev


def _cwt_torch(
    data: np.ndarray,
    scales: np.ndarray,
    bandwidth: float,
    center_freq: float,
    edges: np.ndarray,
    device: str,
) -> np.ndarray:
    torch = require("torch", "cwt method 'torch'")
    dev = _torch_device(device)
    n, n_times = data.shape
    # Scales grouped by their FFT length (the same lengths as the "fft" method, so both give
    # the same numbers); within a group all scales run as one batched product and inverse FFT.
    sizes = _fft_sizes(n_times, scales, bandwidth)
    groups = {nfft: np.flatnonzero(sizes == nfft) for nfft in np.unique(sizes)}
    gains = {
        nfft: torch.from_numpy(_morlet_gain(scales[rows], int(nfft), bandwidth, center_freq)).to(
            dev
        )
        for nfft, rows in groups.items()
    }
    # Pooling by gather: segment k takes columns index[k, :len_k]; shorter segments point at
    # an appended zero column, so one sum per segment gives the same means as reduceat.
    lengths = np.diff(edges)
    width = int(lengths.max())
    index = np.full((lengths.size, width), n_times, dtype=np.int64)
    for k, (start, length) in enumerate(zip(edges[:-1], lengths, strict=True)):
        index[k, :length] = np.arange(start, start + length)
    index_t = torch.from_numpy(index.reshape(-1)).to(dev)
    lengths_t = torch.from_numpy(lengths.astype(np.float32)).to(dev)
    budget = _GPU_CHUNK_ELEMENTS if dev.type == "cuda" else _CPU_CHUNK_ELEMENTS
    step = _chunk_rows(scales.size, int(sizes.max()), budget)
    out = np.empty((n, scales.size, edges.size - 1), dtype=np.float32)
    with torch.no_grad():
        for i in range(0, n, step):
            x = torch.from_numpy(data[i : i + step]).to(dev)
            for nfft, rows in groups.items():
                spec = torch.fft.rfft(x, n=int(nfft), dim=-1)
                coef = torch.fft.ifft(spec[:, None, :] * gains[nfft][None], n=int(nfft), dim=-1)
                coef = coef[..., :n_times]
                power = coef.real.square() + coef.imag.square()
                power = torch.nn.functional.pad(power, (0, 1))  # the zero column for the gather
                pooled = power.index_select(-1, index_t).view(*power.shape[:-1], *index.shape)
                out[i : i + step, rows] = (pooled.sum(-1) / lengths_t).cpu().numpy()
    return out


def _cwt_pywt(
    data: np.ndarray, scales: np.ndarray, bandwidth: float, center_freq: float, edges: np.ndarray
) -> np.ndarray:
    wavelet = f"cmor{bandwidth:g}-{center_freq:g}"
    n, n_times = data.shape
    out = np.empty((n, scales.size, edges.size - 1), dtype=np.float32)
    step = _chunk_rows(scales.size, 2 * n_times, _CPU_CHUNK_ELEMENTS // 2)
    for i in range(0, n, step):
        coef, _ = pywt.cwt(data[i : i + step], scales, wavelet, method="fft", axis=-1)
        power = np.abs(coef) ** 2  # [S, rows, T]
        out[i : i + step] = _pool_numpy(np.moveaxis(power, 0, 1), edges)
    return out


def cwt_power(
    data: np.ndarray,
    fs_hz: float,
    frequencies_hz: np.ndarray,
    *,
    n_time: int,
    bandwidth: float = 1.5,
    center_freq: float = 1.0,
    method: str = "fft",
    device: str = "auto",
) -> np.ndarray:
    """Complex-Morlet wavelet power, averaged over ``n_time`` equal time segments.

    Parameters
    ----------
    data
        ``[n, T]`` float32 windows.
    fs_hz
        Sampling rate.
    frequencies_hz
        Centre frequency of each scale (scale ``a = C fs / f`` samples).
    n_time
        Output columns; column ``k`` is the mean of ``|W|^2`` over its segment.
    bandwidth, center_freq
        The ``B`` and ``C`` of PyWavelets' ``cmorB-C``.
    method
        ``"fft"``, ``"torch"`` or ``"pywt"`` (see the module docstring).
    device
        Torch device for ``method="torch"`` (``"auto"``: CUDA when available).

    Returns
    -------
    numpy.ndarray
        ``[n, n_scales, n_time]`` float32 power (µV²), rows in the order of
        ``frequencies_hz``.
    """
    fs = check_fs(fs_hz)
    arr = check_windows(data, "cwt")
    if n_time > arr.shape[1]:
        raise SignalError(f"cwt: cannot pool {arr.shape[1]} samples into {n_time} columns")
    scales = center_freq * fs / np.asarray(frequencies_hz, dtype=np.float64)
    edges = _pool_edges(arr.shape[1], n_time)
    if method == "fft":
        return _cwt_fft(arr, scales, bandwidth, center_freq, edges)
    if method == "torch":
        return _cwt_torch(arr, scales, bandwidth, center_freq, edges, device)
    if method == "pywt":
        return _cwt_pywt(arr, scales, bandwidth, center_freq, edges)
    raise ConfigError(f"cwt: method must be one of {CWT_METHODS}, got {method!r}")


@dataclass(frozen=True)
class ScalogramRepr(ReprBase):
    """Log10 complex-Morlet wavelet power on log-spaced frequencies, pooled to ``n_time`` columns.

    Parameters
    ----------
    f_min_hz, f_max_hz
        Lowest and highest scale centre frequency; ``f_max_hz`` above Nyquist is clipped to
        Nyquist so one config serves several sampling rates.
    n_scales
        Number of scales (image rows, low to high frequency), log-spaced.
    n_time
        Image columns: wavelet power averaged over that many equal segments of the window.
    bandwidth, center_freq
        ``B`` and ``C`` of the ``cmorB-C`` wavelet: larger ``B`` is sharper in frequency and
        longer in time.
    method
        ``"fft"``, ``"torch"`` or ``"pywt"``; all give the same image up to rounding.
    device
        Torch device for ``method="torch"``; ``"auto"`` uses CUDA when available.
    normalise
        ``"zscore"`` (per-window image z-score, gain removed) or ``"none"``.
    aux
        Amplitude scalars of the window put into ``aux``; empty for none.
    """

    name: ClassVar[str] = "cwt"

    f_min_hz: float = 20.0
    f_max_hz: float = 2500.0
    n_scales: int = 48
    n_time: int = 96
    bandwidth: float = 1.5
    center_freq: float = 1.0
    method: Literal["fft", "torch", "pywt"] = "fft"
    device: str = "auto"
    normalise: Literal["zscore", "none"] = "zscore"
    aux: tuple[str, ...] = ("log_rms",)

    def __post_init__(self) -> None:
        problems = check_fields(
            self, positive="f_min_hz f_max_hz bandwidth", positive_int="n_scales n_time"
        )
        # Below C = 0.5 the wavelet's spectrum leaks into negative frequencies and the
        # one-sided FFT implementation would no longer equal the full transform.
        if not (isinstance(self.center_freq, int | float) and self.center_freq >= 0.5):
            problems.append(f"center_freq must be >= 0.5, got {self.center_freq!r}")
        if self.method not in CWT_METHODS:
            problems.append(f"method must be one of {CWT_METHODS}, got {self.method!r}")
        if not isinstance(self.device, str):
            problems.append(f"device must be a string, got {self.device!r}")
        self._check(band_problems(problems, self.f_min_hz, self.f_max_hz))

    def frequencies_hz(self, fs_hz: float) -> np.ndarray:
        """Centre frequency of each image row (low to high), in Hz."""
        fs = check_fs(fs_hz)
        f_max = min(float(self.f_max_hz), fs / 2)
        if f_max <= self.f_min_hz:
            raise ConfigError(
                f"cwt: f_min_hz={self.f_min_hz} is not below Nyquist ({fs / 2} Hz at fs_hz={fs})"
            )
        return np.geomspace(self.f_min_hz, f_max, self.n_scales)

    def times_s(self, n_times: int, fs_hz: float) -> np.ndarray:
        """Centre time of each image column within the window, in seconds."""
        fs = check_fs(fs_hz)
        edges = _pool_edges(int(n_times), self.n_time)
        return (edges[:-1] + edges[1:] - 1) / 2.0 / fs

    def _x_shape(self, n_times: int, fs_hz: float) -> tuple[int, ...]:
        """``(1, n_scales, n_time)``."""
        self.frequencies_hz(fs_hz)  # validates fs against the band
        if n_times < self.n_time:
            raise SignalError(f"cwt: cannot pool {n_times} samples into {self.n_time} columns")
        return (1, self.n_scales, self.n_time)

    def _x(self, arr: np.ndarray, fs_hz: float) -> np.ndarray:
        """``[n, 1, n_scales, n_time]`` log wavelet power, rows low to high frequency (see
        :meth:`frequencies_hz`)."""
        power = cwt_power(
            arr,
            fs_hz,
            self.frequencies_hz(fs_hz),
            n_time=self.n_time,
            bandwidth=self.bandwidth,
            center_freq=self.center_freq,
            method=self.method,
            device=self.device,
        )
        x = np.log10(np.maximum(power, _POWER_FLOOR))[:, None]
        if self.normalise == "zscore":
            zscore_rows(x)
        return x.astype(np.float32, copy=False)
