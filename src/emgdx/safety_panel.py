"""A panel of inputs that are not needle EMG, or are corrupted needle EMG (docs/safety.md).

It tests what emgdx refuses to judge (:mod:`emgdx.needle`, :mod:`emgdx.ood`); a site can run
it against its own quality checks or models too.

:func:`make_panel` draws every kind from a seed, at several sampling rates and levels:

* noise of several colours (white, pink, brown) and levels (5-500 µV RMS);
* sine mixtures (1-6 tones, 20-2,000 Hz, with or without a little noise);
* ECG-like traces (P-QRS-T complexes at 50-110 beats/min, 0.5-2 mV, a little noise);
* flat-with-spikes (a quiet baseline with rare sharp impulses);
* surface-EMG-like noise (Gaussian noise band-passed to 20-450 Hz, amplitude-modulated like
  a contraction);
* real N2001 records time-reversed, phase-scrambled (the same spectrum, no potentials) and
  scaled by 0.01 and by 100.

Used by ``benchmarks/safety.py`` and the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.signal as ss

from emgdx.recording import Recording

__all__ = ["DERIVED_KINDS", "SYNTHETIC_KINDS", "make_panel"]

SYNTHETIC_KINDS = (
    "white_noise",
    "pink_noise",
    "brown_noise",
    "sine_mixture",
    "ecg_like",
    "flat_with_spikes",
    "surface_emg_like",
)
DERIVED_KINDS = ("time_reversed", "phase_scrambled", "scaled_x0.01", "scaled_x100")
RATES_HZ = (4000.0, 10000.0, 23437.5, 32768.0)


def _coloured(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with a 1/f^exponent power spectrum, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    x = np.fft.irfft(spectrum / f ** (exponent / 2), n)
    return x / x.std()


def _ecg(rng: np.random.Generator, n: int, fs: float) -> np.ndarray:
    t = np.arange(n) / fs
    bpm = rng.uniform(50, 110)
    beats = np.arange(rng.uniform(0, 0.5), t[-1], 60 / bpm)
    beats = beats + rng.normal(0, 0.02, beats.size)
    x = np.zeros(n)
    # (offset s, width s, height): P, Q, R, S, T waves as Gaussian bumps
    waves = (
        (-0.2, 0.025, 0.12),
        (-0.03, 0.01, -0.1),
        (0, 0.01, 1.0),
        (0.03, 0.01, -0.25),
        (0.25, 0.05, 0.3),
    )
    for b in beats:
        for offset, width, height in waves:
            x += height * np.exp(-0.5 * ((t - b - offset) / width) ** 2)
    return x * rng.uniform(500, 2000)


def _synthetic(kind: str, rng: np.random.Generator, n: int, fs: float) -> np.ndarray:
    level = 10 ** rng.uniform(np.log10(5), np.log10(500))
    if kind == "white_noise":
        return rng.standard_normal(n) * level
    if kind == "pink_noise":
        return _coloured(rng, n, 1.0) * level
    if kind == "brown_noise":
        return _coloured(rng, n, 2.0) * level
    if kind == "sine_mixture":
        t = np.arange(n) / fs
        k = int(rng.integers(1, 7))
        freqs = rng.uniform(20, min(2000, fs / 3), k)
        x = sum(
            rng.uniform(0.2, 1) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) for f in freqs
        )
        x = np.asarray(x) / np.std(x) * level
        return x + rng.standard_normal(n) * level * rng.choice([0.0, 0.05])
    if kind == "ecg_like":
        return _ecg(rng, n, fs) + rng.standard_normal(n) * rng.uniform(1, 10)
    if kind == "flat_with_spikes":
        x = rng.standard_normal(n) * rng.uniform(0.5, 3)
        width = max(1, round(rng.uniform(0.0002, 0.002) * fs))
        pulse = ss.windows.gaussian(6 * width + 1, width) * rng.uniform(100, 2000)
        for at in rng.integers(0, n - pulse.size, int(rng.uniform(0.5, 5) * n / fs)):
            x[at : at + pulse.size] += pulse * rng.choice([-1, 1])
        return x
    if kind == "surface_emg_like":
        sos = ss.butter(4, (20, min(450, fs / 2.5)), "bandpass", fs=fs, output="sos")
        x = ss.sosfilt(sos, rng.standard_normal(n))
        t = np.arange(n) / fs
        envelope = 1 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t) ** 2
        return x * envelope / np.std(x * envelope) * level
    raise ValueError(kind)


def _derived(kind: str, rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    if kind == "time_reversed":
        return x[::-1].copy()
    if kind == "phase_scrambled":
        spectrum = np.fft.rfft(x - x.mean())
        phases = np.exp(1j * rng.uniform(0, 2 * np.pi, spectrum.size))
        phases[0] = 1
        return np.fft.irfft(np.abs(spectrum) * phases, x.size) + x.mean()
    if kind == "scaled_x0.01":
        return x * 0.01
    if kind == "scaled_x100":
        return x * 100.0
    raise ValueError(kind)


def make_panel(
    real: Sequence[Recording], *, per_kind: int = 20, seed: int = 0, duration_s: float = 10.0
) -> list[tuple[str, Recording]]:
    """``(kind, recording)`` pairs: ``per_kind`` of every synthetic and derived kind.

    ``real`` are the needle-EMG records the derived kinds start from (drawn at random).
    """
    rng = np.random.default_rng(seed)
    panel: list[tuple[str, Recording]] = []
    for kind in SYNTHETIC_KINDS:
        for i in range(per_kind):
            fs = float(rng.choice(RATES_HZ))
            x = _synthetic(kind, rng, round(duration_s * fs), fs).astype(np.float32)
            rid = f"{kind}-{i:02d}"
            panel.append((kind, Recording(x, fs, rid, rid)))
    for kind in DERIVED_KINDS:
        for j in rng.choice(len(real), per_kind, replace=len(real) < per_kind):
            src = real[int(j)]
            x = _derived(kind, rng, src.signal.astype(np.float64)).astype(np.float32)
            rid = f"{kind}-{src.record_id}"
            panel.append((kind, Recording(x, src.fs_hz, rid, rid)))
    return panel
