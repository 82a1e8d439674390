"""Data augmentation for training on EMG windows, batched on torch tensors (CPU or GPU).

Where augmentation acts. Augmentations act on the **model inputs** of a training batch, the
dict ``{"x": tensor, "aux": tensor}`` that a representation produced (see
:mod:`emgdx.represent`), inside the training loop (:func:`emgdx.training.fit_torch`), on the
training device. Time is always the **last axis** of ``x``:

- waveform inputs (``raw``: ``x`` is ``[n, 1, T]`` or ``[n, T]``) accept every augmentation;
- image inputs (``stft`` / ``cwt``: ``x`` is ``[n, 1, F, T']``) accept only those marked
  ``"image"`` in :attr:`Augmentation.domains` (time shift, segment masking): adding noise or
  hum to a log-power image is not the same as adding it to the signal, so it is refused with a
  :class:`~emgdx.errors.ConfigError` rather than done wrongly.

Amplitude. The ``raw`` representation normalises every window by its own scale and passes the
window's log10 amplitude as ``aux`` (first experiments: shape and amplitude apart beat fixed-
scale windows). Additive augmentations (noise, hum, wander) are set by a ratio to the window's
own power, so they mean the same on µV and on normalised windows. :class:`AmplitudeScale`
changes the *recorded* amplitude (needle-to-fibre distance, amplifier gain): on normalised
windows use ``target="aux"``, which shifts the log10 amplitude inputs by ``log10(gain)``.

Choice of EMG-suited augmentations:

- polarity inversion: the sign of a needle EMG depends on which electrode is the reference
  and on where the fibre lies; diagnosis does not depend on it;
- time reversal is offered but not recommended: a MUAP is not time-symmetric (a steep initial
  deflection, slower terminal phase; a fibrillation potential starts positive, a positive sharp
  wave has a slow negative tail), so reversed windows are not physiological and teach the model
  to ignore the very shape cues that separate myopathic from neurogenic potentials;
- random band-limited filtering: recordings come from amplifiers with different filter
  settings (e.g. 2 Hz - 10 kHz vs 20 Hz - 5 kHz);
- baseline wander and mains hum: residual artefacts that preprocessing may not fully remove;
- segment masking: brief drop-outs and stretches masked by quality control;
- spectral tilt: another needle, amplifier or tissue depth reshapes the same motor units'
  spectrum (a real second site's EMG sat about an octave lower than N2001's).

:data:`PRESETS` names chains: ``"acquisition"`` randomises how a site records (filters, tilt,
gain, hum, noise, wander, polarity), so that a model cannot learn one site's amplifier.

Every augmentation draws its randomness from a ``torch.Generator`` (CPU) given by the caller,
so training is reproducible from one seed; draws are moved to the tensor's device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Generator, Tensor

from emgdx.config import check_fields, config_from_dict, config_to_dict, is_number
from emgdx.errors import ConfigError

__all__ = [
    "AUGMENTATIONS",
    "PRESETS",
    "AmplitudeScale",
    "Augmentation",
    "Augmenter",
    "BaselineWander",
    "GaussianNoise",
    "LineHum",
    "PolarityInversion",
    "RandomBandFilter",
    "SegmentMask",
    "SpectralTilt",
    "TimeReversal",
    "TimeShift",
    "augmentation_to_dict",
    "expand_presets",
    "make_augmentation",
]

Batch = dict[str, Tensor]
#: The optional ``aux`` input of a batch, and the ``(x, aux)`` an augmentation returns.
Aux = Tensor | None
Transformed = tuple[Tensor, Aux]
Domain = Literal["waveform", "image"]

# Keeps power ratios finite on an all-zero window.
_EPS = 1e-12


def _check_range(name: str, value: Any, low: float) -> tuple[float, float]:
    """Validate a ``(min, max)`` pair with ``low <= min <= max`` and return it as floats."""
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(map(is_number, value)):
        raise ConfigError(f"{name} must be a pair of finite numbers (min, max), got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not low <= a <= b:
        raise ConfigError(f"{name} must satisfy {low} <= min <= max, got {value!r}")
    return a, b


def _uniform(n: int, bounds: tuple[float, float], gen: Generator, device: torch.device) -> Tensor:
    """``n`` draws uniform in ``bounds`` from the CPU generator, moved to ``device``."""
    lo, hi = bounds
    return (lo + (hi - lo) * torch.rand(n, generator=gen)).to(device)


def _per_window(values: Tensor, x: Tensor) -> Tensor:
    """``values`` of every window (``[n]``, or ``[n, T]`` along time) viewed to broadcast over
    ``x`` (``[n, 1, ...]``, or ``[n, 1, ..., T]``)."""
    return values.view((x.shape[0],) + (1,) * (x.ndim - values.ndim) + values.shape[1:])


def _spectral_gain(x: Tensor, gain: Tensor) -> Tensor:
    """``x`` (float32) filtered by a per-window magnitude ``gain [n, F]`` on its rfft bins:
    one FFT per batch, exactly zero-phase."""
    spec = torch.fft.rfft(x.to(torch.float32), dim=-1) * _per_window(gain, x)
    return torch.fft.irfft(spec, n=x.shape[-1], dim=-1)


def _power(x: Tensor) -> Tensor:
    """Mean power of every window (all axes but the first), broadcastable over ``x``."""
    dims = tuple(range(1, x.ndim))
    return x.pow(2).mean(dim=dims, keepdim=True)


@dataclass(frozen=True)
class Augmentation:
    """Base class: applies :meth:`transform` to a random subset (probability ``p``) of windows.

    Attributes
    ----------
    p
        Probability that a given window is augmented (drawn independently per window).
    """

    p: float = 0.5

    #: Registry name (JSON ``"name"``).
    name: ClassVar[str] = ""
    #: Input kinds the augmentation is valid for.
    domains: ClassVar[tuple[Domain, ...]] = ("waveform",)
    #: Whether :meth:`transform` needs the sampling rate.
    needs_fs: ClassVar[bool] = False
    #: ``(min, max)`` fields, checked by :func:`_check_range`: name -> lowest allowed min.
    ranges: ClassVar[dict[str, float]] = {}
    #: Other fields checked by :func:`~emgdx.config.check_fields`: rule -> names, and
    #: ``choices``: field -> allowed values.
    rules: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        p = self.p
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
            raise ConfigError(f"{type(self).__name__}: p must be in [0, 1], got {p!r}")
        object.__setattr__(self, "p", float(p))
        for field, low in self.ranges.items():
            value = _check_range(f"{self.name}: {field}", getattr(self, field), low)
            object.__setattr__(self, field, value)
        problems = check_fields(self, **self.rules)
        if problems:
            raise ConfigError(f"{self.name}: " + "; ".join(problems))

    def transform(self, x: Tensor, aux: Aux, fs_hz: float | None, gen: Generator) -> Transformed:
        """Augment *every* window of the batch (the caller keeps a random subset)."""
        raise NotImplementedError

    def __call__(self, batch: Mapping[str, Tensor], fs_hz: float | None, gen: Generator) -> Batch:
        """Augment a random subset of the windows in ``batch`` (a new dict; inputs untouched).

        Parameters
        ----------
        batch
            ``{"x": [n, ..., T]}`` plus optionally ``{"aux": [n, k]}``.
        fs_hz
            Sampling rate of the waveform (needed by frequency-domain augmentations).
        gen
            CPU random generator (the source of all randomness).

        Returns
        -------
        dict[str, torch.Tensor]
        """
        x = batch["x"]
        aux = batch.get("aux")
        out = dict(batch)
        if self.p == 0.0 or x.shape[0] == 0:
            return out
        if self.needs_fs and (fs_hz is None or not fs_hz > 0):
            raise ConfigError(f"augmentation {self.name!r} needs the sampling rate fs_hz")
        chosen = (torch.rand(x.shape[0], generator=gen) < self.p).to(x.device)
        new_x, new_aux = self.transform(x, aux, fs_hz, gen)
        out["x"] = torch.where(_per_window(chosen, x), new_x, x)
        if aux is not None and new_aux is not None:
            out["aux"] = torch.where(_per_window(chosen, aux), new_aux, aux)
        return out


@dataclass(frozen=True)
class GaussianNoise(Augmentation):
    """Add white Gaussian noise at a signal-to-noise ratio drawn from ``snr_db``.

    The noise power is the window's own mean power / 10^(SNR/10), so the augmentation means the
    same on µV and on normalised windows.
    """

    snr_db: tuple[float, float] = (15.0, 35.0)
    name: ClassVar[str] = "noise"
    ranges: ClassVar[dict[str, float]] = {"snr_db": -math.inf}

    def transform(self, x: Tensor, aux: Aux, fs_hz: float | None, gen: Generator) -> Transformed:
        snr = _per_window(_uniform(x.shape[0], self.snr_db, gen, x.device), x)
        sigma = torch.sqrt(_power(x) / 10.0 ** (snr / 10.0))
        noise = torch.randn(x.shape, generator=gen).to(device=x.device, dtype=x.dtype)
        return x + sigma * noise, aux


@dataclass(frozen=True)
class TimeShift(Augmentation):
    """Shift every window in time by up to ``max_shift_fraction`` of its length.

    ``mode="circular"`` rolls the samples (a stationary interference pattern stays
    statistically the same; one discontinuity at the wrap point); ``"crop_pad"`` shifts and
    fills the gap with zeros (the median of a normalised window). Valid for images too (the
    shift is along their time axis).
    """

    max_shift_fraction: float = 0.5
    mode: Literal["circular", "crop_pad"] = "circular"
    name: ClassVar[str] = "shift"
    domains: ClassVar[tuple[Domain, ...]] = ("waveform", "image")
    rules: ClassVar[dict[str, Any]] = {
        "unit_interval": "max_shift_fraction",
        "choices": {"mode": ("circular", "crop_pad")},
    }

    def transform(self, x: Tensor, aux: Aux, fs_hz: float | None, gen: Generator) -> Transformed:
        n, t = x.shape[0], x.shape[-1]
        max_shift = round(self.max_shift_fraction * t)
        shifts = torch.randint(-max_shift, max_shift + 1, (n,), generator=gen).to(x.device)
        # One gather for the whole batch instead of a Python loop of torch.roll calls.
        src = torch.arange(t, device=x.device).unsqueeze(0) - shifts.unsqueeze(1)  # [n, T]
        if self.mode == "circular":
            valid = torch.ones_like(src, dtype=torch.bool)
            src = src % t
        else:
            valid = (src >= 0) & (src < t)
            src = src.clamp(0, t - 1)
        idx = _per_window(src, x).expand(x.shape)
        out = torch.gather(x, -1, idx) * _per_window(valid, x).to(x.dtype)
        return out, aux


@dataclass(frozen=True)
class AmplitudeScale(Augmentation):
    """Scale the recorded amplitude by a gain drawn log-uniformly from ``gain``.

    ``target="x"`` multiplies the waveform (for fixed-scale µV inputs); ``"aux"`` adds
    ``log10(gain)`` to every ``aux`` column (for per-window normalised inputs whose amplitude
    lives in ``aux`` as log10 values, e.g. log10 RMS); ``"both"`` does both.
    """

    gain: tuple[float, float] = (0.7, 1.4)
    target: Literal["x", "aux", "both"] = "aux"
    name: ClassVar[str] = "scale"
    ranges: ClassVar[dict[str, float]] = {"gain": 0.0}
    rules: ClassVar[dict[str, Any]] = {"choices": {"target": ("x", "aux", "both")}}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gain[0] <= 0:
            raise ConfigError(f"scale: gain must be positive, got {self.gain!r}")

    def transform(self, x: Tensor, aux: Aux, fs_hz: float | None, gen: Generator) -> Transformed:
        bounds = (math.log10(self.gain[0]), math.log10(self.gain[1]))
        log_gain = _uniform(x.shape[0], bounds, gen, x.device)
        new_x, new_aux = x, aux
        if self.target in ("x", "both"):
            new_x = x * _per_window(10.0**log_gain, x).to(x.dtype)
        if self.target in ("aux", "both"):
            if aux is None:
                raise ConfigError("scale: target includes 'aux' but the batch has no aux input")
            new_aux = aux + log_gain.view(-1, 1).to(aux.dtype)
        return new_x, new_aux


@dataclass(frozen=True)
class PolarityInversion(Augmentation):
    """Flip the sign of the waveform (needle EMG polarity carries no diagnostic meaning)."""

    name: ClassVar[str] = "polarity"

    def transform(self, x: Tensor, aux: Aux, fs_hz: float | None, gen: Generator) -> Transformed:
        return -x, aux


@dataclass(frozen=True)
class TimeReversal(Augmentation):
    """Reverse the window in time. Not recommended: MUAP shapes are not time-symmetric.

    Offered for ablations only (see the module docstring for why it is not a default).
    """

    name: ClassVar[str] = "reverse"

    def transform(self, x: Tensor, aux: Aux, fs_hz: float | None, gen: Generator) -> Transformed:
        return torch.flip(x, dims=(-1,)), aux


@dataclass(frozen=True)
class RandomBandFilter(Augmentation):
    """Filter with a random band: high-pass edge from ``low_hz``, low-pass edge from ``high_hz``.

    Zero-phase Butterworth-shaped magnitude ``1 / sqrt(1 + (f/fc)^(2k))`` applied in the
    frequency domain (one rfft per batch: on a GPU this is far cheaper than per-window IIR
    filtering, and it is exactly zero-phase). Edges above Nyquist leave the top untouched.
    """

    low_hz: tuple[float, float] = (5.0, 60.0)
    high_hz: tuple[float, float] = (1500.0, 5000.0)
    order: int = 2
    name: ClassVar[str] = "bandfilter"
    needs_fs: ClassVar[bool] = True
    ranges: ClassVar[dict[str, float]] = {"low_hz": 0.0, "high_hz": 0.0}
    rules: ClassVar[dict[str, str]] = {"positive_int": "order"}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.low_hz[1] >= self.high_hz[0]:
            raise ConfigError(
                f"bandfilter: low_hz {self.low_hz} must lie below high_hz {self.high_hz} "
                "(a band, not a stop)"
            )

    def transform(self, x: Tensor, aux: Aux, fs_hz: float | None, gen: Generator) -> Transformed:
        assert fs_hz is not None  # checked in __call__
        n, t = x.shape[0], x.shape[-1]
        freqs = torch.fft.rfftfreq(t, d=1.0 / fs_hz).to(x.device)  # [F]
        lo = _uniform(n, self.low_hz, gen, x.device).unsqueeze(1)
        hi = _uniform(n, self.high_hz, gen, x.device).unsqueeze(1)
        k2 = 2 * self.order
        f = freqs.unsqueeze(0)
        # High-pass magnitude written as (f/lo)^k / sqrt(1 + (f/lo)^2k): 0 at DC, no division.
        ratio_lo = (f / lo).pow(k2)
        gain = torch.sqrt(ratio_lo / (1.0 + ratio_lo)) / torch.sqrt(1.0 + (f / hi).pow(k2))
        return _spectral_gain(x, gain).to(x.dtype), aux


@dataclass(frozen=True)
class SpectralTilt(Augmentation):
    """Tilt the spectrum by a slope drawn from ``db_per_octave`` around ``pivot_hz``, keeping
    each window's power (so it changes the waveform's shape, not its level).

    Gain ``10^(slope/20 * log2(f / pivot))`` per frequency (DC left out), applied in the
    frequency domain like :class:`RandomBandFilter`. Negative slopes move power to lower
    frequencies, as a larger or more distant needle, or a smaller high-pass, would.
    """

    # -4 to +3 dB/octave moves the median frequency of N2001 windows (151 Hz after the front
    # end) to 74-280 Hz, a range that holds the Algiers records' 162 Hz with room either side.
    db_per_octave: tuple[float, float] = (-4.0, 3.0)
    pivot_hz: float = 200.0
    name: ClassVar[str] = "tilt"
    needs_fs: ClassVar[bool] = True
    ranges: ClassVar[dict[str, float]] = {"db_per_octave": -math.inf}
    rules: ClassVar[dict[str, str]] = {"positive": "pivot_hz"}

    def transform(self, x: Tensor, aux: Aux, fs_hz: float | None, gen: Generator) -> Transformed:
        assert fs_hz is not None
        n, t = x.shape[0], x.shape[-1]
        freqs = torch.fft.rfftfreq(t, d=1.0 / fs_hz).to(x.device)
        octaves = torch.log2(freqs.clamp(min=freqs[1] if t > 1 else 1.0) / self.pivot_hz)
        slope = _uniform(n, self.db_per_octave, gen, x.device).unsqueeze(1)
        gain = 10.0 ** (slope / 20.0 * octaves.unsqueeze(0))
        gain[:, 0] = 0.0  # DC: a window's offset carries no motor-unit information
        tilted = _spectral_gain(x, gain)
        keep = torch.sqrt(_power(x.to(torch.float32)) / (_power(tilted) + _EPS))
        return (tilted * keep).to(x.dtype), aux


@dataclass(frozen=True)
class BaselineWander(Augmentation):
    """Add a slow sinusoidal drift (random frequency and phase) relative to the window's RMS.

    ``amplitude_rel`` is the drift amplitude as a multiple of the window's RMS.
    """

    freq_hz: tuple[float, float] = (0.2, 3.0)
    amplitude_rel: tuple[float, float] = (0.05, 0.5)
    name: ClassVar[str] = "wander"
    needs_fs: ClassVar[bool] = True
    ranges: ClassVar[dict[str, float]] = {"freq_hz": 0.0, "amplitude_rel": 0.0}

    def transform(self, x: Tensor, aux: Aux, fs_hz: float | None, gen: Generator) -> Transformed:
        assert fs_hz is not None
        n, t = x.shape[0], x.shape[-1]
        time_s = torch.arange(t, device=x.device, dtype=torch.float32) / fs_hz
        freq = _uniform(n, self.freq_hz, gen, x.device).unsqueeze(1)
        phase = _uniform(n, (0.0, 2 * math.pi), gen, x.device).unsqueeze(1)
        amp = _per_window(_uniform(n, self.amplitude_rel, gen, x.device), x)
        wave = torch.sin(2 * math.pi * freq * time_s + phase)  # [n, T]
        rms = torch.sqrt(_power(x) + _EPS)
        return x + (amp * rms * _per_window(wave, x)).to(x.dtype), aux


@dataclass(frozen=True)
class LineHum(Augmentation):
    """Add mains hum (a random choice of ``line_hz``, with odd harmonics) at ``snr_db``.

    Harmonic ``k`` (1, 3, 5, ...) gets amplitude ``1/k`` of the fundamental; harmonics at or
    above Nyquist are left out.
    """

    line_hz: tuple[float, ...] = (50.0, 60.0)
    n_harmonics: int = 3
    snr_db: tuple[float, float] = (15.0, 40.0)
    name: ClassVar[str] = "hum"
    needs_fs: ClassVar[bool] = True
    ranges: ClassVar[dict[str, float]] = {"snr_db": -math.inf}
    rules: ClassVar[dict[str, str]] = {"positive_int": "n_harmonics"}

    def __post_init__(self) -> None:
        super().__post_init__()
        lines = tuple(float(v) for v in self.line_hz)
        if not lines or not all(v > 0 for v in lines):
            raise ConfigError(f"hum: line_hz must be positive frequencies, got {self.line_hz!r}")
        object.__setattr__(self, "line_hz", lines)

    def transform(self, x: Tensor, aux: Aux, fs_hz: float | None, gen: Generator) -> Transformed:
        assert fs_hz is not None
        n, t = x.shape[0], x.shape[-1]
        choice = torch.randint(0, len(self.line_hz), (n,), generator=gen)
        f0 = torch.tensor(self.line_hz)[choice].to(x.device).unsqueeze(1)
        phase = _uniform(n, (0.0, 2 * math.pi), gen, x.device).unsqueeze(1)
        time_s = torch.arange(t, device=x.device, dtype=torch.float32) / fs_hz
        hum = torch.zeros(n, t, device=x.device)
        for j in range(self.n_harmonics):
            k = 2 * j + 1
            below = (k * f0 < fs_hz / 2).to(torch.float32)
            hum = hum + below * torch.sin(2 * math.pi * k * f0 * time_s + k * phase) / k
        hum = _per_window(hum, x)
        snr = _per_window(_uniform(n, self.snr_db, gen, x.device), x)
        scale = torch.sqrt(_power(x) / (10.0 ** (snr / 10.0)) / (_power(hum) + _EPS))
        return x + (scale * hum).to(x.dtype), aux


@dataclass(frozen=True)
class SegmentMask(Augmentation):
    """Set ``n_segments`` random stretches (each up to ``max_fraction`` of the window) to zero.

    Zero is the median of a per-window normalised window and silence for a µV window; for an
    image input the stretch spans all frequencies (SpecAugment-style time masking).
    """

    max_fraction: float = 0.1
    n_segments: int = 1
    name: ClassVar[str] = "mask"
    domains: ClassVar[tuple[Domain, ...]] = ("waveform", "image")
    rules: ClassVar[dict[str, Any]] = {
        "positive_int": "n_segments",
        "unit_interval": "max_fraction",
    }

    def transform(self, x: Tensor, aux: Aux, fs_hz: float | None, gen: Generator) -> Transformed:
        n, t = x.shape[0], x.shape[-1]
        pos = torch.arange(t).unsqueeze(0)  # [1, T]
        keep = torch.ones(n, t, dtype=torch.bool)
        max_len = round(self.max_fraction * t)
        for _ in range(int(self.n_segments)):
            length = torch.randint(0, max_len + 1, (n, 1), generator=gen)
            start = (torch.rand(n, 1, generator=gen) * (t - length + 1)).long()
            keep &= ~((pos >= start) & (pos < start + length))
        return x * _per_window(keep, x).to(device=x.device, dtype=x.dtype), aux


#: Augmentations by name (the ``"name"`` in a JSON spec).
AUGMENTATIONS: dict[str, type[Augmentation]] = {
    cls.name: cls
    for cls in (
        GaussianNoise,
        TimeShift,
        AmplitudeScale,
        PolarityInversion,
        TimeReversal,
        RandomBandFilter,
        BaselineWander,
        LineHum,
        SegmentMask,
        SpectralTilt,
    )
}

#: Named chains of augmentations, usable wherever a spec is (expanded in place).
PRESETS: dict[str, tuple[dict[str, Any], ...]] = {
    # How one site records differs from another's (the robustness benchmark's conditions as
    # training-time draws): filters, spectral shape, gain, hum, noise, drift and polarity.
    "acquisition": (
        {"name": "tilt", "db_per_octave": (-4.0, 3.0), "p": 0.8},
        {"name": "bandfilter", "low_hz": (2.0, 80.0), "high_hz": (400.0, 3000.0), "p": 0.5},
        {"name": "scale", "gain": (0.5, 2.0), "target": "aux", "p": 0.8},
        {"name": "hum", "snr_db": (10.0, 40.0), "p": 0.5},
        {"name": "noise", "snr_db": (10.0, 35.0), "p": 0.5},
        {"name": "wander", "p": 0.3},
        {"name": "polarity", "p": 0.5},
    ),
}


def expand_presets(
    specs: Sequence[str | Mapping[str, Any] | Augmentation],
) -> list[str | Mapping[str, Any] | Augmentation]:
    """``specs`` with every preset name of :data:`PRESETS` replaced by its chain."""
    out: list[str | Mapping[str, Any] | Augmentation] = []
    for spec in specs:
        out.extend(PRESETS[spec] if isinstance(spec, str) and spec in PRESETS else (spec,))
    return out


def make_augmentation(spec: str | Mapping[str, Any] | Augmentation) -> Augmentation:
    """Build an augmentation from its name, a ``{"name": ..., **params}`` dict, or itself.

    Parameters
    ----------
    spec
        ``"noise"``, ``{"name": "noise", "snr_db": [10, 30], "p": 0.3}``, or an instance.

    Returns
    -------
    Augmentation

    Raises
    ------
    ConfigError
        Unknown name, unknown parameter or invalid value.
    """
    if isinstance(spec, Augmentation):
        return spec
    if not isinstance(spec, str | Mapping):
        raise ConfigError(f"augmentation spec must be a name or a mapping, got {spec!r}")
    params = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = params.pop("name", None)
    if name not in AUGMENTATIONS:
        known = sorted(AUGMENTATIONS) + [f"{p} (preset)" for p in PRESETS]
        raise ConfigError(f"unknown augmentation {name!r}; known: {known}")
    return config_from_dict(AUGMENTATIONS[name], params, what=f"augmentation {name!r}")


def augmentation_to_dict(aug: Augmentation) -> dict[str, Any]:
    """JSON-ready ``{"name": ..., **params}`` (inverse of :func:`make_augmentation`)."""
    return {"name": aug.name, **config_to_dict(aug)}


class Augmenter:
    """A chain of augmentations applied in order to training batches.

    Parameters
    ----------
    specs
        Augmentation specs (see :func:`make_augmentation`), applied in this order.
    fs_hz
        Sampling rate of waveform inputs (``None`` when none of the augmentations needs it).
    seed
        Seed of the CPU generator all random draws come from.
    """

    def __init__(
        self,
        specs: Sequence[str | Mapping[str, Any] | Augmentation],
        fs_hz: float | None = None,
        seed: int = 0,
    ) -> None:
        self.augmentations = [make_augmentation(s) for s in expand_presets(specs)]
        self.fs_hz = fs_hz
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.augmentations)

    def check(self, x_ndim: int) -> None:
        """Refuse augmentations that do not fit the input kind (``x.ndim`` 4 = image).

        Raises
        ------
        ConfigError
            An augmentation is not valid for this input kind, or lacks ``fs_hz``.
        """
        domain: Domain = "image" if x_ndim >= 4 else "waveform"
        for aug in self.augmentations:
            if domain not in aug.domains:
                raise ConfigError(
                    f"augmentation {aug.name!r} works on {'/'.join(aug.domains)} inputs, not on "
                    f"{domain} inputs (x with {x_ndim} dims); use 'shift' or 'mask' for images"
                )
            if aug.needs_fs and self.fs_hz is None:
                raise ConfigError(f"augmentation {aug.name!r} needs fs_hz")

    def __call__(self, batch: Mapping[str, Tensor]) -> Batch:
        """Apply every augmentation in turn; returns a new dict."""
        out = dict(batch)
        for aug in self.augmentations:
            out = aug(out, self.fs_hz, self.generator)
        return out

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-ready specs of the chain."""
        return [augmentation_to_dict(a) for a in self.augmentations]
