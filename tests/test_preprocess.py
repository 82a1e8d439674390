"""Tests of emgdx.preprocess: filter responses measured on sines, exact resampling, masks,
windows and the config. Synthetic signals only, except the one ``realdata`` test.
Normalisation: tests/test_normalise.py; the front end over cohorts: tests/test_frontend.py."""

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
    PreprocessConfig,
    bandpass,
    design_filter,
    make_windows,
    notch,
    preprocess_recording,
    resample,
    resample_mask,
    resample_plan,
)
from emgdx.recording import Label, Recording

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
    plan = resample_plan(fs_from, fs_to)
    assert (plan.up, plan.down) == up_down and plan.exact
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


@pytest.mark.parametrize(
    ("fs_from", "up_down"),
    [
        (32_768.0, (375, 2048)),
        (44_100.0, (20, 147)),
        (4096.0, (375, 256)),
        (8192.0, (375, 512)),
        (48_000.0, (1, 8)),
        (22_050.0, (40, 147)),
    ],
)
def test_usual_adc_rates_resample_exactly(fs_from: float, up_down: tuple[int, int]) -> None:
    # 32,768 Hz used to be approximated (5999.77 Hz), and the pipeline refused its own output
    plan = resample_plan(fs_from, 6000.0)
    assert (plan.up, plan.down) == up_down and plan.exact
    x = sine(700.0, fs_from, 2.0, amp=100.0)
    y, fs = resample(x, fs_from, 6000.0)
    assert fs == 6000.0 and y.shape[0] == math.ceil(x.shape[0] * 6000 / fs_from)
    amp, phase = fit_sine(y, 700.0, fs)
    assert amp == pytest.approx(100.0, rel=0.01) and abs(phase) < math.radians(1.0)


@pytest.mark.parametrize("fs_from", [5999.77, 44_101.0, 99_991.0, 29_999.7, 4999.999999])
def test_rates_with_huge_ratio_terms_land_on_the_exact_grid(fs_from: float) -> None:
    # no small-term ratio reaches 6 kHz from these: a polyphase stage to a nearby rate and a
    # fractional stage onto the exact output times
    plan = resample_plan(fs_from, 6000.0)
    assert not plan.exact and max(plan.up, plan.down) <= 1000
    t = np.arange(round(4.0 * fs_from)) / fs_from
    x = (100 * np.sin(2 * np.pi * 317.0 * t) + 50 * np.sin(2 * np.pi * 1210.0 * t + 0.3)).astype(
        np.float32
    )
    y, fs = resample(x, fs_from, 6000.0)
    assert fs == 6000.0 and y.shape[0] == plan.n_out(x.shape[0])
    to = np.arange(y.shape[0]) / 6000.0
    truth = 100 * np.sin(2 * np.pi * 317.0 * to) + 50 * np.sin(2 * np.pi * 1210.0 * to + 0.3)
    mid = slice(y.shape[0] // 10, -y.shape[0] // 10)
    # right amplitude and phase at the exact times (a 5999.77 Hz grid drifts by 1.5 samples)
    assert float(np.sqrt(np.mean((y[mid] - truth[mid]) ** 2))) < 0.5


def test_segments_of_a_stream_resample_onto_the_offline_grid() -> None:
    # a live window is preprocessed from a segment of the stream; starting on the plan's
    # grid (a multiple of `down`), its samples are the offline ones, for both kinds of plan
    for fs_from in (32_768.0, 5999.77):
        plan = resample_plan(fs_from, 6000.0)
        x = emg_like(round(6 * fs_from), fs_from, 3)
        whole, _ = resample(x, fs_from, 6000.0)
        offset = 3 * plan.down * max(1, round(fs_from / plan.down))
        part, _ = resample(x[offset:], fs_from, 6000.0, offset=offset)
        first = plan.first_output(offset)
        n = part.shape[0]
        assert first + n == whole.shape[0]
        core = slice(2000, n - 2000)  # away from both ends' edge effects
        np.testing.assert_allclose(part[core], whole[first:][core], atol=0.05)


def _slow_resample_mask(
    src: np.ndarray, fs_from: float, fs_to: float, n_out: int, margin: int
) -> np.ndarray:
    """Reference for resample_mask written from its definition, one output sample at a time."""
    plan = resample_plan(fs_from, fs_to)
    up, down = plan.up, plan.down
    reach = 0 if up == down == 1 else 10 * max(up, down)  # resample_poly's FIR half-length
    out = np.empty(n_out, dtype=bool)
    for j in range(n_out):
        lo = max(0, math.ceil((j * down - reach) / up) - margin)
        hi = min(src.size - 1, (j * down + reach) // up + margin)
        out[j] = bool(src[lo : hi + 1].all())
    return out


@pytest.mark.parametrize(
    ("fs_from", "fs_to"),
    [
        (N2001_FS, 6000.0),
        (4000.0, 10_000.0),
        (6000.0, 6000.0),
        (44_100.0, 6000.0),
        (32_768.0, 6000.0),
    ],
)
def test_resample_mask_matches_definition(fs_from: float, fs_to: float) -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        n = int(rng.integers(200, 3000))
        src = np.ones(n, dtype=bool)
        for _ in range(int(rng.integers(1, 5))):
            a = int(rng.integers(0, n))
            src[a : a + int(rng.integers(1, 80))] = False
        n_out = resample_plan(fs_from, fs_to).n_out(n)
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


# ---- one record ------------------------------------------------------------------------------


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
    from emgdx.frontend import FrontEnd
    from emgdx.io import read_recording
    from emgdx.quality import assess

    cfg = PreprocessConfig()
    recs = [read_recording(n2001 / f"{name}.hea") for name in ("N2001A01BB01", "N2001A08BB02")]
    reports = {r.record_id: assess(r) for r in recs}
    win = FrontEnd(cfg, n_jobs=2).prepare(recs).windows
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


def test_one_sample_is_refused_not_a_native_crash(tmp_path: Path) -> None:
    """scipy's polyphase resampler dies with SIGFPE on one sample (it killed the clinic server
    and `emgdx predict`); it runs in a subprocess here so that a regression fails this test
    instead of killing the test run."""
    import subprocess
    import sys

    from emgdx.preprocess import resample

    with pytest.raises(SignalError, match="at least 2"):
        resample(np.ones(1, dtype=np.float32), 10_000.0, 6_000.0)
    y, _ = resample(np.ones(1, dtype=np.float32), 6_000.0, 6_000.0)  # same rate: nothing to do
    assert y.shape == (1,)
    one = tmp_path / "one.npy"
    np.save(one, np.array([1.0], dtype=np.float32))
    run = subprocess.run(
        [sys.executable, "-m", "emgdx.cli", "predict", str(one), "--fs-hz", "10000", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr  # a problem reported, not a signal (< 0)
    problems = json.loads(run.stdout)["failed"]
    assert len(problems) == 1 and str(one) in problems[0]["problem"]
    assert "Traceback" not in run.stderr
