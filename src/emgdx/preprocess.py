"""Preprocessing: band-pass, mains notch, exact resampling and fixed windows.

The road through this module, for one record::

    Recording + QC usable mask
      -> unusable samples replaced by linear interpolation      (garbage cannot ring the filters)
      -> resample to exactly ``target_fs_hz``                     (polyphase, anti-alias FIR)
      -> one zero-phase SOS cascade: Butterworth band-pass + notches at the mains harmonics
      -> usable mask at the output rate (QC mask, dilated by ``mask_margin_s`` and the FIR reach)
    many records -> make_windows -> Windows

QC before it and normalisation after it belong to the front end (:mod:`emgdx.frontend`), the
one stage every path uses.

Why this order. Resampling first and filtering at the (usually 4x lower) output rate costs half
as much as filtering at the source rate (one N2001 record, 262,124 samples, default cascade of
7 sections: resample 3.2 ms + filter 1.7 ms at 6 kHz, against filter 6.7 ms at 23.4 kHz +
resample 3.2 ms) and gives the same signal (the two orders differ by 0.8 % rms on that record),
because both steps are linear and time-invariant in the pass band. The Butterworth upper edge
then trims what the resampler's anti-alias FIR lets through in its transition band (for a 6 kHz
output that FIR is -6 dB at 3 kHz and -34 dB at 3.4 kHz, so aliases land above ~2.6 kHz; hence
the default upper edge of 2.5 kHz).

Why interpolate unusable samples before filtering. Measured on a synthetic 100 µV-rms EMG with a
0.3 s stretch of ±2500 µV rail-to-rail garbage (and a 500 µV offset), filtered with the default
cascade at 6 kHz: left in place, the garbage changes usable samples by >5 µV up to 340 ms away
(>1 µV up to 580 ms, mostly ringing of the narrow notches); zero-filled, up to 140 ms (the offset
makes a step); linearly interpolated, 31 ms (>10 µV: 8 ms). Interpolation is therefore done
before filtering, and the default ``mask_margin_s`` of 50 ms covers what is left. The tests
repeat this measurement (``test_garbage_does_not_leak_beyond_margin``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any, ClassVar, Literal, Protocol, Self, cast

import numpy as np
import pandas as pd
from scipy import signal as sps

from emgdx.config import JsonConfig, check_fields, is_number
from emgdx.errors import ConfigError, SignalError
from emgdx.normalise import Normalisation, NormaliseMethod, NormaliseScope
from emgdx.recording import WINDOW_INDEX_COLUMNS, Recording, Windows

__all__ = [
    "CONFIG_VERSION",
    "WINDOW_COLUMNS",
    "FilterDesign",
    "PreprocessConfig",
    "QCLike",
    "ResamplePlan",
    "bandpass",
    "design_filter",
    "fill_unusable",
    "make_windows",
    "notch",
    "preprocess_recording",
    "resample",
    "resample_mask",
    "resample_plan",
    "true_runs",
]

#: Version of the JSON form of :class:`PreprocessConfig` (bump when fields change meaning).
CONFIG_VERSION = 1
#: The index columns of the windows :func:`make_windows` cuts, in order.
WINDOW_COLUMNS = (*WINDOW_INDEX_COLUMNS, "level", "site", "muscle", "usable_fraction")

# A low-pass edge this close to Nyquist would remove next to nothing (and the bilinear warping
# squeezes its transition against Nyquist), so the band-pass degrades to a high-pass instead of
# failing: a legal low sampling rate must never crash the pipeline.
NYQUIST_FRACTION = 0.95


class QCLike(Protocol):
    """What preprocessing needs from a QC report (:class:`emgdx.quality.QualityReport`)."""

    @property
    def usable_mask(self) -> np.ndarray | None: ...

    @property
    def line_freq_hz(self) -> float | None: ...


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreprocessConfig(JsonConfig):
    """Everything preprocessing does, as one frozen, validated, JSON-serialisable value.

    Defaults suit concentric-needle EMG (recorded clinically at 2 Hz - 10 kHz, sampled at
    ~20-50 kHz) feeding models at 6 kHz.

    Attributes
    ----------
    band_hz
        ``(low, high)`` Butterworth band-pass edges in Hz, or ``None`` for no band-pass. Default
        ``(20, 2500)``: 20 Hz removes movement and electrode drift while keeping MUAP energy; 2.5
        kHz stays below the anti-alias transition of a 6 kHz output. When ``high`` is at or
        above 0.95 x Nyquist of the output rate the filter becomes a high-pass (never an error).
    filter_order
        Butterworth order (applied forward and backward, so the magnitude is squared).
    notch
        ``"auto"``: notch at the mains frequency the QC report detected (none if it found
        none, or without a QC report); a number: always notch there; ``None``: no notch.
    notch_harmonics
        How many multiples of the mains frequency to notch, the fundamental included; only
        those below the band's upper edge (or Nyquist) are used.
    notch_q
        Quality factor of each notch (-3 dB width = frequency / Q).
    target_fs_hz
        Output sampling rate (reached exactly from any input rate), or ``None`` to keep each
        record's rate.
    normalise, normalise_scope
        The front end's :class:`~emgdx.normalise.Normalisation` (:attr:`normalisation`):
        method ``"none"`` (default: amplitude in µV is itself diagnostic, e.g. large neurogenic
        MUAPs), ``"zscore"`` or ``"robust"``; scope ``"window"``, ``"record"`` or ``"fitted"``
        (statistics learnt on training data only), see :mod:`emgdx.normalise`.
    window_s, hop_s
        Window length and step in seconds (overlap = ``window_s - hop_s``).
    mask_margin_s
        Extra time marked unusable on both sides of every unusable stretch, to cover filter
        transients (see the module docstring for the measurement behind the default).
    min_usable_fraction
        A window is kept only if at least this fraction of its samples is usable (1.0 = all).
    """

    config_name: ClassVar[str] = "preprocessing config"

    band_hz: tuple[float, float] | None = (20.0, 2500.0)
    filter_order: int = 4
    notch: Literal["auto"] | float | None = "auto"
    notch_harmonics: int = 3
    notch_q: float = 30.0
    target_fs_hz: float | None = 6000.0
    normalise: NormaliseMethod = "none"
    normalise_scope: NormaliseScope = "window"
    window_s: float = 1.0
    hop_s: float = 0.5
    mask_margin_s: float = 0.05
    min_usable_fraction: float = 1.0

    def __post_init__(self) -> None:
        problems: list[str] = []
        band = self.band_hz
        if band is not None:
            if (
                not isinstance(band, list | tuple)
                or len(band) != 2
                or not all(is_number(v) for v in band)
            ):
                problems.append(f"band_hz must be two finite numbers (low, high), got {band!r}")
            else:
                low, high = float(band[0]), float(band[1])
                if not 0 < low < high:
                    problems.append(f"band_hz must satisfy 0 < low < high, got ({low}, {high})")
                object.__setattr__(self, "band_hz", (low, high))
        if not isinstance(self.filter_order, int) or isinstance(self.filter_order, bool):
            problems.append(f"filter_order must be an integer, got {self.filter_order!r}")
        elif not 1 <= self.filter_order <= 10:
            problems.append(f"filter_order must be between 1 and 10, got {self.filter_order}")
        if self.notch is not None and self.notch != "auto":
            if not (is_number(self.notch) and self.notch > 0):
                problems.append(
                    f"notch must be 'auto', None or a positive frequency in Hz, got {self.notch!r}"
                )
            else:
                object.__setattr__(self, "notch", float(self.notch))
        problems += check_fields(
            self,
            optional="target_fs_hz",
            positive="notch_q target_fs_hz window_s hop_s",
            non_negative="mask_margin_s",
            fraction="min_usable_fraction",
            positive_int="notch_harmonics",
        )
        try:
            Normalisation(self.normalise, self.normalise_scope)
        except ConfigError as exc:
            problems.append(str(exc))
        if problems:
            raise ConfigError("invalid preprocessing config: " + "; ".join(problems))

    @property
    def normalisation(self) -> Normalisation:
        """``normalise`` over ``normalise_scope`` as one value (:mod:`emgdx.normalise`)."""
        return Normalisation(self.normalise, self.normalise_scope)

    # ---- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists), with a ``version`` key."""
        return {"version": CONFIG_VERSION, **super().to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build a config from :meth:`to_dict` output; unknown keys or bad values raise.

        Raises
        ------
        ConfigError
            On unknown keys, an unsupported ``version`` or any invalid value.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"preprocessing config must be a mapping, got {type(data).__name__}")
        values = dict(data)
        version = values.pop("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ConfigError(
                f"preprocessing config version {version!r} is not supported "
                f"(this emgdx reads version {CONFIG_VERSION})"
            )
        return super().from_dict(values)


# --------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FilterDesign:
    """One zero-phase SOS cascade (band-pass or high-pass, plus notches) and what it does.

    Attributes
    ----------
    sos
        Second-order sections, float64 (read-only; shared between records through a cache);
        float32 signals are filtered with a float32 copy (max. error 2e-5 of full scale on
        N2001 data, at half the cost of float64).
    fs_hz
        Sampling rate the design is for.
    kind
        ``"bandpass"``, ``"highpass"`` (upper edge too close to Nyquist) or ``"none"``.
    band_hz
        Edges actually used: ``(low, high)``, ``(low, None)`` for a high-pass, or ``None``.
    notch_hz
        Centre frequencies of the notches in the cascade.
    note
        Human-readable reason when the design departs from what was asked, else ``None``.
    """

    sos: np.ndarray
    fs_hz: float
    kind: Literal["bandpass", "highpass", "none"]
    band_hz: tuple[float, float | None] | None
    notch_hz: tuple[float, ...]
    note: str | None = None
    _zi: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def _initial_state(self, dtype: np.dtype[Any]) -> np.ndarray:
        # sosfilt_zi solves a small linear system per section; scipy's sosfiltfilt does it
        # on every call (0.4 ms of a 2 ms live window), so it is kept with the design.
        key = np.dtype(dtype).str
        zi = self._zi.get(key)
        if zi is None:
            zi = sps.sosfilt_zi(np.array(self.sos, dtype=np.float64)).astype(dtype)
            zi.flags.writeable = False
            self._zi[key] = zi
        return zi

    def _filtfilt(self, sos: np.ndarray, data: np.ndarray, padlen: int) -> np.ndarray:
        """scipy.signal.sosfiltfilt (odd extension of ``padlen``, steady-state initial
        conditions) along the last axis, with the initial state cached (see above)."""
        zi = self._initial_state(data.dtype)
        zi = zi.reshape(zi.shape[0], *([1] * (data.ndim - 1)), 2)
        if padlen > 0:
            first, last = data[..., :1], data[..., -1:]
            ext = np.concatenate(
                (
                    2 * first - data[..., padlen:0:-1],
                    data,
                    2 * last - data[..., -2 : -(padlen + 2) : -1],
                ),
                axis=-1,
            )
        else:
            ext = data
        y, _ = sps.sosfilt(sos, ext, axis=-1, zi=zi * ext[..., :1])
        y, _ = sps.sosfilt(sos, y[..., ::-1], axis=-1, zi=zi * y[..., -1:])
        y = y[..., ::-1]
        return y[..., padlen : y.shape[-1] - padlen] if padlen > 0 else y

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Filter ``x`` forward and backward (zero phase) with the whole cascade at once.

        Raises
        ------
        SignalError
            When ``x`` is too short for the filter's edge padding.
        """
        data = np.asarray(x)
        if data.dtype != np.float32 and data.dtype != np.float64:
            data = data.astype(np.float32)
        if self.sos.shape[0] == 0:
            return data.copy()
        sos = self.sos.astype(data.dtype)
        padlen = _padlen(sos)
        if data.shape[-1] <= padlen:
            raise SignalError(
                f"signal of {data.shape[-1]} samples is too short for the filter "
                f"(needs more than {padlen} at {self.fs_hz:g} Hz)"
            )
        if self.notch_hz:
            extended, pad = _extend_with_hum(data, self.fs_hz, self.notch_hz)
            if pad:
                y = self._filtfilt(sos, extended, 0)
                return np.ascontiguousarray(y[..., pad : pad + data.shape[-1]])
        return np.ascontiguousarray(self._filtfilt(sos, data, padlen))

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary, stored in ``Recording.meta['preprocess']['filter']``."""
        return {
            "kind": self.kind,
            "band_hz": None if self.band_hz is None else list(self.band_hz),
            "notch_hz": list(self.notch_hz),
            "note": self.note,
        }


#: Length of the hum-aware edge extension used when the cascade holds notches (see
#: :func:`_extend_with_hum`). 0.5 s is about 2.6 time constants of a Q = 30 notch at 50 Hz;
#: longer extensions fit the hum worse when its amplitude drifts (measured: 0.25 s, 0.5 s
#: and 1 s gave 33-46, 15-23 and 12-49 µV rms error in the first 50 ms).
HUM_EXTENSION_S = 0.5


def _extend_with_hum(
    data: np.ndarray, fs_hz: float, line_hz: Sequence[float]
) -> tuple[np.ndarray, int]:
    """Extend both ends of ``data`` with a continuation that keeps the hum's phase.

    A notch rings for several time constants (Q / (pi f0): 0.19 s at 50 Hz, Q = 30) when
    its input starts or stops abruptly in the middle of a sinusoid; scipy's default edge
    handling (a short odd reflection) turns a 500 µV hum into a 150 µV rms error in the
    first 50 ms of the output, still 60 µV rms averaged over the first 0.8 s. Here a
    constant plus a sine and cosine at each notched frequency is least-squares fitted to
    the first (last) ``HUM_EXTENSION_S`` of the record, the fit is continued past the end
    and the odd reflection of the residual is added, so the extension continues the hum in
    phase and the rest like scipy does. Measured on 30 µV rms noise + 500 µV hum at 6 kHz:
    the first 50 ms error falls from 151-191 to 15-23 µV rms (8-10x), also with a 20 %
    amplitude drift and the mains 0.02 Hz off nominal; a clean signal is changed by < 1 µV.
    No scipy routine fits the padding to a known frequency, hence this function.

    Returns the extended array and the number of samples added at each end (0, with the
    input unchanged, when the record is too short for a stable fit).
    """
    n = data.shape[-1]
    pad = min(round(HUM_EXTENSION_S * fs_hz), n - 1)
    n_params = 1 + 2 * len(line_hz)
    if pad + 1 < 8 * n_params:
        return data, 0
    flat = np.asarray(data, dtype=np.float64).reshape(-1, n)

    def basis(t: np.ndarray) -> np.ndarray:
        waves = [wave(2.0 * np.pi * f * t) for f in line_hz for wave in (np.cos, np.sin)]
        return np.stack([np.ones_like(t), *waves], axis=1)

    a_in, a_out = basis(np.arange(pad + 1) / fs_hz), basis(-np.arange(1, pad + 1) / fs_hz)

    def continuation(edge: np.ndarray) -> np.ndarray:
        # edge: (rows, pad + 1) samples from the end inwards; returns (rows, pad) beyond it
        coef = np.linalg.lstsq(a_in, edge.T, rcond=None)[0]
        residual = edge - (a_in @ coef).T
        return cast(np.ndarray, (a_out @ coef).T + 2.0 * residual[:, :1] - residual[:, 1:])

    head = continuation(flat[:, : pad + 1])[:, ::-1]
    tail = continuation(flat[:, ::-1][:, : pad + 1])
    extended = np.concatenate((head, flat, tail), axis=1).astype(data.dtype, copy=False)
    return extended.reshape(*data.shape[:-1], n + 2 * pad), pad


def _padlen(sos: np.ndarray) -> int:
    # scipy's default for sosfiltfilt, written out so short signals get a clear error.
    n_sections = sos.shape[0]
    extra = min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum())
    return int(3 * (2 * n_sections + 1 - extra))


def _validate_fs(fs_hz: float, what: str = "fs_hz") -> float:
    if not (is_number(fs_hz) and fs_hz > 0):
        raise SignalError(f"{what} must be a positive number, got {fs_hz!r}")
    return float(fs_hz)


def design_filter(
    fs_hz: float,
    band_hz: tuple[float, float] | None,
    order: int = 4,
    line_hz: float | None = None,
    n_harmonics: int = 1,
    q: float = 30.0,
) -> FilterDesign:
    """Design the band-pass + notch cascade for one sampling rate (cached).

    Parameters
    ----------
    fs_hz
        Sampling rate of the signal to be filtered.
    band_hz
        ``(low, high)`` edges, or ``None`` for no band-pass. If ``high >= 0.95 * fs_hz / 2`` the
        band-pass degrades to a high-pass at ``low`` and :attr:`FilterDesign.note` says so (a
        legal low rate must never crash the pipeline).
    order
        Butterworth order.
    line_hz
        Mains frequency to notch, or ``None`` for no notch.
    n_harmonics
        Number of multiples of ``line_hz`` to notch (fundamental included); only those below
        the upper band edge (or 0.95 x Nyquist) are kept.
    q
        Quality factor of each :func:`scipy.signal.iirnotch`.

    Returns
    -------
    FilterDesign

    Raises
    ------
    SignalError
        When the lower band edge is not below 0.95 x Nyquist, or arguments are invalid.
    """
    fs = _validate_fs(fs_hz)
    if not is_number(order) or int(order) != order:
        raise SignalError(f"filter order must be an integer, got {order!r}")
    band = None if band_hz is None else (float(band_hz[0]), float(band_hz[1]))
    line = None if line_hz is None else float(line_hz)
    return _design_cached(fs, band, int(order), line, int(n_harmonics), float(q))


@lru_cache(maxsize=128)
def _design_cached(
    fs: float,
    band: tuple[float, float] | None,
    order: int,
    line: float | None,
    n_harmonics: int,
    q: float,
) -> FilterDesign:
    if order < 1:
        raise SignalError(f"filter order must be >= 1, got {order}")
    nyq = fs / 2.0
    limit = NYQUIST_FRACTION * nyq
    sections: list[np.ndarray] = []
    kind: Literal["bandpass", "highpass", "none"] = "none"
    used_band: tuple[float, float | None] | None = None
    note: str | None = None
    upper = limit
    if band is not None:
        low, high = band
        if not 0 < low < high:
            raise SignalError(f"band_hz must satisfy 0 < low < high, got {band}")
        if low >= limit:
            raise SignalError(
                f"band low edge {low:g} Hz is not below 0.95 x Nyquist ({limit:g} Hz) at "
                f"{fs:g} Hz; lower the band or raise the sampling rate"
            )
        if high >= limit:
            kind, used_band = "highpass", (low, None)
            note = (
                f"upper band edge {high:g} Hz >= 0.95 x Nyquist ({limit:g} Hz at {fs:g} Hz): "
                f"high-pass at {low:g} Hz only"
            )
            sections.append(sps.butter(order, low, "highpass", fs=fs, output="sos"))
        else:
            kind, used_band, upper = "bandpass", (low, high), high
            sections.append(sps.butter(order, (low, high), "bandpass", fs=fs, output="sos"))
    notches: list[float] = []
    if line is not None:
        if not (math.isfinite(line) and line > 0):
            raise SignalError(f"line frequency must be positive, got {line}")
        if n_harmonics < 1:
            raise SignalError(f"n_harmonics must be >= 1, got {n_harmonics}")
        if not (math.isfinite(q) and q > 0):
            raise SignalError(f"notch Q must be positive, got {q}")
        for k in range(1, n_harmonics + 1):
            f0 = k * line
            if f0 >= upper:
                break
            b, a = sps.iirnotch(f0, q, fs=fs)
            sections.append(sps.tf2sos(b, a))
            notches.append(f0)
    sos = np.vstack(sections) if sections else np.zeros((0, 6))
    sos.flags.writeable = False  # shared between threads through the cache
    return FilterDesign(sos, fs, kind, used_band, tuple(notches), note)


def bandpass(
    x: np.ndarray, fs_hz: float, band_hz: tuple[float, float], order: int = 4
) -> np.ndarray:
    """Zero-phase Butterworth band-pass (``butter(..., output="sos")`` + ``sosfiltfilt``).

    If the upper edge is at or above 0.95 x Nyquist the filter degrades to a high-pass at the
    lower edge (use :func:`design_filter` to see which was applied).

    Parameters
    ----------
    x
        Signal, 1-D (or n-D, filtered along the last axis); float32 stays float32.
    fs_hz
        Sampling rate of ``x`` in Hz.
    band_hz
        ``(low, high)`` edges in Hz.
    order
        Butterworth order (the magnitude response is squared by the forward-backward pass).

    Returns
    -------
    numpy.ndarray
        The filtered signal.
    """
    return design_filter(fs_hz, band_hz, order).apply(x)


def notch(
    x: np.ndarray, fs_hz: float, line_hz: float, n_harmonics: int = 1, q: float = 30.0
) -> np.ndarray:
    """Zero-phase notches at ``line_hz`` and its multiples, as one SOS cascade.

    Parameters
    ----------
    x
        Signal (filtered along the last axis).
    fs_hz
        Sampling rate in Hz.
    line_hz
        Mains frequency (50 or 60 Hz).
    n_harmonics
        Number of multiples notched, fundamental included (only those below 0.95 x Nyquist).
    q
        Quality factor of each notch.

    Returns
    -------
    numpy.ndarray
        The filtered signal.
    """
    return design_filter(fs_hz, None, 1, line_hz, n_harmonics, q).apply(x)


# --------------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------------

#: Largest ``up`` or ``down`` factor of the one-stage polyphase resampler. Every ratio of two
#: usual ADC rates fits (32,768 -> 6,000 Hz is 375/2,048; 44,100 -> 6,000 Hz is 20/147); its
#: FIR has 20 taps per unit of ``max(up, down)`` (655,361 at this limit, built once per ratio).
MAX_POLYPHASE_FACTOR = 1 << 15
#: Polyphase stage of a rate whose exact ratio has larger terms (e.g. a measured 5,999.77 Hz):
#: the nearest ratio with terms up to this, followed by a fractional stage to the exact grid.
APPROX_FACTOR = 1000
#: Half-length (taps each side) and Kaiser beta of the fractional stage's windowed sinc.
_FRAC_HALF = 16
_FRAC_BETA = 8.0


@dataclass(frozen=True)
class ResamplePlan:
    """How :func:`resample` takes ``fs_from_hz`` to exactly ``fs_to_hz``.

    Output sample ``j`` lies at time ``j / fs_to_hz`` whatever the ratio. A polyphase stage
    (``resample_poly``, factors ``up``/``down``) does all of it when the exact ratio has terms up
    to :data:`MAX_POLYPHASE_FACTOR`; otherwise it goes to ``fs_from_hz * up / down`` (nearest
    ratio with small terms) and a Kaiser-windowed sinc interpolates onto the exact output grid.

    Attributes
    ----------
    fs_from_hz, fs_to_hz
        Source and output rates (the output rate is ``fs_to_hz``, exactly).
    up, down
        Polyphase factors. Input sample ``m * down`` falls on polyphase output ``m * up``, so a
        segment of a stream that starts there is resampled on the offline grid.
    exact
        Whether the polyphase stage alone reaches ``fs_to_hz`` (no fractional stage).
    """

    fs_from_hz: float
    fs_to_hz: float
    up: int
    down: int
    exact: bool
    #: ``fs_to_hz / fs_from_hz`` as exact integer terms (floats are binary fractions).
    ratio: tuple[int, int]

    @property
    def identity(self) -> bool:
        return self.exact and self.up == self.down == 1

    def first_output(self, offset: int) -> int:
        """Index (on the offline output grid) of the first output of a segment starting at
        input sample ``offset`` (a multiple of :attr:`down`): the first output at or after it."""
        if offset % self.down:
            raise SignalError(f"a segment must start on a multiple of {self.down} input samples")
        num, den = self.ratio
        return -((-offset * num) // den)

    def n_out(self, n_in: int, offset: int = 0) -> int:
        """Output samples of ``n_in`` input samples starting at ``offset``: those whose time lies
        before the end of the input (``ceil(n_in * up / down)`` when exact)."""
        num, den = self.ratio
        return max(0, -((-(offset + n_in) * num) // den) - self.first_output(offset))

    def reach_in(self) -> int:
        """Input samples on each side an output sample depends on (both stages)."""
        if self.identity:
            return 0
        reach = 10 * max(self.up, self.down) / self.up  # the polyphase FIR's half-length
        if not self.exact:
            reach += (_FRAC_HALF + 1) * self.down / self.up
        return math.ceil(reach)


@lru_cache(maxsize=64)
def resample_plan(fs_from_hz: float, fs_to_hz: float) -> ResamplePlan:
    """The :class:`ResamplePlan` from ``fs_from_hz`` to ``fs_to_hz`` (see there; cached).

    Raises
    ------
    SignalError
        When a rate is not a positive finite number.
    """
    fs_from = _validate_fs(fs_from_hz, "fs_from_hz")
    fs_to = _validate_fs(fs_to_hz, "fs_to_hz")
    # Floats are exact binary fractions, so this ratio is exact before any approximation.
    ratio = Fraction(fs_to) / Fraction(fs_from)
    terms = (ratio.numerator, ratio.denominator)
    if max(terms) <= MAX_POLYPHASE_FACTOR:
        return ResamplePlan(fs_from, fs_to, *terms, True, terms)
    approx = _small_ratio(ratio)
    return ResamplePlan(fs_from, fs_to, approx.numerator, approx.denominator, False, terms)


def _small_ratio(ratio: Fraction) -> Fraction:
    """Closest ratio to ``ratio`` with both terms at most :data:`APPROX_FACTOR` (never 0)."""
    if ratio > 1:
        return 1 / _small_ratio(1 / ratio)
    approx = ratio.limit_denominator(APPROX_FACTOR)
    return approx if approx > 0 else Fraction(1, APPROX_FACTOR)


@lru_cache(maxsize=32)
def _resample_fir(up: int, down: int) -> np.ndarray:
    # The same FIR resample_poly designs by default (Kaiser, beta 5, 10 zero crossings per
    # side), built once per ratio instead of once per record (saves ~0.25 ms a record).
    max_rate = max(up, down)
    h = sps.firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    fir = h.astype(np.float32)
    fir.flags.writeable = False
    return fir


@lru_cache(maxsize=1)
def _sinc_table() -> np.ndarray:
    """Kaiser-windowed sinc taps for fractional offsets 0, 1/1024, ..., 1: ``[1025, 2 * half]``."""
    half = _FRAC_HALF
    frac = np.linspace(0.0, 1.0, 1025)
    dist = np.arange(-half + 1, half + 1)[None, :] - frac[:, None]
    window = np.i0(_FRAC_BETA * np.sqrt(np.clip(1.0 - (dist / half) ** 2, 0.0, None)))
    taps = np.sinc(dist) * window / np.i0(_FRAC_BETA)
    table = taps / taps.sum(axis=1, keepdims=True)  # exact gain at DC
    table.flags.writeable = False
    return table


def _fractional_stage(y: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``y`` interpolated at fractional sample ``positions`` by a Kaiser-windowed sinc.

    scipy resamples by rational factors only; a ratio with huge terms (a measured rate such as
    5,999.77 Hz) needs band-limited interpolation at arbitrary times, written here. ``y`` is
    already band-limited by the polyphase stage; 2 x 16 taps with beta 8, tabulated at 1/1024
    sample and interpolated linearly, add no error beyond the polyphase stage's
    (``tests/test_preprocess.py``).
    """
    half = _FRAC_HALF
    pad = half + 2
    n = y.shape[0]
    head = 2 * y[:1] - y[pad:0:-1] if n > pad else np.repeat(y[:1], pad)
    tail = 2 * y[-1:] - y[-2 : -pad - 2 : -1] if n > pad + 1 else np.repeat(y[-1:], pad)
    ext = np.concatenate((head, y, tail)).astype(np.float64)
    table = _sinc_table()
    taps = np.arange(-half + 1, half + 1)
    out = np.empty(positions.shape[0], dtype=np.float64)
    for a in range(0, positions.shape[0], 8192):
        pos = positions[a : a + 8192]
        base = np.floor(pos).astype(np.int64)
        phase = (pos - base) * 1024.0
        row = np.minimum(phase.astype(np.int64), 1023)
        mix = (phase - row)[:, None]
        weights = (1.0 - mix) * table[row] + mix * table[row + 1]
        idx = np.clip(base[:, None] + taps[None, :] + pad, 0, ext.shape[0] - 1)
        out[a : a + 8192] = np.einsum("ij,ij->i", ext[idx], weights)
    return out


def resample(
    x: np.ndarray, fs_from_hz: float, fs_to_hz: float, *, offset: int = 0
) -> tuple[np.ndarray, float]:
    """Resample to exactly ``fs_to_hz`` (polyphase, see :class:`ResamplePlan`).

    Parameters
    ----------
    x
        1-D signal; float32 stays float32.
    fs_from_hz, fs_to_hz
        Source and output rates in Hz.
    offset
        Position of ``x``'s first sample in a longer stream (a multiple of the plan's
        ``down``): the output then holds that stream's offline output samples from
        ``plan.first_output(offset)`` on (live windows, :mod:`emgdx.frontend`).

    Returns
    -------
    y : numpy.ndarray
        ``plan.n_out(len(x), offset)`` samples (``ceil(len(x) * up / down)`` for an exact ratio).
    fs_hz : float
        ``fs_to_hz``.

    Notes
    -----
    The ends are extended by odd reflection (``padtype="antireflect"``), which keeps an offset
    or slow drift from producing an edge transient: on a 500 µV-offset test signal the first
    5 ms erred by 4 µV instead of 316 µV with scipy's default zero padding.
    """
    plan = resample_plan(fs_from_hz, fs_to_hz)
    data = np.asarray(x)
    if data.shape[0] < 2 and not plan.identity:
        # scipy's polyphase filter divides by zero on one sample: a native crash (SIGFPE)
        # that kills the process, so it is refused here.
        raise SignalError(f"cannot resample {data.shape[0]} sample(s): at least 2 are needed")
    if plan.identity:
        return data.copy(), plan.fs_to_hz
    if data.dtype != np.float32:
        data = data.astype(np.float64)
    if plan.up == plan.down == 1:  # the rates differ by a fraction only
        y = data.copy()
    else:
        fir = _resample_fir(plan.up, plan.down).astype(data.dtype)
        y = sps.resample_poly(data, plan.up, plan.down, window=fir, padtype="antireflect")
    if plan.exact:
        return y, plan.fs_to_hz
    first = plan.first_output(offset)
    num, den = plan.ratio
    j = np.arange(first, first + plan.n_out(data.shape[0], offset))
    # position of output j in y (polyphase samples from the segment's start):
    # j * (fs_from * up / down) / fs_to - offset * up / down, in exact integers where they fit
    scale = plan.down * num
    positions = (j * float(plan.up * den) - float(offset * plan.up * num)) / float(scale)
    return _fractional_stage(y, positions).astype(y.dtype), plan.fs_to_hz


def resample_mask(
    mask: np.ndarray,
    fs_from_hz: float,
    fs_to_hz: float,
    n_out: int,
    *,
    margin_samples: int = 0,
    offset: int = 0,
) -> np.ndarray:
    """Usable mask at the output rate of :func:`resample`.

    Output sample ``j`` is usable only if every source sample its value depends on was usable:
    those within the resampler's reach of ``j``, widened by ``margin_samples`` source samples
    on each side.

    Parameters
    ----------
    mask
        Boolean mask at the source rate (``True`` = usable).
    fs_from_hz, fs_to_hz
        Source and output rates.
    n_out
        Length of the resampled signal.
    margin_samples
        Extra source samples dropped on both sides of every unusable stretch.
    offset
        As in :func:`resample`.

    Returns
    -------
    numpy.ndarray
        Boolean mask of ``n_out`` samples.
    """
    src = np.asarray(mask, dtype=bool)
    if src.ndim != 1:
        raise SignalError(f"mask must be 1-D, got shape {src.shape}")
    if margin_samples < 0:
        raise SignalError(f"margin_samples must be >= 0, got {margin_samples}")
    plan = resample_plan(fs_from_hz, fs_to_hz)
    n_in = src.shape[0]
    if plan.identity and n_out != n_in:
        raise SignalError(f"same rate but n_out={n_out} differs from the mask's {n_in} samples")
    if n_in == 0 or n_out == 0:
        return np.zeros(n_out, dtype=bool)
    if src.all():
        return np.ones(n_out, dtype=bool)
    starts, ends = true_runs(~src)
    if plan.exact:
        reach = 0 if plan.identity else 10 * max(plan.up, plan.down)
        return _spoiled(starts, ends, plan.up, plan.down, reach, margin_samples, n_out, 0)
    # Output j (of the stream) lies at input time j * fs_from / fs_to: map it through the exact
    # ratio, with the reach of both stages added to the margin (in input samples, rounded up).
    margin = margin_samples + plan.reach_in()
    shift = plan.first_output(offset)
    return _spoiled(starts + offset, ends + offset, *plan.ratio, 0, margin, n_out, shift)


def _spoiled(
    starts: np.ndarray,
    ends: np.ndarray,
    up: int,
    down: int,
    reach: int,
    margin: int,
    n_out: int,
    shift: int,
) -> np.ndarray:
    """Usable outputs ``shift .. shift + n_out`` given unusable input runs ``[s, e)``: output
    ``j`` depends on inputs ``i`` with ``|i * up - j * down| <= reach`` (widened by ``margin``)."""
    # Those indices grow with j, so each unusable run spoils one contiguous range of outputs,
    # found in closed form (faster than a sliding count over every sample). Python ints: the
    # products of large exact ratios do not fit in int64.
    first = [-((reach - (int(s) - margin) * up) // down) - shift for s in starts]
    last = [((int(e) - 1 + margin) * up + reach) // down - shift for e in ends]
    change = np.zeros(n_out + 1, dtype=np.int64)
    np.add.at(change, np.clip(first, 0, n_out), 1)
    np.add.at(change, np.clip(np.asarray(last) + 1, 0, n_out), -1)
    return cast(np.ndarray, np.cumsum(change[:-1]) == 0)


def true_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts (inclusive) and stops (exclusive) of the ``True`` runs of a boolean array."""
    if mask.size == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    change = np.flatnonzero(mask[1:] != mask[:-1]) + 1
    edges = np.concatenate(([0], change, [mask.size]))
    values = mask[edges[:-1]]
    return edges[:-1][values], edges[1:][values]


# --------------------------------------------------------------------------------------------
# One record
# --------------------------------------------------------------------------------------------


def fill_unusable(x: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Copy of ``x`` with unusable samples replaced by linear interpolation between usable ones.

    Interpolating (not zeroing) matters when the signal has an offset; see the module docstring.
    """
    out = np.array(x, dtype=np.float32, copy=True)
    n = out.shape[0]
    starts, ends = true_runs(~usable)
    if starts.size == 0:
        return out
    if starts[0] == 0 and ends[0] == n:
        out[:] = 0.0
        return out
    # Only the usable neighbours of each run matter to a linear interpolation, so np.interp gets
    # those few anchor points instead of every usable sample (3.7 -> <1 ms on an N2001 record).
    anchors = np.concatenate([starts - 1, ends])
    anchors = np.unique(anchors[(anchors >= 0) & (anchors < n)])
    bad_idx = np.flatnonzero(~usable)
    out[bad_idx] = np.interp(bad_idx, anchors, out[anchors].astype(np.float64))
    return out


def _qc_mask(recording: Recording, qc: QCLike | None) -> np.ndarray | None:
    if qc is None:
        return None
    qc_id = getattr(qc, "record_id", None)
    if qc_id is not None and qc_id != recording.record_id:
        raise SignalError(f"{recording.record_id}: QC report belongs to another record ({qc_id!r})")
    mask = getattr(qc, "usable_mask", None)
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (recording.n_samples,):
        raise SignalError(
            f"{recording.record_id}: QC usable mask has shape {mask.shape}, "
            f"signal has {recording.n_samples} samples"
        )
    return mask


def _line_hz(config: PreprocessConfig, qc: QCLike | None) -> tuple[float | None, str]:
    if config.notch is None:
        return None, "off"
    if config.notch == "auto":
        detected = None if qc is None else getattr(qc, "line_freq_hz", None)
        if detected is None:
            return None, "auto: no mains interference detected" if qc else "auto: no QC report"
        return float(detected), "auto: detected by QC"
    return float(config.notch), "fixed"


def preprocess_recording(
    recording: Recording, config: PreprocessConfig, qc: QCLike | None = None, *, offset: int = 0
) -> tuple[Recording, np.ndarray]:
    """Filter, notch and resample one record; return it with its usable mask at the new rate.

    Amplitudes stay in µV: normalisation is the front end's (:mod:`emgdx.frontend`).

    Parameters
    ----------
    recording
        The record (float32 µV).
    config
        What to do.
    qc
        Its QC report (any object with ``usable_mask`` and ``line_freq_hz``), or ``None``: then
        every sample counts as usable and ``notch="auto"`` notches nothing.
    offset
        Where ``recording`` starts in a longer stream (see :func:`resample`): a live segment's
        samples then fall on the offline output grid; ``meta["preprocess"]["first_output"]``
        is the stream's output index of the first sample.

    Returns
    -------
    recording : Recording
        A new record (metadata kept) at the output rate, float32 µV; ``meta["preprocess"]``
        says exactly what ran.
    usable : numpy.ndarray
        Boolean mask at the output rate: the QC mask, dilated by ``mask_margin_s`` and by the
        resampling FIR's reach. Unusable input samples are interpolated over before filtering,
        so they do not ring into their neighbours (see the module docstring).

    Raises
    ------
    SignalError
        When the signal is not finite, too short to filter, or the band does not fit the rate.
    """
    rid = recording.record_id
    x = recording.signal
    if x.size == 0:
        raise SignalError(f"{rid}: empty signal")
    if not np.isfinite(x).all():
        raise SignalError(f"{rid}: signal contains NaN or infinite values")
    fs_in = recording.fs_hz
    mask_in = _qc_mask(recording, qc)
    n_unusable = 0 if mask_in is None else int(x.size - np.count_nonzero(mask_in))
    if n_unusable:
        x = fill_unusable(x, cast(np.ndarray, mask_in))

    try:
        plan = resample_plan(fs_in, fs_in if config.target_fs_hz is None else config.target_fs_hz)
        x, fs_out = resample(x, fs_in, plan.fs_to_hz, offset=offset)
        line_hz, notch_source = _line_hz(config, qc)
        design = design_filter(
            fs_out,
            config.band_hz,
            config.filter_order,
            line_hz,
            config.notch_harmonics,
            config.notch_q,
        )
        y = design.apply(np.asarray(x, dtype=np.float32))
    except SignalError as exc:
        raise SignalError(f"{rid}: {exc}") from exc

    margin = math.ceil(config.mask_margin_s * fs_in)
    if mask_in is None or n_unusable == 0:
        usable = np.ones(y.shape[0], dtype=bool)
    else:
        usable = resample_mask(
            mask_in, fs_in, fs_out, y.shape[0], margin_samples=margin, offset=offset
        )

    info: dict[str, Any] = {
        "version": CONFIG_VERSION,
        "fs_in_hz": fs_in,
        "fs_out_hz": fs_out,
        "resample_up_down": [plan.up, plan.down],
        "resample_exact": plan.exact,
        "first_output": plan.first_output(offset),
        "filter": design.describe(),
        "notch_source": notch_source,
        "interpolated_samples": n_unusable,
        "mask_margin_s": config.mask_margin_s,
        "usable_fraction": float(usable.mean()) if usable.size else 0.0,
    }
    out = recording.with_signal(np.asarray(y, dtype=np.float32), fs_hz=fs_out)
    out.meta["preprocess"] = info
    return out, usable


# --------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------


def _window_starts(
    usable: np.ndarray | None, n: int, n_win: int, hop: int, min_count: int
) -> tuple[np.ndarray, np.ndarray]:
    starts = np.arange(0, n - n_win + 1, hop, dtype=np.int64)  # empty when n < n_win
    if usable is None:
        return starts, np.ones(starts.size)
    good_before = np.concatenate(([0], np.cumsum(usable, dtype=np.int64)))
    counts = good_before[starts + n_win] - good_before[starts]
    keep = counts >= min_count
    return starts[keep], counts[keep] / n_win


def make_windows(
    recordings: Sequence[Recording],
    masks: Sequence[np.ndarray | None] | None,
    window_s: float,
    hop_s: float,
    *,
    min_usable_fraction: float = 1.0,
) -> Windows:
    """Cut records into fixed windows (overlap ``window_s - hop_s``) that honour the masks.

    Parameters
    ----------
    recordings
        Records, all at one sampling rate.
    masks
        One boolean usable mask per record (or ``None`` entries / ``None`` for "all usable").
    window_s, hop_s
        Window length and step in seconds; rounded to whole samples at the records' rate.
    min_usable_fraction
        A window is emitted only if at least this fraction of its samples is usable.

    Returns
    -------
    Windows
        ``index`` columns: record_id, subject_id, label, start_s, start_sample, level, site, muscle,
        usable_fraction. ``start_s = start_sample / fs_hz`` in the (preprocessed) record.

    Raises
    ------
    SignalError
        When there are no records, their rates differ (the message names them), a mask does
        not match its record, or the window is shorter than one sample.
    """
    recs = list(recordings)
    if not recs:
        raise SignalError("make_windows needs at least one recording")
    mask_list: list[np.ndarray | None] = [None] * len(recs) if masks is None else list(masks)
    if len(mask_list) != len(recs):
        raise SignalError(f"{len(mask_list)} masks for {len(recs)} recordings")
    fs = recs[0].fs_hz
    odd = [r for r in recs if not math.isclose(r.fs_hz, fs, rel_tol=1e-9)]
    if odd:
        shown = ", ".join(f"{r.record_id} ({r.fs_hz:g} Hz)" for r in odd[:5])
        raise SignalError(
            f"all recordings must share one sampling rate to be windowed: "
            f"{recs[0].record_id} is at {fs:g} Hz but {shown}"
            + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
            + " differ; set target_fs_hz to resample them"
        )
    if not (is_number(window_s) and window_s > 0 and is_number(hop_s) and hop_s > 0):
        raise SignalError(f"window_s and hop_s must be positive, got {window_s!r}, {hop_s!r}")
    if not 0 < min_usable_fraction <= 1:
        raise SignalError(f"min_usable_fraction must be in (0, 1], got {min_usable_fraction}")
    n_win = round(window_s * fs)
    hop = max(1, round(hop_s * fs))
    if n_win < 1:
        raise SignalError(f"window of {window_s} s is shorter than one sample at {fs:g} Hz")
    min_count = math.ceil(min_usable_fraction * n_win - 1e-9)

    per_rec: list[tuple[np.ndarray, np.ndarray]] = []
    for rec, mask in zip(recs, mask_list, strict=True):
        usable = None
        if mask is not None:
            usable = np.asarray(mask, dtype=bool)
            if usable.shape != (rec.n_samples,):
                raise SignalError(
                    f"{rec.record_id}: mask has shape {usable.shape}, "
                    f"signal has {rec.n_samples} samples"
                )
        per_rec.append(_window_starts(usable, rec.n_samples, n_win, hop, min_count))

    total = sum(s.size for s, _ in per_rec)
    data = np.empty((total, n_win), dtype=np.float32)
    offsets = np.arange(n_win, dtype=np.int64)
    row = 0
    for rec, (starts, _) in zip(recs, per_rec, strict=True):
        # Index arithmetic gathers all windows of a record in one vectorised copy.
        data[row : row + starts.size] = rec.signal[starts[:, None] + offsets]
        row += starts.size
    start_sample = np.concatenate([s for s, _ in per_rec])
    per_window = [rec for rec, (s, _) in zip(recs, per_rec, strict=True) for _ in range(s.size)]
    index = pd.DataFrame(
        {
            "record_id": [rec.record_id for rec in per_window],
            "subject_id": [rec.subject_id for rec in per_window],
            "label": [rec.label for rec in per_window],
            "start_s": start_sample / fs,
            "start_sample": start_sample,
            "level": [rec.level for rec in per_window],
            "site": [rec.site for rec in per_window],
            "muscle": [rec.muscle for rec in per_window],
            "usable_fraction": np.concatenate([f for _, f in per_rec]),
        }
    )
    return Windows(data, fs, index)
