"""Log-power short-time Fourier spectrogram of each window (scipy's ``ShortTimeFFT``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from scipy.signal import ShortTimeFFT
from scipy.signal.windows import hann

from emgdx.config import check_fields
from emgdx.errors import ConfigError, SignalError
from emgdx.represent._common import ReprBase, band_problems, check_fs, zscore_rows

__all__ = ["SpectrogramRepr"]

# Windows per STFT call: bounds the float64 intermediate to ~100 MB at 6 kHz / 1 s windows.
_CHUNK_ROWS = 256
# Power floor (µV²/Hz) before the log, so that a flat window gives a finite image.
_POWER_FLOOR = 1e-10


@dataclass(frozen=True)
class SpectrogramRepr(ReprBase):
    """Log10 power spectral density over time (Hann-windowed STFT), one image per window.

    Only frames that lie entirely inside the window are kept (no zero-padded edge frames,
    whose power would be biased low). The image is normalised per window (z-score over the
    whole image), which removes the overall gain; the window's amplitude goes to ``aux``.

    Parameters
    ----------
    window_ms
        STFT segment length in milliseconds (rounded to whole samples at ``fs_hz``).
    overlap
        Fraction of a segment shared with the next one, in ``[0, 1)``.
    f_min_hz, f_max_hz
        Frequency rows kept (inclusive). ``f_max_hz=None`` keeps up to Nyquist; a value above
        Nyquist is clipped to it, so one config serves several sampling rates.
    normalise
        ``"zscore"`` (per-window image z-score) or ``"none"`` (absolute log10 µV²/Hz).
    aux
        Amplitude scalars of the window put into ``aux`` (see
        :class:`~emgdx.represent.raw.RawRepr`); empty for none.
    """

    name: ClassVar[str] = "stft"

    window_ms: float = 32.0
    overlap: float = 0.5
    f_min_hz: float = 0.0
    f_max_hz: float | None = 2500.0
    normalise: Literal["zscore", "none"] = "zscore"
    aux: tuple[str, ...] = ("log_rms",)

    def __post_init__(self) -> None:
        problems = check_fields(
            self, optional="f_max_hz", positive="window_ms f_max_hz", non_negative="f_min_hz"
        )
        if not (isinstance(self.overlap, int | float) and 0 <= self.overlap < 1):
            problems.append(f"overlap must be in [0, 1), got {self.overlap!r}")
        self._check(band_problems(problems, self.f_min_hz, self.f_max_hz))

    # ---- geometry ------------------------------------------------------------------------

    def _segment(self, fs_hz: float) -> tuple[int, int]:
        nperseg = max(2, round(self.window_ms * 1e-3 * fs_hz))
        hop = max(1, round(nperseg * (1.0 - self.overlap)))
        return nperseg, hop

    def _stft(self, fs_hz: float) -> ShortTimeFFT:
        nperseg, hop = self._segment(fs_hz)
        return ShortTimeFFT(hann(nperseg, sym=False), hop, fs_hz, scale_to="psd")

    def _rows(self, stft: ShortTimeFFT, fs_hz: float) -> np.ndarray:
        f_max = fs_hz / 2 if self.f_max_hz is None else min(self.f_max_hz, fs_hz / 2)
        rows = np.flatnonzero((stft.f >= self.f_min_hz) & (stft.f <= f_max))
        if rows.size == 0:
            raise ConfigError(
                f"stft: no frequency bin between {self.f_min_hz} and {f_max} Hz at "
                f"fs_hz={fs_hz} with {self.window_ms} ms segments"
            )
        return rows

    def _frames(self, stft: ShortTimeFFT, n_times: int) -> tuple[int, int]:
        nperseg = stft.m_num
        if n_times < nperseg:
            raise SignalError(
                f"stft: windows of {n_times} samples are shorter than one {self.window_ms} ms "
                f"segment ({nperseg} samples)"
            )
        # Frames wholly inside the signal: from the first without left padding to the last
        # without right padding.
        p0 = stft.lower_border_end[1]
        p1 = stft.upper_border_begin(n_times)[1]
        if p1 <= p0:  # exactly one segment fits
            p0, p1 = p0, p0 + 1
        return p0, p1

    def frequencies_hz(self, fs_hz: float) -> np.ndarray:
        """Centre frequency of each image row (low to high), in Hz."""
        fs = check_fs(fs_hz)
        stft = self._stft(fs)
        return stft.f[self._rows(stft, fs)]

    def times_s(self, n_times: int, fs_hz: float) -> np.ndarray:
        """Centre time of each image column within the window, in seconds."""
        fs = check_fs(fs_hz)
        stft = self._stft(fs)
        p0, p1 = self._frames(stft, int(n_times))
        return stft.t(int(n_times), p0, p1)

    def _x_shape(self, n_times: int, fs_hz: float) -> tuple[int, ...]:
        """``(1, n_freqs, n_frames)``."""
        stft = self._stft(fs_hz)
        p0, p1 = self._frames(stft, n_times)
        return (1, len(self._rows(stft, fs_hz)), p1 - p0)

    # ---- transform -----------------------------------------------------------------------

    def _x(self, arr: np.ndarray, fs_hz: float) -> np.ndarray:
        """``[n, 1, F, P]`` log-power spectrograms, rows low to high frequency (see
        :meth:`frequencies_hz`)."""
        stft = self._stft(fs_hz)
        rows = self._rows(stft, fs_hz)
        p0, p1 = self._frames(stft, arr.shape[1])
        x = np.empty((arr.shape[0], 1, rows.size, p1 - p0), dtype=np.float32)
        for i in range(0, arr.shape[0], _CHUNK_ROWS):
            power = stft.spectrogram(arr[i : i + _CHUNK_ROWS], p0=p0, p1=p1, axis=-1)
            x[i : i + _CHUNK_ROWS, 0] = np.log10(np.maximum(power[:, rows], _POWER_FLOOR))
        if self.normalise == "zscore":
            zscore_rows(x)
        return x
