"""Tests of emgdx.quality: synthetic signals with known faults, then the real N2001 faults."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.signal import butter, sosfilt, welch

from emgdx.errors import ConfigError, SignalError
from emgdx.needle import welch_psd
from emgdx.quality import (
    QC_FLAGS,
    QCConfig,
    QualityReport,
    assess,
    assess_cohort,
)
from emgdx.recording import Cohort, Recording

RAIL_UV = 2500.0
QUANTUM_UV = 2 * RAIL_UV / 65535  # a 16-bit converter spanning ±2500 µV


def emg_surrogate(
    fs_hz: float, duration_s: float, rms_uv: float = 60.0, seed: int = 0
) -> np.ndarray:
    """EMG-like: band-limited Gaussian noise with a slowly varying envelope, and motor units.

    Band 20 Hz - min(2 kHz, 0.4 fs) like needle EMG after its amplifier, an envelope that
    waxes and wanes like recruitment, three motor units discharging at about 10 Hz (biphasic
    potentials of ~1.5 ms, twice the background's RMS; needle EMG is not noise, and QC says
    so), a few µV of white amplifier noise, 16-bit quantisation.
    """
    rng = np.random.default_rng(seed)
    n = round(fs_hz * duration_s)
    sos = butter(4, [20.0, min(2000.0, 0.4 * fs_hz)], btype="bandpass", fs=fs_hz, output="sos")
    x = sosfilt(sos, rng.standard_normal(n))
    t = np.arange(n) / fs_hz
    envelope = 1.0 + 0.5 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi))
    x = x * envelope
    x *= 0.5 / x.std()
    width = 0.0004 * fs_hz
    half = round(4 * width)
    tt = np.arange(-half, half + 1)
    muap = -tt / width * np.exp(0.5 - 0.5 * (tt / width) ** 2)  # peak magnitude 1
    for unit in range(3):
        times = np.cumsum(rng.normal(0.1, 0.01, size=int(duration_s * 12) + 2))
        at = (times[times < duration_s - 0.01] * fs_hz).astype(int) + half
        for i in at[at < n - half - 1]:
            x[i - half : i + half + 1] += (1.0 + 0.5 * unit) * muap
    x *= rms_uv / x.std()
    x += 3.0 * rng.standard_normal(n)
    return np.round(x / QUANTUM_UV) * QUANTUM_UV


def make_recording(
    signal: np.ndarray, fs_hz: float, *, rails: bool = True, record_id: str = "SYN01"
) -> Recording:
    meta = {"digital_range_uv": (-RAIL_UV, RAIL_UV)} if rails else {}
    return Recording(np.asarray(signal, dtype=np.float32), fs_hz, record_id, "S01", meta=meta)


def dilate(mask: np.ndarray, margin: int) -> np.ndarray:
    """Reference dilation by convolution (independent of the module's difference array)."""
    kernel = np.ones(2 * margin + 1)
    return np.convolve(mask.astype(float), kernel, mode="same") > 0.5


def garbage(n: int, seed: int) -> np.ndarray:
    """A memory-dump tail like N2001's: raw int16 words, many with few bits set, in µV."""
    rng = np.random.default_rng(seed)
    words = rng.integers(-32768, 32768, size=n)
    few_bits = rng.random(n) < 0.3
    words[few_bits] = (2 ** rng.integers(0, 15, size=few_bits.sum())) * rng.choice(
        [-1, 1], size=few_bits.sum()
    )
    return words * QUANTUM_UV


# ---------------------------------------------------------------------------------------------
# clean signals


@pytest.mark.parametrize("fs_hz", [4000.0, 10_000.0, 23_437.5])
@pytest.mark.parametrize("rails", [True, False])
def test_clean_surrogate_passes(fs_hz: float, rails: bool) -> None:
    rec = make_recording(emg_surrogate(fs_hz, 4.0, seed=int(fs_hz)), fs_hz, rails=rails)
    report = assess(rec)
    assert report.flags == ()
    assert report.ok
    assert report.usable_mask.dtype == bool
    assert report.usable_mask.shape == (rec.n_samples,)
    assert report.usable_mask.all()
    assert report.usable_fraction == 1.0
    assert report.line_freq_hz is None
    assert report.metrics["line_peak_db"] < 10.0
    assert report.metrics["duration_s"] == pytest.approx(4.0)


# ---------------------------------------------------------------------------------------------
# empty / flat


def test_zeroed_signal_is_empty() -> None:
    report = assess(make_recording(np.zeros(50_000), 10_000.0))
    assert "empty" in report.flags
    assert not report.usable_mask.any()
    assert report.metrics["zero_fraction"] == 1.0


def test_mostly_zero_signal_with_a_snippet_is_empty() -> None:
    # Like N2001A06BB08: a 45 ms snippet of EMG, then exact zeros (99.6 %).
    fs = 10_000.0
    x = np.zeros(round(10 * fs))
    x[:450] = emg_surrogate(fs, 0.045, seed=3)
    report = assess(make_recording(x, fs))
    assert report.flags == ("empty", "too_short")
    assert not report.usable_mask.any()
    assert report.metrics["zero_fraction"] == pytest.approx(0.9955, abs=1e-3)


@pytest.mark.parametrize("hum_uv", [20.0, 500.0])
@pytest.mark.parametrize("mains_hz", [50.0, 60.0])
def test_dead_channel_with_only_hum_is_empty(hum_uv: float, mains_hz: float) -> None:
    # A disconnected electrode picks up mains: no flat stretch, but no EMG either.
    fs = 10_000.0
    t = np.arange(round(8 * fs)) / fs
    x = 40.0 + hum_uv * np.sin(2 * np.pi * mains_hz * t + 0.4)
    x += 0.2 * hum_uv * np.sin(2 * np.pi * 3 * mains_hz * t)
    report = assess(make_recording(np.round(x / QUANTUM_UV) * QUANTUM_UV, fs))
    assert "empty" in report.flags and "too_short" in report.flags
    assert report.line_freq_hz == mains_hz
    assert report.metrics["signal_floor_uv"] < 0.5
    assert not report.usable_mask.any()


def test_quiet_emg_under_strong_hum_is_not_empty() -> None:
    # 5 µV rms of EMG (quieter than any N2001 record) under 800 µV of hum is still a record.
    fs = 10_000.0
    x = emg_surrogate(fs, 6.0, rms_uv=5.0, seed=9)
    x = x + 800.0 * np.sin(2 * np.pi * 50.0 * np.arange(x.size) / fs)
    report = assess(make_recording(x, fs))
    assert "empty" not in report.flags
    assert "line_noise" in report.flags
    assert report.metrics["signal_floor_uv"] > 2.0
    assert report.usable_mask.all()


def test_zero_length_signal_is_empty() -> None:
    report = assess(make_recording(np.zeros(0), 10_000.0))
    assert report.flags == ("empty", "too_short")
    assert report.usable_fraction == 0.0


def test_flat_dropout_is_flagged_and_masked_with_margin() -> None:
    fs = 10_000.0
    x = emg_surrogate(fs, 3.0, seed=5)
    start, stop = 12_000, 12_500  # 50 ms held at one value, like a signal dropout
    x[start:stop] = x[start]
    report = assess(make_recording(x, fs))
    assert report.flags == ("flat",)
    margin = round(QCConfig().margin_s * fs)
    expected = np.ones(x.size, dtype=bool)
    expected[start - margin : stop + margin] = False
    np.testing.assert_array_equal(report.usable_mask, expected)
    assert report.metrics["flat_fraction"] == pytest.approx(500 / x.size)


def test_short_hold_below_threshold_is_not_flat() -> None:
    fs = 10_000.0
    x = emg_surrogate(fs, 3.0, seed=6)
    x[5000:5040] = x[5000]  # 4 ms < flat_min_run_s (10 ms)
    report = assess(make_recording(x, fs))
    assert report.ok
    assert report.usable_mask.all()


# ---------------------------------------------------------------------------------------------
# clipping


def clipped_signal(fs_hz: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A surrogate with loud bursts that hit ±RAIL_UV, and where it was clipped."""
    x = emg_surrogate(fs_hz, 4.0, rms_uv=300.0, seed=seed)
    rng = np.random.default_rng(seed)
    burst = round(0.015 * fs_hz)
    for start in rng.integers(0, x.size - burst, 12):
        x[start : start + burst] *= 12.0
    clipped = np.abs(x) >= RAIL_UV
    return np.clip(x, -RAIL_UV, RAIL_UV), clipped


@pytest.mark.parametrize("rails", [True, False], ids=["reader-rails", "inferred-rails"])
def test_clipping_masks_exactly_the_clipped_runs_plus_margin(rails: bool) -> None:
    fs = 10_000.0
    x, clipped = clipped_signal(fs, seed=11)
    assert 0.005 < clipped.mean() < 0.05  # the fixture really clips, but not everywhere
    report = assess(make_recording(x, fs, rails=rails))
    assert report.flags == ("clipping",)
    config = QCConfig()
    at_rail = np.abs(x) >= RAIL_UV - config.clip_tolerance * 2 * RAIL_UV
    assert at_rail[clipped].all()
    expected = ~dilate(at_rail, round(config.margin_s * fs))
    np.testing.assert_array_equal(report.usable_mask, expected)
    assert report.metrics["clipped_fraction"] == pytest.approx(at_rail.mean())
    assert report.metrics["rail_lo_uv"] == pytest.approx(-RAIL_UV, abs=0.01)
    assert report.metrics["rail_hi_uv"] == pytest.approx(RAIL_UV, abs=0.01)


def test_rare_clipped_samples_are_masked_but_not_flagged() -> None:
    fs = 10_000.0
    x = emg_surrogate(fs, 5.0, seed=12)
    x[20_000:20_003] = RAIL_UV  # 3 samples: 0.006 % of the record, below clip_flag_fraction
    report = assess(make_recording(x, fs))
    assert "clipping" not in report.flags
    assert not report.usable_mask[20_000:20_003].any()
    assert report.metrics["clipped_runs"] == 1


def test_smooth_large_wave_is_not_taken_for_clipping() -> None:
    # Without reader rails, a slow wave's quantised top must not look like a saturated ADC.
    fs = 10_000.0
    t = np.arange(round(4 * fs)) / fs
    x = emg_surrogate(fs, 4.0, seed=13) + 1500.0 * np.sin(2 * np.pi * 2.0 * t)
    x = np.round(x / QUANTUM_UV) * QUANTUM_UV
    report = assess(make_recording(x, fs, rails=False))
    assert "clipping" not in report.flags
    assert np.isnan(report.metrics["rail_lo_uv"]) and np.isnan(report.metrics["rail_hi_uv"])


# ---------------------------------------------------------------------------------------------
# power-line interference


def add_hum(x: np.ndarray, fs_hz: float, mains_hz: float, amplitude_uv: float) -> np.ndarray:
    t = np.arange(x.size) / fs_hz
    hum = amplitude_uv * np.sin(2 * np.pi * mains_hz * t + 0.4)
    hum += 0.4 * amplitude_uv * np.sin(2 * np.pi * 3 * mains_hz * t + 1.1)
    return x + hum


@pytest.mark.parametrize("mains_hz", [50.0, 60.0, 50.3, 59.8])
def test_strong_hum_is_flagged_with_its_frequency(mains_hz: float) -> None:
    fs = 10_000.0
    x = emg_surrogate(fs, 5.0, seed=21)
    y = add_hum(x, fs, mains_hz, 40.0)
    report = assess(make_recording(y, fs))
    assert report.flags == ("line_noise",)
    assert report.line_freq_hz == round(mains_hz / 10) * 10
    assert report.metrics["line_freq_hz"] == report.line_freq_hz
    hum_power = float(np.var(y - x))
    true_ratio = hum_power / float(np.var(x))
    assert report.metrics["line_power_ratio"] == pytest.approx(true_ratio, rel=0.25)
    assert report.usable_mask.all()  # hum is reported, not cut out


@pytest.mark.parametrize("mains_hz", [50.0, 60.0])
def test_weak_hum_is_reported_but_not_flagged(mains_hz: float) -> None:
    fs = 10_000.0
    x = emg_surrogate(fs, 5.0, seed=22)
    y = add_hum(x, fs, mains_hz, 8.0)
    report = assess(make_recording(y, fs))
    assert report.line_freq_hz == mains_hz
    assert "line_noise" not in report.flags
    assert report.metrics["line_power_ratio"] < QCConfig().line_flag_power_ratio


def test_hum_detection_works_at_a_low_sampling_rate() -> None:
    fs = 2000.0
    x = emg_surrogate(fs, 5.0, seed=23)
    report = assess(make_recording(add_hum(x, fs, 60.0, 40.0), fs))
    assert report.line_freq_hz == 60.0
    assert "line_noise" in report.flags


def test_batched_welch_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5000) + 2.0
    freqs, psd = welch_psd(x, 1000.0, 512)
    ref_f, ref_p = welch(x, fs=1000.0, window="hann", nperseg=512, noverlap=256)
    np.testing.assert_allclose(freqs, ref_f)
    np.testing.assert_allclose(psd, ref_p, rtol=1e-10, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# too short


def test_short_signal_is_too_short_but_usable() -> None:
    fs = 10_000.0
    report = assess(make_recording(emg_surrogate(fs, 0.6, seed=31), fs))
    assert report.flags == ("too_short",)
    assert report.usable_mask.all()


def test_too_short_counts_usable_time_only() -> None:
    fs = 10_000.0
    x = emg_surrogate(fs, 1.5, seed=32)
    x[3000:10_000] = 0.0  # 0.7 s dropout leaves 0.8 s usable of 1.5 s
    report = assess(make_recording(x, fs))
    assert report.flags == ("flat", "too_short")
    assert report.metrics["usable_s"] < 1.0
    relaxed = assess(make_recording(x, fs), QCConfig(min_usable_s=0.5))
    assert relaxed.flags == ("flat",)


# ---------------------------------------------------------------------------------------------
# garbage tails


@pytest.mark.parametrize("fs_hz", [4000.0, 23_437.5])
@pytest.mark.parametrize("rails", [True, False])
def test_garbage_tail_is_flagged_and_masked_from_its_onset(fs_hz: float, rails: bool) -> None:
    body = emg_surrogate(fs_hz, 4.0, seed=41)
    tail = garbage(round(0.3 * fs_hz), seed=42)
    x = np.concatenate([body, tail])
    onset = body.size
    report = assess(make_recording(x, fs_hz, rails=rails))
    assert report.flags == ("garbage_tail",)
    assert not report.usable_mask[onset:].any()
    margin = round(QCConfig().margin_s * fs_hz)
    first_masked = int(np.flatnonzero(~report.usable_mask)[0])
    # masked from the onset (or a little before, by at most the margin and a few samples)
    assert onset - margin - 3 <= first_masked <= onset
    assert report.usable_mask[:first_masked].all()
    assert report.metrics["garbage_tail_s"] == pytest.approx(0.3, abs=0.01)
    assert report.metrics["clipped_fraction"] == 0.0  # rail hits in the dump are not clipping


def test_garbage_tail_in_loud_emg_is_found_through_the_adc_range() -> None:
    # EMG at 250 µV RMS: the dump is only ~6x louder than the record, below
    # garbage_rms_ratio, but it spans the ADC range, which the reader's rails reveal.
    fs = 10_000.0
    body = emg_surrogate(fs, 4.0, rms_uv=250.0, seed=45)
    x = np.concatenate([body, garbage(round(0.2 * fs), seed=46)])
    report = assess(make_recording(x, fs))
    assert report.flags == ("garbage_tail",)
    assert not report.usable_mask[body.size :].any()
    without_range_test = assess(make_recording(x, fs), QCConfig(garbage_fullscale_rms=1.0))
    assert "garbage_tail" not in without_range_test.flags


def test_loud_smooth_ending_is_not_garbage() -> None:
    # A strong burst of (correlated) activity at the very end is EMG, not a dump.
    fs = 10_000.0
    x = emg_surrogate(fs, 4.0, seed=43)
    sos = butter(4, [20.0, 400.0], btype="bandpass", fs=fs, output="sos")
    burst = sosfilt(sos, np.random.default_rng(44).standard_normal(3000))
    x[-3000:] += burst * (30 * 60.0 / burst.std())
    report = assess(make_recording(x, fs))
    assert "garbage_tail" not in report.flags
    assert report.metrics["garbage_tail_s"] == 0.0


def test_assess_cohort_extends_tails_repeated_across_records() -> None:
    fs = 10_000.0
    shared = np.concatenate([emg_surrogate(fs, 0.2, seed=50), garbage(round(0.1 * fs), 51)])
    recs = []
    for i in range(3):
        body = emg_surrogate(fs, 3.0, seed=60 + i)
        # R0 and R1 end in the same 0.3 s; R2 ends in a garbage tail of its own
        own = np.concatenate([emg_surrogate(fs, 0.2, seed=52), garbage(round(0.1 * fs), 53)])
        x = np.concatenate([body, shared if i < 2 else own])
        recs.append(make_recording(x, fs, record_id=f"R{i}"))
    alone = [assess(r) for r in recs]
    assert all(rep.flags == ("garbage_tail",) for rep in alone)
    assert all(rep.metrics["garbage_tail_s"] == pytest.approx(0.1, abs=0.005) for rep in alone)

    cohort = Cohort.from_recordings(recs)
    reports = assess_cohort(cohort)
    for rid in ("R0", "R1"):  # the shared 0.3 s ending: EMG-looking part included
        rep = reports[rid]
        assert rep.metrics["repeated_tail_s"] == pytest.approx(0.3, abs=1e-3)
        assert not rep.usable_mask[-shared.size :].any()
        assert rep.usable_mask[: -shared.size - round(QCConfig().margin_s * fs)].all()
    assert reports["R2"].metrics["repeated_tail_s"] == 0.0
    assert reports["R2"].metrics["garbage_tail_s"] == pytest.approx(0.1, abs=0.005)

    off = assess_cohort(cohort, QCConfig(confirm_repeated_tails=False))
    assert off["R0"].metrics["garbage_tail_s"] == pytest.approx(0.1, abs=0.005)


def test_identical_constant_endings_are_not_repeated_tails() -> None:
    fs = 10_000.0
    recs = []
    for i in range(2):
        x = emg_surrogate(fs, 3.0, seed=70 + i)
        x[-2000:] = 0.0
        recs.append(make_recording(x, fs, record_id=f"Z{i}"))
    reports = assess_cohort(Cohort.from_recordings(recs))
    for rep in reports.values():
        assert rep.flags == ("flat",)
        assert rep.metrics["repeated_tail_s"] == 0.0


# ---------------------------------------------------------------------------------------------
# cohort, config, errors


def test_assess_cohort_writes_manifest_columns_and_reports_progress() -> None:
    fs = 10_000.0
    clean = make_recording(emg_surrogate(fs, 2.0, seed=80), fs, record_id="clean")
    clipped_x, _ = clipped_signal(fs, seed=81)
    clipped = make_recording(clipped_x, fs, record_id="clipped")
    hum = make_recording(
        add_hum(emg_surrogate(fs, 2.0, seed=82), fs, 60.0, 40.0), fs, record_id="hum"
    )
    cohort = Cohort.from_recordings([clean, clipped, hum])
    calls: list[tuple[int, int]] = []
    reports = assess_cohort(cohort, on_progress=lambda done, total: calls.append((done, total)))

    assert list(reports) == ["clean", "clipped", "hum"]
    assert calls == [(1, 3), (2, 3), (3, 3)]
    man = cohort.manifest
    expected_cols = [
        "qc_flags",
        "qc_ok",
        *(f"qc_{f}" for f in QC_FLAGS),
        "usable_fraction",
        "line_freq_hz",
    ]
    assert all(c in man.columns for c in expected_cols)
    assert man.loc["clean", "qc_flags"] == ""
    assert bool(man.loc["clean", "qc_ok"])
    assert man.loc["clipped", "qc_flags"] == "clipping"
    assert bool(man.loc["clipped", "qc_clipping"]) and not bool(man.loc["clipped", "qc_ok"])
    assert man.loc["hum", "qc_flags"] == "line_noise"
    assert man.loc["hum", "line_freq_hz"] == 60.0
    assert pd.isna(man.loc["clean", "line_freq_hz"])
    assert man.loc["clipped", "usable_fraction"] == pytest.approx(
        reports["clipped"].usable_fraction
    )
    assert man["qc_ok"].dtype == bool
    for flag in QC_FLAGS:
        assert man[f"qc_{flag}"].dtype == bool


def test_config_round_trips_through_json() -> None:
    config = QCConfig(min_usable_s=2.0, line_freqs_hz=(60.0,), clip_tolerance=0.01)
    again = QCConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.line_freqs_hz == (60.0,)
    assert QCConfig.from_dict(QCConfig().to_dict()) == QCConfig()


@pytest.mark.parametrize(
    "bad",
    [
        {"no_such_threshold": 1.0},
        {"empty_fraction": 1.5},
        {"flat_min_run_s": 0.0},
        {"line_neighbour_hz": [1.0, 15.0]},
        {"min_usable_s": -1.0},
        {"line_freqs_hz": []},
    ],
)
def test_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        QCConfig.from_dict(bad)


def test_config_changes_the_decision() -> None:
    fs = 10_000.0
    x = emg_surrogate(fs, 3.0, seed=90)
    x[10_000:10_150] = x[10_000]  # a 15 ms hold: flat by default, not with a 20 ms minimum
    assert "flat" in assess(make_recording(x, fs)).flags
    assert assess(make_recording(x, fs), QCConfig(flat_min_run_s=0.02)).ok


def test_non_finite_signal_raises_naming_the_record() -> None:
    x = emg_surrogate(10_000.0, 1.5, seed=91)
    x[100] = np.nan
    with pytest.raises(SignalError, match="BAD07"):
        assess(make_recording(x, 10_000.0, record_id="BAD07"))


def test_report_properties() -> None:
    mask = np.array([True, True, False, True])
    report = QualityReport("X", ("clipping",), mask, {}, None)
    assert report.usable_fraction == 0.75
    assert not report.ok
    assert "clipping" in repr(report)


def test_report_to_dict_is_json_ready() -> None:
    fs = 10_000.0
    x, _ = clipped_signal(fs, seed=92)
    report = assess(make_recording(x, fs))
    data = json.loads(json.dumps(report.to_dict()))  # no NaN, no numpy types
    assert data["flags"] == ["clipping"]
    assert data["ok"] is False
    assert data["usable_fraction"] == pytest.approx(report.usable_fraction)
    assert data["line_freq_hz"] is None
    assert data["metrics"]["line_power_ratio"] is None  # nan: no hum found
    assert data["metrics"]["clipped_fraction"] == pytest.approx(report.metrics["clipped_fraction"])


# ---------------------------------------------------------------------------------------------
# real data: the known faults of EMGLAB N2001 (see shared/data/README.md)

CLIPPED = ["A03BB55", "A06BB07", "A06BB12", "C05BB80", "M02BB03", "M02BB61", "M05BB58"]


@pytest.fixture(scope="module")
def n2001_qc(n2001: Path) -> tuple[Cohort, dict[str, QualityReport], float]:
    from emgdx.io import read_cohort

    cohort = read_cohort(n2001)
    t0 = time.perf_counter()
    reports = assess_cohort(cohort)
    seconds = time.perf_counter() - t0
    return cohort, reports, seconds


def _rid(reports: dict[str, QualityReport], short: str) -> str:
    matches = [rid for rid in reports if rid.endswith(short)]
    assert len(matches) == 1, f"{short}: {matches}"
    return matches[0]


@pytest.mark.realdata
def test_n2001_empty_record(n2001_qc: tuple[Cohort, dict[str, QualityReport], float]) -> None:
    _, reports, _ = n2001_qc
    report = reports[_rid(reports, "A06BB08")]
    assert "empty" in report.flags
    assert report.usable_fraction == 0.0
    assert report.metrics["zero_fraction"] > 0.99
    # the empty-channel floor stays far below every real record
    floors = [r.metrics["signal_floor_uv"] for r in reports.values() if "empty" not in r.flags]
    assert len(floors) == len(reports) - 1
    assert min(floors) > 2.0


@pytest.mark.realdata
def test_n2001_every_a08_record_has_a_garbage_tail(
    n2001_qc: tuple[Cohort, dict[str, QualityReport], float],
) -> None:
    cohort, reports, _ = n2001_qc
    a08 = [rid for rid in reports if "A08BB" in rid]
    assert len(a08) == 15
    for rid in a08:
        rep = reports[rid]
        assert "garbage_tail" in rep.flags, rid
        # README: 0.23-0.65 s of repeated garbage at the end of each A08 record
        assert 0.2 <= rep.metrics["garbage_tail_s"] <= 0.7, rid
        n_tail = round(rep.metrics["garbage_tail_s"] * cohort[rid].fs_hz)
        assert not rep.usable_mask[-n_tail:].any(), rid
        assert rep.usable_mask[: -n_tail - round(0.002 * cohort[rid].fs_hz)].all(), rid
        # found from the signal alone too, without comparing records
        assert "garbage_tail" in assess(cohort[rid]).flags, rid


@pytest.mark.realdata
def test_n2001_clipped_records(n2001_qc: tuple[Cohort, dict[str, QualityReport], float]) -> None:
    cohort, reports, _ = n2001_qc
    for short in CLIPPED:
        rid = _rid(reports, short)
        rep = reports[rid]
        assert "clipping" in rep.flags, rid
        # clipped samples sit at -2500 µV; all of them are masked
        x = cohort[rid].signal
        assert not rep.usable_mask[x <= -2499.0].any(), rid
        # without the reader's ADC range the rails are inferred from the signal itself
        bare = cohort[rid].with_signal(x)
        bare.meta.pop("digital_range_uv", None)
        assert "clipping" in assess(bare).flags, rid


@pytest.mark.realdata
def test_n2001_other_records_are_rarely_flagged(
    n2001_qc: tuple[Cohort, dict[str, QualityReport], float],
) -> None:
    cohort, reports, seconds = n2001_qc
    known = {_rid(reports, s) for s in [*CLIPPED, "A06BB08"]}
    known |= {rid for rid in reports if "A08BB" in rid}
    others = [rid for rid in reports if rid not in known]
    assert len(others) == len(reports) - 23
    flagged = [rid for rid in others if reports[rid].flags]
    assert len(flagged) / len(others) < 0.05, flagged
    # the manifest carries the same result
    man = cohort.manifest
    assert int((man["qc_flags"] != "").sum()) == len(known) + len(flagged)
    # a generous guard against accidental slow paths (measured ~1.5-2 ms per record)
    assert seconds / len(reports) < 0.025


@pytest.mark.realdata
def test_n2001_inferred_rails_flag_no_unclipped_record(
    n2001_qc: tuple[Cohort, dict[str, QualityReport], float],
) -> None:
    cohort, reports, _ = n2001_qc
    clipped = {_rid(reports, s) for s in CLIPPED}
    for rec in cohort:
        if rec.record_id in clipped or "A08BB" in rec.record_id:
            continue
        bare = rec.with_signal(rec.signal)
        bare.meta.pop("digital_range_uv", None)
        assert "clipping" not in assess(bare).flags, rec.record_id
