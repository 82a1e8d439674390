"""Tests of emgdx.preprocess: filter responses measured on sines, resampling, masks, windows,
normalisation and the config. Synthetic signals only, except the one ``realdata`` test."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from scipy import signal as sps

from emgdx.errors import ConfigError, SignalError
from emgdx.preprocess import (
    Normaliser,
    PreprocessConfig,
    bandpass,
    design_filter,
    make_windows,
    normalise_windows,
    notch,
    preprocess_cohort,
    preprocess_recording,
    preprocess_records,
    resample,
    resample_mask,
    resample_ratio,
)
from emgdx.recording import Cohort, Label, Recording

N2001_FS = 23_437.5


# ---- helpers ---------------------------------------------------------------------------------


def sine(freq_hz: float, fs_hz: float, duration_s: float, amp: float = 1.0) -> np.ndarray:
    t = np.arange(round(duration_s * fs_hz)) / fs_hz
    return (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def fit_sine(
    y: np.ndarray, freq_hz: float, fs_hz: float, trim: float = 0.25
) -> tuple[float, float]:
    """Least-squares amplitude and phase (rad) of a ``freq_hz`` sine in the central part of
    ``y`` (the ends, with filter edge effects, are left out)."""
    n = y.shape[0]
    lo, hi = int(n * trim), int(n * (1 - trim))
    t = np.arange(lo, hi) / fs_hz
    basis = np.column_stack([np.sin(2 * np.pi * freq_hz * t), np.cos(2 * np.pi * freq_hz * t)])
    (a, b), *_ = np.linalg.lstsq(basis, y[lo:hi].astype(np.float64), rcond=None)
    return float(math.hypot(a, b)), float(math.atan2(b, a))


def gain_db(y: np.ndarray, x: np.ndarray, freq_hz: float, fs_hz: float) -> float:
    return 20 * math.log10(fit_sine(y, freq_hz, fs_hz)[0] / fit_sine(x, freq_hz, fs_hz)[0])


def emg_like(n: int, fs_hz: float, seed: int, rms_uv: float = 100.0) -> np.ndarray:
    """Band-limited noise standing in for needle EMG."""
    rng = np.random.default_rng(seed)
    sos = sps.butter(4, (50, min(2000, 0.4 * fs_hz)), "bandpass", fs=fs_hz, output="sos")
    x = sps.sosfiltfilt(sos, rng.standard_normal(n))
    return (x * rms_uv / x.std()).astype(np.float32)


@dataclass
class FakeQC:
    """Stands in for emgdx.quality.QualityReport (the interface preprocessing relies on)."""

    record_id: str
    usable_mask: np.ndarray
    line_freq_hz: float | None = None


def rec(
    x: np.ndarray, fs_hz: float, rid: str = "r1", subject: str = "s1", label: str = "healthy"
) -> Recording:
    lab = cast(Label, label)  # Recording validates it
    return Recording(x, fs_hz, rid, subject, label=lab, muscle="biceps", meta={"level": "low"})


# ---- filters ---------------------------------------------------------------------------------


@pytest.mark.parametrize("freq_hz", [40.0, 100.0, 300.0, 1000.0, 1500.0])
def test_bandpass_passband_gain_within_half_db(freq_hz: float) -> None:
    x = sine(freq_hz, N2001_FS, 2.0)
    y = bandpass(x, N2001_FS, (20.0, 2500.0), order=4)
    assert y.dtype == np.float32
    assert abs(gain_db(y, x, freq_hz, N2001_FS)) < 0.5


@pytest.mark.parametrize("freq_hz", [2.0, 5.0, 10.0, 4000.0, 6000.0, 9000.0])
def test_bandpass_stopband_at_least_30_db_down(freq_hz: float) -> None:
    x = sine(freq_hz, N2001_FS, 4.0)
    y = bandpass(x, N2001_FS, (20.0, 2500.0), order=4)
    assert gain_db(y, x, freq_hz, N2001_FS) <= -30.0


def test_bandpass_is_zero_phase() -> None:
    fs = 6000.0
    x = sine(313.0, fs, 2.0)
    design = design_filter(fs, (20.0, 2500.0), 4, line_hz=50.0, n_harmonics=3)
    y = design.apply(x)
    _, phase_in = fit_sine(x, 313.0, fs)
    _, phase_out = fit_sine(y, 313.0, fs)
    assert abs(math.degrees(phase_out - phase_in)) < 0.5
    # and no lag: the cross-correlation of input and output peaks at zero
    mid = slice(len(x) // 4, 3 * len(x) // 4)
    xc = np.correlate(y[mid], x[mid], mode="full")
    assert int(np.argmax(xc)) - (len(x[mid]) - 1) == 0


def test_notch_removes_mains_and_harmonic_keeps_75_hz() -> None:
    fs = 6000.0
    for freq, expect_removed in ((50.0, True), (150.0, True), (75.0, False)):
        x = sine(freq, fs, 8.0, amp=200.0)
        y = notch(x, fs, line_hz=50.0, n_harmonics=3, q=30.0)
        g = gain_db(y, x, freq, fs)
        if expect_removed:
            assert g <= -30.0, (freq, g)
        else:
            assert abs(g) < 0.5, (freq, g)


@pytest.mark.parametrize("phase", [0.3, 1.2, 2.5])
def test_notch_does_not_ring_at_record_edges(phase: float) -> None:
    # 30 µV noise + 500 µV hum (50.02 Hz, slightly off nominal) + 3rd harmonic: the notched
    # output must match the hum-free input filtered alike, also in the first/last 50 ms.
    # scipy's default edge padding left 150-190 µV rms there (see _extend_with_hum).
    fs = 6000.0
    t = np.arange(int(6 * fs)) / fs
    emg = np.random.default_rng(1).normal(0.0, 30.0, t.size)
    hum = 500 * np.sin(2 * np.pi * 50.02 * t + phase) + 100 * np.sin(2 * np.pi * 150.06 * t)
    with_notch = design_filter(fs, (20.0, 2500.0), 4, line_hz=50.0, n_harmonics=3)
    reference = design_filter(fs, (20.0, 2500.0), 4).apply(emg)
    error = with_notch.apply(emg + hum) - reference
    edge = int(0.05 * fs)
    for part in (error[:edge], error[-edge:]):
        assert float(np.sqrt(np.mean(part**2))) < 40.0
    assert float(np.sqrt(np.mean(error[edge:-edge] ** 2))) < 15.0
    # a hum-free signal is left as the plain filter would leave it, away from the edges
    clean = with_notch.apply(emg)
    plain = sps.sosfiltfilt(np.array(with_notch.sos), emg)
    assert float(np.abs(clean - plain)[int(fs) : -int(fs)].max()) < 0.5


def test_notch_harmonics_stop_below_band_edge_and_nyquist() -> None:
    d = design_filter(6000.0, (20.0, 400.0), 4, line_hz=50.0, n_harmonics=20)
    assert d.notch_hz == tuple(50.0 * k for k in range(1, 8))  # 50..350, below the 400 Hz edge
    d = design_filter(1000.0, None, 4, line_hz=60.0, n_harmonics=20)
    assert max(d.notch_hz) < 0.95 * 500.0 and len(d.notch_hz) == 7  # 60..420 Hz


def test_low_sampling_rate_degrades_to_highpass() -> None:
    fs = 4000.0  # upper edge 5 kHz is above this rate's Nyquist
    design = design_filter(fs, (20.0, 5000.0), 4)
    assert design.kind == "highpass"
    assert design.band_hz == (20.0, None)
    assert design.note is not None and "high-pass" in design.note
    x_pass, x_stop = sine(1500.0, fs, 4.0), sine(5.0, fs, 4.0)
    assert abs(gain_db(bandpass(x_pass, fs, (20.0, 5000.0)), x_pass, 1500.0, fs)) < 0.5
    assert gain_db(bandpass(x_stop, fs, (20.0, 5000.0)), x_stop, 5.0, fs) <= -30.0

    cfg = PreprocessConfig(band_hz=(20.0, 5000.0), target_fs_hz=None, notch=None)
    out, usable = preprocess_recording(rec(emg_like(8000, fs, 0), fs), cfg)
    assert out.fs_hz == fs and usable.all()
    assert out.meta["preprocess"]["filter"]["kind"] == "highpass"
    assert "Nyquist" in out.meta["preprocess"]["filter"]["note"]


def test_band_below_nyquist_is_an_error_naming_the_record() -> None:
    cfg = PreprocessConfig(band_hz=(600.0, 900.0), target_fs_hz=None)
    with pytest.raises(SignalError, match=r"slow1.*low edge"):
        preprocess_recording(rec(emg_like(4000, 1000.0, 0), 1000.0, rid="slow1"), cfg)


# ---- resampling ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fs_from", "fs_to", "freq_hz", "up_down"),
    [(N2001_FS, 6000.0, 1000.0, (32, 125)), (4000.0, 10_000.0, 700.0, (5, 2))],
)
def test_resample_keeps_frequency_amplitude_and_timing(
    fs_from: float, fs_to: float, freq_hz: float, up_down: tuple[int, int]
) -> None:
    x = sine(freq_hz, fs_from, 3.0, amp=150.0)
    y, fs = resample(x, fs_from, fs_to)
    assert resample_ratio(fs_from, fs_to) == up_down
    assert fs == fs_to  # exact
    assert y.shape[0] == math.ceil(x.shape[0] * up_down[0] / up_down[1])
    assert y.dtype == np.float32
    amp, phase = fit_sine(y, freq_hz, fs)
    assert amp == pytest.approx(150.0, rel=0.01)
    assert abs(phase) < math.radians(1.0)  # a sine starting at 0 still starts at 0: no delay
    # a fit at the right frequency explains the signal (a wrong rate would leave a residual)
    t = np.arange(y.shape[0]) / fs
    mid = slice(y.shape[0] // 10, -y.shape[0] // 10)
    resid = y[mid] - amp * np.sin(2 * np.pi * freq_hz * t[mid] + phase)
    assert np.sqrt(np.mean(resid**2)) < 0.01 * 150.0


def test_resample_same_rate_is_identity() -> None:
    x = emg_like(1000, 6000.0, 1)
    y, fs = resample(x, 6000.0, 6000.0)
    assert fs == 6000.0 and np.array_equal(x, y) and y is not x


def _slow_resample_mask(
    src: np.ndarray, fs_from: float, fs_to: float, n_out: int, margin: int
) -> np.ndarray:
    """Reference for resample_mask written from its definition, one output sample at a time."""
    up, down = resample_ratio(fs_from, fs_to)
    reach = 0 if up == down == 1 else 10 * max(up, down)  # resample_poly's FIR half-length
    out = np.empty(n_out, dtype=bool)
    for j in range(n_out):
        lo = max(0, math.ceil((j * down - reach) / up) - margin)
        hi = min(src.size - 1, (j * down + reach) // up + margin)
        out[j] = bool(src[lo : hi + 1].all())
    return out


@pytest.mark.parametrize(
    ("fs_from", "fs_to"),
    [(N2001_FS, 6000.0), (4000.0, 10_000.0), (6000.0, 6000.0), (44_100.0, 6000.0)],
)
def test_resample_mask_matches_definition(fs_from: float, fs_to: float) -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        n = int(rng.integers(200, 3000))
        src = np.ones(n, dtype=bool)
        for _ in range(int(rng.integers(1, 5))):
            a = int(rng.integers(0, n))
            src[a : a + int(rng.integers(1, 80))] = False
        up, down = resample_ratio(fs_from, fs_to)
        n_out = math.ceil(n * up / down)
        margin = int(rng.integers(0, 30))
        fast = resample_mask(src, fs_from, fs_to, n_out, margin_samples=margin)
        assert np.array_equal(fast, _slow_resample_mask(src, fs_from, fs_to, n_out, margin))


def test_resample_mask_covers_the_unusable_time_span() -> None:
    n = round(4 * N2001_FS)
    src = np.ones(n, dtype=bool)
    a, b = round(1.0 * N2001_FS), round(1.5 * N2001_FS)
    src[a:b] = False
    n_out = math.ceil(n * 32 / 125)
    out = resample_mask(src, N2001_FS, 6000.0, n_out)
    t_bad = np.flatnonzero(~out) / 6000.0
    assert t_bad.min() <= a / N2001_FS and t_bad.max() >= (b - 1) / N2001_FS
    assert t_bad.max() - t_bad.min() < 0.5 + 0.01  # only the FIR reach (~1.7 ms) added
    assert np.all(np.diff(np.flatnonzero(~out)) == 1)  # one contiguous stretch


# ---- normalisation ---------------------------------------------------------------------------


def test_zscore_normaliser_uses_fitted_statistics_not_new_data() -> None:
    rng = np.random.default_rng(4)
    train = (5.0 + 2.0 * rng.standard_normal((40, 500))).astype(np.float32)
    test = (-3.0 + 10.0 * rng.standard_normal((10, 500))).astype(np.float32)
    norm = Normaliser("zscore").fit(train)
    assert norm.center == pytest.approx(float(np.mean(train, dtype=np.float64)), rel=1e-9)
    assert norm.scale == pytest.approx(float(np.std(train, dtype=np.float64)), rel=1e-9)
    out = norm.transform(test)
    expected = (test.astype(np.float64) - train.mean(dtype=np.float64)) / train.std(
        dtype=np.float64
    )
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    # test data keeps its own offset and spread relative to the training statistics
    assert out.mean() == pytest.approx(-4.0, abs=0.2)
    assert out.std() == pytest.approx(5.0, rel=0.05)


def test_robust_normaliser_uses_median_and_iqr_of_training_data() -> None:
    rng = np.random.default_rng(5)
    train = rng.laplace(2.0, 3.0, size=20_000).astype(np.float32)
    train[:50] = 1e4  # outliers barely move median / IQR
    test = rng.laplace(0.0, 1.0, size=5000).astype(np.float32)
    norm = Normaliser("robust").fit([train[:7000], train[7000:]])  # a list of arrays works too
    q25, med, q75 = np.percentile(train, [25, 50, 75])
    assert norm.center == pytest.approx(med, rel=1e-6)
    assert norm.scale == pytest.approx(q75 - q25, rel=1e-6)
    np.testing.assert_allclose(
        norm.transform(test), (test - med) / (q75 - q25), rtol=1e-5, atol=1e-6
    )


def test_normaliser_round_trips_through_json() -> None:
    data = np.random.default_rng(6).normal(3.0, 7.0, 1000).astype(np.float32)
    norm = Normaliser("robust").fit(data)
    again = Normaliser.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert again.method == "robust" and again.fitted
    probe = np.linspace(-20, 20, 11, dtype=np.float32)
    np.testing.assert_array_equal(again.transform(probe), norm.transform(probe))


def test_normaliser_guards() -> None:
    with pytest.raises(ConfigError, match="not fitted"):
        Normaliser("zscore").transform(np.zeros(3))
    with pytest.raises(ConfigError, match="method"):
        Normaliser("minmax")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown"):
        Normaliser.from_dict({"method": "zscore", "center": 0.0, "scale": 1.0, "mean": 3})
    flat = Normaliser("zscore").fit(np.full(100, 7.0, dtype=np.float32))
    out = flat.transform(np.full(5, 7.0, dtype=np.float32))
    assert np.isfinite(out).all() and np.all(out == 0)


@pytest.mark.parametrize("method", ["zscore", "robust"])
def test_per_window_normalisation_and_flat_windows(method: str) -> None:
    rng = np.random.default_rng(7)
    data = (rng.standard_normal((6, 400)) * np.arange(1, 7)[:, None] + 50).astype(np.float32)
    data[2] = 3.0  # flat window
    data[4, :300] = 0.0  # IQR is 0 but the window is not flat
    out = normalise_windows(data, method)
    assert np.isfinite(out).all()
    assert np.all(out[2] == 0)
    assert out[4].std() > 0.5  # not blown up, not collapsed
    for i in (0, 1, 3, 5):
        if method == "zscore":
            assert out[i].mean() == pytest.approx(0.0, abs=1e-4)
            assert out[i].std() == pytest.approx(1.0, rel=1e-4)
        else:
            q25, med, q75 = np.percentile(out[i], [25, 50, 75])
            assert med == pytest.approx(0.0, abs=1e-5)
            assert q75 - q25 == pytest.approx(1.0, rel=1e-4)


# ---- windows ---------------------------------------------------------------------------------


def _coded_recordings(fs: float) -> tuple[list[Recording], list[np.ndarray]]:
    """Records whose samples encode (record, position), with masked stretches."""
    specs = [
        ("a1", "A", "neurogenic", 3.3),
        ("c1", "C", "healthy", 2.05),
        ("m1", "M", "myopathy", 0.7),
    ]
    recs, masks = [], []
    for k, (rid, subj, label, dur) in enumerate(specs):
        n = round(dur * fs)
        x = (k * 100_000 + np.arange(n)).astype(np.float32)
        mask = np.ones(n, dtype=bool)
        if rid == "a1":
            mask[round(1.1 * fs) : round(1.3 * fs)] = False
            mask[-5:] = False
        recs.append(rec(x, fs, rid, subj, label))
        masks.append(mask)
    return recs, masks


def test_make_windows_index_data_and_mask() -> None:
    fs = 1000.0
    recs, masks = _coded_recordings(fs)
    win = make_windows(recs, masks, window_s=0.5, hop_s=0.2)
    assert win.fs_hz == fs and win.n_samples == 500
    idx = win.index
    assert {
        "record_id",
        "subject_id",
        "label",
        "start_s",
        "start_sample",
        "level",
        "muscle",
    } <= set(idx.columns)
    by_id = {r.record_id: (r, m) for r, m in zip(recs, masks, strict=True)}
    for i, row in idx.iterrows():
        r, m = by_id[row["record_id"]]
        s = int(row["start_sample"])
        assert s % 200 == 0  # on the hop grid
        assert row["start_s"] == pytest.approx(s / fs)
        assert row["subject_id"] == r.subject_id and row["label"] == r.label
        assert row["level"] == "low" and row["muscle"] == "biceps"
        np.testing.assert_array_equal(win.data[i], r.signal[s : s + 500])
        assert m[s : s + 500].all()  # never overlaps a masked sample
    # exactly the windows a brute-force scan finds
    for r, m in zip(recs, masks, strict=True):
        expected = [s for s in range(0, r.n_samples - 500 + 1, 200) if m[s : s + 500].all()]
        got = idx.loc[idx["record_id"] == r.record_id, "start_sample"].tolist()
        assert got == expected
    assert idx["record_id"].unique().tolist() == ["a1", "c1", "m1"]  # input order kept


def test_make_windows_partial_usable_fraction() -> None:
    fs = 1000.0
    recs, masks = _coded_recordings(fs)
    strict = make_windows(recs, masks, 0.5, 0.1)
    loose = make_windows(recs, masks, 0.5, 0.1, min_usable_fraction=0.8)
    assert len(loose) > len(strict)
    assert (loose.index["usable_fraction"] >= 0.8).all()
    for _, row in loose.index.iterrows():
        m = masks[[r.record_id for r in recs].index(row["record_id"])]
        s = int(row["start_sample"])
        assert m[s : s + 500].mean() == pytest.approx(row["usable_fraction"])


def test_make_windows_rejects_mixed_rates_naming_records() -> None:
    a = rec(np.zeros(2000, np.float32), 1000.0, "fast1")
    b = rec(np.zeros(2000, np.float32), 800.0, "slow2")
    with pytest.raises(SignalError, match=r"fast1.*slow2 \(800 Hz\)"):
        make_windows([a, b], None, 1.0, 0.5)
    with pytest.raises(SignalError, match="slow2: mask"):
        make_windows([b], [np.ones(5, bool)], 1.0, 0.5)


# ---- one record, cohorts ---------------------------------------------------------------------


def test_garbage_does_not_leak_beyond_margin() -> None:
    fs = N2001_FS
    n = round(4 * fs)
    emg = emg_like(n, fs, 8) + 500.0  # with a DC offset, as raw amplifier output can have
    a, b = round(2.0 * fs), round(2.3 * fs)
    rng = np.random.default_rng(9)
    garbage = emg.copy()
    garbage[a:b] = np.where(rng.random(b - a) < 0.5, 2500.0, -2500.0)  # rail-to-rail junk
    mask = np.ones(n, dtype=bool)
    mask[a:b] = False
    cfg = PreprocessConfig(notch=50.0)  # defaults otherwise: 6 kHz, 50 ms margin
    out, usable = preprocess_recording(rec(garbage, fs), cfg, FakeQC("r1", mask))
    clean, _ = preprocess_recording(rec(emg, fs), cfg, FakeQC("r1", mask))
    ideal, _ = preprocess_recording(rec(emg, fs), cfg)  # the true EMG inside the gap
    # the garbage's content has no influence at all on the output ...
    np.testing.assert_array_equal(out.signal, clean.signal)
    # ... and usable samples differ from the ideal by < 10 % of the EMG's rms
    rms = float(ideal.signal[usable].std())
    assert np.abs(out.signal[usable] - ideal.signal[usable]).max() < 0.1 * rms
    # the mask covers the stretch plus >= the margin on both sides, and not much more
    t_bad = np.flatnonzero(~usable) / out.fs_hz
    assert t_bad.min() <= 2.0 - 0.05 and t_bad.max() >= 2.3 - 1 / fs + 0.05
    assert t_bad.max() - t_bad.min() < 0.3 + 2 * 0.05 + 0.01
    # without the interpolation the same junk, filtered in place, would spoil the neighbours
    raw, _ = preprocess_recording(rec(garbage, fs), cfg)
    assert np.abs(raw.signal[usable] - ideal.signal[usable]).max() > 0.5 * rms


def test_preprocess_recording_output_and_meta() -> None:
    fs = N2001_FS
    x = emg_like(round(3 * fs), fs, 10) + sine(60.0, fs, 3.0, amp=300.0)
    mask = np.ones(x.size, dtype=bool)
    mask[-2000:] = False
    out, usable = preprocess_recording(rec(x, fs), PreprocessConfig(), FakeQC("r1", mask, 60.0))
    assert out.fs_hz == 6000.0 and out.signal.dtype == np.float32
    assert usable.shape == out.signal.shape and not usable[-1] and usable[0]
    info = out.meta["preprocess"]
    assert info["filter"]["notch_hz"] == [60.0, 120.0, 180.0]
    assert info["notch_source"].startswith("auto")
    assert info["interpolated_samples"] == 2000 and info["resample_up_down"] == [32, 125]
    assert out.meta["level"] == "low" and out.record_id == "r1"  # metadata kept
    # the 60 Hz hum is gone (auto notch at the QC's line frequency) ...
    assert fit_sine(out.signal, 60.0, 6000.0)[0] < 300.0 * 10 ** (-30 / 20)
    # ... and is left alone when QC found no mains peak
    kept, _ = preprocess_recording(rec(x, fs), PreprocessConfig(), FakeQC("r1", mask, None))
    assert fit_sine(kept.signal, 60.0, 6000.0)[0] > 0.8 * 300.0


def test_preprocess_recording_rejects_bad_input() -> None:
    fs = 6000.0
    x = emg_like(6000, fs, 11)
    with pytest.raises(SignalError, match="r1: QC usable mask"):
        preprocess_recording(rec(x, fs), PreprocessConfig(), FakeQC("r1", np.ones(10, bool)))
    with pytest.raises(SignalError, match="another record"):
        preprocess_recording(rec(x, fs), PreprocessConfig(), FakeQC("zz", np.ones(x.size, bool)))
    bad = x.copy()
    bad[5] = np.nan
    with pytest.raises(SignalError, match=r"r1: .*NaN"):
        preprocess_recording(rec(bad, fs), PreprocessConfig())
    with pytest.raises(SignalError, match=r"short1: .*too short"):
        preprocess_recording(rec(x[:20], fs, rid="short1"), PreprocessConfig(target_fs_hz=None))


def test_record_scope_normalisation_uses_usable_samples() -> None:
    fs = 6000.0
    x = emg_like(6 * 6000, fs, 12, rms_uv=80.0)
    mask = np.ones(x.size, dtype=bool)
    x[:6000] = 5000.0  # junk that would dominate the statistics
    mask[:6000] = False
    cfg = PreprocessConfig(normalise="zscore", normalise_scope="record", target_fs_hz=None)
    out, usable = preprocess_recording(rec(x, fs), cfg, FakeQC("r1", mask))
    assert out.signal[usable].mean() == pytest.approx(0.0, abs=1e-3)
    assert out.signal[usable].std() == pytest.approx(1.0, rel=1e-3)
    assert out.meta["preprocess"]["normalise"]["scale"] == pytest.approx(80.0, rel=0.1)


def _small_cohort(fs: float) -> tuple[Cohort, dict[str, FakeQC]]:
    recs, qcs = [], {}
    for k, (subj, label) in enumerate(
        [("A1", "neurogenic"), ("C1", "healthy"), ("M1", "myopathy")]
    ):
        for j in range(2):
            rid = f"{subj}_{j}"
            x = emg_like(round(2.6 * fs), fs, 20 + 2 * k + j, rms_uv=50.0 * (k + 1))
            mask = np.ones(x.size, dtype=bool)
            if j == 1:
                mask[round(1.0 * fs) : round(1.2 * fs)] = False
            recs.append(rec(x, fs, rid, subj, label))
            qcs[rid] = FakeQC(rid, mask, 50.0)
    return Cohort.from_recordings(recs), qcs


def test_preprocess_cohort_threads_progress_and_windows() -> None:
    cohort, qcs = _small_cohort(N2001_FS)
    cfg = PreprocessConfig(window_s=0.5, hop_s=0.25)
    calls: list[tuple[int, int]] = []
    serial = preprocess_cohort(cohort, cfg, qcs, n_jobs=1)
    threaded = preprocess_cohort(
        cohort, cfg, qcs, n_jobs=2, on_progress=lambda d, t: calls.append((d, t))
    )
    np.testing.assert_array_equal(serial.data, threaded.data)
    assert serial.index.equals(threaded.index)
    assert sorted(calls) == [(i, 6) for i in range(1, 7)]
    assert serial.fs_hz == 6000.0 and serial.n_samples == 3000
    # windows of records with a masked stretch avoid it (plus the margin)
    done = dict((r.record_id, m) for r, m in preprocess_records(cohort, cfg, qcs))
    for _, row in serial.index.iterrows():
        s = int(row["start_sample"])
        assert done[row["record_id"]][s : s + 3000].all()
    per_rec = serial.index.groupby("record_id").size()
    assert per_rec["A1_0"] > per_rec["A1_1"]
    with pytest.raises(SignalError, match="no QC report"):
        preprocess_cohort(cohort, cfg, {k: v for k, v in qcs.items() if k != "C1_0"})


def test_preprocess_cohort_fitted_normaliser_is_fitted_on_training_only() -> None:
    cohort, qcs = _small_cohort(6000.0)
    train, test = cohort.subset(["A1_0", "C1_0"]), cohort.subset(["M1_0", "M1_1"])
    cfg = PreprocessConfig(normalise="zscore", normalise_scope="fitted", target_fs_hz=None)
    with pytest.raises(ConfigError, match="needs a Normaliser"):
        preprocess_cohort(train, cfg, qcs)
    with pytest.raises(ConfigError, match="differs"):
        preprocess_cohort(train, cfg, qcs, normaliser=Normaliser("robust"))
    raw_cfg = PreprocessConfig(normalise="none", target_fs_hz=None)
    raw_train = preprocess_cohort(train, raw_cfg, qcs)
    raw_test = preprocess_cohort(test, raw_cfg, qcs)
    norm = Normaliser("zscore")
    w_train = preprocess_cohort(train, cfg, qcs, normaliser=norm)
    assert norm.center is not None and norm.scale is not None
    assert norm.scale == pytest.approx(float(raw_train.data.std(dtype=np.float64)), rel=1e-6)
    w_test = preprocess_cohort(test, cfg, qcs, normaliser=norm)  # not refitted on test data
    np.testing.assert_allclose(
        w_test.data, (raw_test.data - norm.center) / norm.scale, rtol=1e-4, atol=1e-4
    )
    assert w_test.data.std() > 1.5  # myopathy records are louder here than the training set
    assert w_train.data.std() == pytest.approx(1.0, rel=1e-3)


def test_preprocess_cohort_window_scope() -> None:
    cohort, qcs = _small_cohort(6000.0)
    cfg = PreprocessConfig(normalise="zscore", normalise_scope="window", target_fs_hz=None)
    win = preprocess_cohort(cohort, cfg, qcs)
    np.testing.assert_allclose(win.data.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(win.data.std(axis=1), 1.0, rtol=1e-3)


# ---- config ----------------------------------------------------------------------------------


def test_config_json_round_trip() -> None:
    cfg = PreprocessConfig(
        band_hz=(10.0, 3000.0),
        filter_order=2,
        notch=60.0,
        notch_harmonics=5,
        notch_q=25.0,
        target_fs_hz=None,
        normalise="robust",
        normalise_scope="fitted",
        window_s=0.25,
        hop_s=0.125,
        mask_margin_s=0.02,
        min_usable_fraction=0.9,
    )
    text = cfg.to_json()
    assert json.loads(text)["version"] == 1
    assert PreprocessConfig.from_json(text) == cfg
    assert PreprocessConfig.from_dict(PreprocessConfig().to_dict()) == PreprocessConfig()
    assert PreprocessConfig.from_dict({"band_hz": None}).band_hz is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"band_hz": [500, 20]}, "band_hz"),
        ({"band_hz": [0, 20]}, "band_hz"),
        ({"band_hz": [True, 20]}, "band_hz"),
        ({"band_hz": [20]}, "band_hz"),
        ({"filter_order": 0}, "filter_order"),
        ({"filter_order": 2.5}, "filter_order"),
        ({"notch": "mains"}, "notch"),
        ({"notch": -50}, "notch"),
        ({"notch_harmonics": 0}, "notch_harmonics"),
        ({"notch_q": 0}, "notch_q"),
        ({"target_fs_hz": -1}, "target_fs_hz"),
        ({"normalise": "minmax"}, "normalise"),
        ({"normalise_scope": "subject"}, "normalise_scope"),
        ({"window_s": 0}, "window_s"),
        ({"hop_s": -0.5}, "hop_s"),
        ({"mask_margin_s": -1}, "mask_margin_s"),
        ({"min_usable_fraction": 0}, "min_usable_fraction"),
        ({"min_usable_fraction": 1.5}, "min_usable_fraction"),
        ({"window": 1.0}, "unknown"),
        ({"version": 99}, "version"),
    ],
)
def test_config_validation_names_the_problem(changes: dict[str, object], field: str) -> None:
    data = PreprocessConfig().to_dict() | changes
    with pytest.raises(ConfigError, match=field):
        PreprocessConfig.from_dict(data)


def test_config_from_json_rejects_malformed_text() -> None:
    with pytest.raises(ConfigError, match="JSON"):
        PreprocessConfig.from_json("{band_hz: ")
    with pytest.raises(ConfigError, match="mapping"):
        PreprocessConfig.from_json("[1, 2]")


# ---- real data -------------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_n2001_records_through_qc_and_preprocessing(n2001: Path) -> None:
    from emgdx.io import read_recording
    from emgdx.quality import assess

    cfg = PreprocessConfig()
    recs = [read_recording(n2001 / f"{name}.hea") for name in ("N2001A01BB01", "N2001A08BB02")]
    reports = {r.record_id: assess(r) for r in recs}
    win = preprocess_cohort(recs, cfg, reports, n_jobs=2)
    assert win.fs_hz == 6000.0 and win.n_samples == 6000
    assert np.isfinite(win.data).all()
    for r in recs:
        out, usable = preprocess_recording(r, cfg, reports[r.record_id])
        assert out.n_samples == math.ceil(r.n_samples * 32 / 125)
        starts = win.index.loc[win.index["record_id"] == r.record_id, "start_sample"]
        expected = [
            s for s in range(0, out.n_samples - 6000 + 1, 3000) if usable[s : s + 6000].all()
        ]
        assert starts.tolist() == expected
        # EMG power stays in the band: residual below 20 Hz is tiny compared with the total
        f, p = sps.welch(out.signal[usable], fs=6000.0, nperseg=4096)
        assert p[f < 10].sum() < 1e-3 * p.sum()
    # the A08 record ends in 0.23-0.65 s of garbage (data README): no window may touch it
    assert not reports["N2001A08BB02"].usable_mask[-1], "QC should mask A08's garbage tail"
    last = win.index.loc[win.index["record_id"] == "N2001A08BB02", "start_s"].max()
    assert last + 1.0 <= recs[1].duration_s - 0.2
