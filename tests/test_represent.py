"""Representations: registry contract, known answers on sines/chirps/spikes, real data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import chirp

from emgdx.errors import ConfigError, SignalError
from emgdx.represent import (
    REPRESENTATIONS,
    FeatureRepr,
    RawRepr,
    ScalogramRepr,
    SpectrogramRepr,
    cwt_power,
    make_representation,
    representation_from_dict,
)

FS = 6000.0


def sine(freq_hz: float, amp_uv: float = 100.0, n: int = 6000, phase: float = 0.3) -> np.ndarray:
    t = np.arange(n) / FS
    return (amp_uv * np.sin(2 * np.pi * freq_hz * t + phase)).astype(np.float32)


def noise_windows(n: int = 5, t: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = rng.uniform(5, 200, size=(n, 1))
    return (rng.standard_normal((n, t)) * scale).astype(np.float32)


def feats(data: np.ndarray, **params: object) -> dict[str, np.ndarray]:
    rep = FeatureRepr(**params)  # type: ignore[arg-type]
    x = rep.transform(np.atleast_2d(data), FS)["x"]
    return {name: x[:, j] for j, name in enumerate(rep.feature_names)}


# ---- registry contract -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REPRESENTATIONS))
def test_registry_contract(name: str) -> None:
    rep = make_representation(name)
    assert rep.name == name
    data = noise_windows()
    assert rep.fit(data, FS) is rep
    out = rep.transform(data, FS)
    shapes = rep.output_shape(data.shape[1], FS)
    assert set(out) == set(shapes) and "x" in out
    for key, arr in out.items():
        assert arr.dtype == np.float32
        assert arr.shape == (len(data), *shapes[key])
        assert np.isfinite(arr).all()
    empty = rep.transform(data[:0], FS)  # e.g. a record with no usable window
    assert {k: v.shape for k, v in empty.items()} == {k: (0, *v) for k, v in shapes.items()}
    # Deterministic, and each window is transformed independently of the others.
    again = rep.transform(data[2:3], FS)
    for key in out:
        np.testing.assert_allclose(again[key][0], out[key][2], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("raw", {"normalise": "robust", "aux": ["log_rms", "log_p2p"], "clip": 8.0}),
        ("stft", {"window_ms": 20.0, "overlap": 0.75, "f_max_hz": None}),
        ("cwt", {"n_scales": 12, "n_time": 20, "method": "pywt", "bandwidth": 2.0}),
        ("features", {"bands_hz": [[10, 100], [100, 3000]], "groups": ["muap", "time"]}),
    ],
)
def test_json_round_trip(name: str, params: dict[str, object]) -> None:
    rep = make_representation(name, **params)
    assert type(rep).from_json(rep.to_json()) == rep
    assert representation_from_dict(rep.to_dict()) == rep
    assert rep.to_dict()["name"] == name


def test_bad_configs_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown representation"):
        make_representation("wavelet-magic")
    with pytest.raises(ConfigError, match="unknown"):
        make_representation("raw", window_ms=3)
    with pytest.raises(ConfigError, match="aux"):
        RawRepr(aux=("log_volume",))
    with pytest.raises(ConfigError, match="overlap"):
        SpectrogramRepr(overlap=1.0)
    with pytest.raises(ConfigError, match="method"):
        ScalogramRepr(method="magic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="groups"):
        FeatureRepr(groups=("colour",))
    with pytest.raises(ConfigError, match="representation 'cwt', not 'raw'"):
        RawRepr.from_dict({"name": "cwt"})
    with pytest.raises(ConfigError, match="fs_hz"):
        RawRepr().transform(noise_windows(), 0.0)


def test_bad_signals_raise_signal_error() -> None:
    bad = noise_windows()
    bad[3, 10] = np.nan
    for name in REPRESENTATIONS:
        rep = make_representation(name)
        with pytest.raises(SignalError, match="window 3"):
            rep.transform(bad, FS)
        with pytest.raises(SignalError, match="2-D"):
            rep.transform(bad[0], FS)
    with pytest.raises(SignalError, match="segment"):
        SpectrogramRepr(window_ms=100).transform(noise_windows(t=300), FS)
    with pytest.raises(SignalError, match="levels"):
        FeatureRepr(wavelet_level=9).transform(noise_windows(t=300), FS)


# ---- raw ---------------------------------------------------------------------------------


def test_raw_separates_shape_from_amplitude() -> None:
    data = noise_windows()
    out = RawRepr().transform(data, FS)
    louder = RawRepr().transform(data * 10, FS)
    np.testing.assert_allclose(out["x"][:, 0].mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(out["x"][:, 0].std(axis=1), 1, atol=1e-4)
    # Shape unchanged by gain; log RMS moves by exactly log10(10) = 1.
    np.testing.assert_allclose(louder["x"], out["x"], atol=1e-5)
    np.testing.assert_allclose(louder["aux"] - out["aux"], 1.0, atol=1e-5)
    amp = 50.0
    rep = RawRepr(aux=("log_rms", "log_p2p", "log_mav"))
    aux = rep.transform(sine(50, amp)[None], FS)["aux"][0]
    want = [math.log10(amp / math.sqrt(2)), math.log10(2 * amp), math.log10(2 * amp / math.pi)]
    np.testing.assert_allclose(aux, want, atol=2e-3)
    # A flat window has a finite log amplitude (the 1e-3 µV floor), not -inf.
    flat = RawRepr().transform(np.zeros((1, 100), dtype=np.float32), FS)
    assert flat["aux"][0, 0] == pytest.approx(-3.0) and not flat["x"].any()


def test_raw_robust_and_clip() -> None:
    data = noise_windows()
    x = RawRepr(normalise="robust", clip=1.5).transform(data, FS)["x"][:, 0]
    assert np.abs(x).max() <= 1.5
    np.testing.assert_allclose(np.median(x, axis=1), 0, atol=1e-3)
    assert "aux" not in RawRepr(aux=()).transform(data, FS)
    kept = RawRepr(normalise="none").transform(data, FS)["x"][:, 0]
    np.testing.assert_array_equal(kept, data)


# ---- spectrogram -------------------------------------------------------------------------


@pytest.mark.parametrize("freq_hz", [120.0, 700.0, 2100.0])
def test_stft_peak_row_tracks_sine(freq_hz: float) -> None:
    rep = SpectrogramRepr()
    x = rep.transform(sine(freq_hz)[None], FS)["x"][0, 0]
    freqs = rep.frequencies_hz(FS)
    assert x.shape == (freqs.size, rep.times_s(6000, FS).size)
    assert freqs.max() <= 2500.0
    peak = freqs[np.argmax(x.mean(axis=1))]
    assert abs(peak - freq_hz) <= freqs[1] - freqs[0]


def test_stft_is_gain_invariant_with_amplitude_in_aux() -> None:
    data = noise_windows()
    a = SpectrogramRepr().transform(data, FS)
    b = SpectrogramRepr().transform(data * 100, FS)
    np.testing.assert_allclose(a["x"], b["x"], atol=1e-3)
    np.testing.assert_allclose(b["aux"] - a["aux"], 2.0, atol=1e-5)
    absolute = SpectrogramRepr(normalise="none").transform(data * 100, FS)["x"]
    # Without normalisation the log PSD shifts by log10(100^2) = 4.
    base = SpectrogramRepr(normalise="none").transform(data, FS)["x"]
    np.testing.assert_allclose(absolute - base, 4.0, atol=1e-3)


# ---- scalogram ---------------------------------------------------------------------------


def _morlet_direct_power(
    x: np.ndarray, freq_hz: float, bandwidth: float, center_freq: float
) -> np.ndarray:
    """Wavelet power at one scale by direct correlation with the sampled analytic wavelet."""
    a = center_freq * FS / freq_hz
    m = np.arange(-math.ceil(8 * a), math.ceil(8 * a) + 1)
    u = m / a
    psi = np.exp(-(u**2) / bandwidth) * np.exp(2j * np.pi * center_freq * u)
    psi /= math.sqrt(math.pi * bandwidth) * math.sqrt(a)
    coef = np.correlate(x.astype(np.float64), psi, mode="same")  # sum x[b+m] conj(psi[m])
    return np.abs(coef) ** 2


@pytest.mark.parametrize("method", ["fft", "torch"])
def test_cwt_matches_direct_convolution(method: str) -> None:
    if method == "torch":
        pytest.importorskip("torch")
    x = noise_windows(n=1, t=3000, seed=4)[0]
    # Up to 1.2 kHz the sampled wavelet has no spectrum beyond Nyquist; higher up, sampling it
    # aliases (the reason the FFT form, band-limited by construction, is preferred there).
    freqs = np.array([40.0, 300.0, 1200.0])
    got = cwt_power(x[None], FS, freqs, n_time=100, method=method)[0]
    for row, f in enumerate(freqs):
        want = _morlet_direct_power(x, f, 1.5, 1.0).reshape(100, 30).mean(axis=1)
        np.testing.assert_allclose(got[row], want, rtol=2e-3)


def test_cwt_fft_agrees_with_pywt_on_chirp() -> None:
    t = np.arange(6000) / FS
    x = (100 * chirp(t, 30, 1.0, 2400, method="logarithmic")).astype(np.float32)[None]
    freqs = ScalogramRepr().frequencies_hz(FS)
    fft = cwt_power(x, FS, freqs, n_time=96, method="fft")[0]
    ref = cwt_power(x, FS, freqs, n_time=96, method="pywt")[0]
    # Compared as images normalised to unit total power. (PyWavelets resamples its integrated
    # wavelet, which leaks ~-40 dB off the ridge: log images differ in the floor only.)
    a, b = fft / fft.sum(), ref / ref.sum()
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
    assert np.corrcoef(np.sqrt(a).ravel(), np.sqrt(b).ravel())[0, 1] > 0.99
    ridge_fft, ridge_ref = fft.argmax(axis=0), ref.argmax(axis=0)
    assert np.mean(ridge_fft == ridge_ref) > 0.9
    # The ridge climbs with the chirp's frequency.
    assert np.all(np.diff(ridge_fft[2:-2]) >= 0) and ridge_fft[-3] > ridge_fft[2] + 30


def test_cwt_methods_give_the_same_image() -> None:
    pytest.importorskip("torch")
    data = noise_windows(n=3, t=3000)
    images = {
        m: ScalogramRepr(method=m, n_scales=16, n_time=50).transform(data, FS)["x"]  # type: ignore[arg-type]
        for m in ("fft", "torch", "pywt")
    }
    np.testing.assert_allclose(images["torch"], images["fft"], atol=1e-4)
    freqs = np.geomspace(20, 2500, 16)
    power = {m: cwt_power(data, FS, freqs, n_time=50, method=m) for m in ("fft", "torch")}
    np.testing.assert_allclose(power["torch"], power["fft"], rtol=1e-4)
    for i in range(len(data)):
        r = np.corrcoef(images["pywt"][i].ravel(), images["fft"][i].ravel())[0, 1]
        assert r > 0.95


def test_cwt_torch_device_errors() -> None:
    torch = pytest.importorskip("torch")
    data = noise_windows(n=1, t=500)
    with pytest.raises(ConfigError, match="unknown torch device"):
        ScalogramRepr(method="torch", device="abacus", n_time=10).transform(data, FS)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            ScalogramRepr(method="torch", device="cuda", n_time=10).transform(data, FS)


@pytest.mark.parametrize("freq_hz", [35.0, 180.0, 900.0, 2300.0])
def test_cwt_peak_scale_tracks_sine(freq_hz: float) -> None:
    rep = ScalogramRepr()
    x = rep.transform(sine(freq_hz)[None], FS)["x"][0, 0]
    freqs = rep.frequencies_hz(FS)
    log_step = math.log(freqs[1] / freqs[0])
    peak = freqs[np.argmax(x.mean(axis=1))]
    assert abs(math.log(peak / freq_hz)) <= log_step
    assert x.shape == (rep.n_scales, rep.n_time) and rep.times_s(6000, FS).size == rep.n_time


def test_cwt_clips_band_to_nyquist() -> None:
    rep = ScalogramRepr(f_max_hz=2500.0)
    assert rep.frequencies_hz(2000.0).max() == pytest.approx(1000.0)
    with pytest.raises(ConfigError, match="Nyquist"):
        ScalogramRepr(f_min_hz=600.0).frequencies_hz(1000.0)


# ---- features ----------------------------------------------------------------------------


def test_time_features_of_a_sine() -> None:
    amp, f = 80.0, 50.0
    got = feats(sine(f, amp), threshold_uv=0.0)
    assert got["rms_uv"][0] == pytest.approx(amp / math.sqrt(2), rel=1e-4)
    assert got["mav_uv"][0] == pytest.approx(2 * amp / math.pi, rel=1e-3)
    assert got["log_rms"][0] == pytest.approx(math.log10(amp / math.sqrt(2)), abs=1e-4)
    # Over 1 s, sin(2 pi f t + phase) crosses zero 2f times and has 2f extrema.
    assert abs(got["zc_per_s"][0] - 2 * f) <= 1
    assert abs(got["ssc_per_s"][0] - 2 * f) <= 1
    # Waveform length of a sine: 4A per period.
    assert got["wl_uv_per_s"][0] == pytest.approx(4 * amp * f, rel=2e-3)
    assert got["skewness"][0] == pytest.approx(0.0, abs=1e-3)
    assert got["kurtosis"][0] == pytest.approx(-1.5, abs=1e-3)
    assert got["p50_abs_uv"][0] == pytest.approx(amp * math.sin(math.pi / 4), rel=5e-3)
    assert got["p90_abs_uv"][0] == pytest.approx(amp * math.sin(0.9 * math.pi / 2), rel=5e-3)
    max_step = amp * 2 * math.pi * f / FS
    assert feats(sine(f, amp), threshold_uv=1.01 * max_step)["wamp_per_s"][0] == 0
    assert feats(sine(f, amp), threshold_uv=0.5 * max_step)["wamp_per_s"][0] > 1000


def test_noise_floor_and_relative_thresholds() -> None:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(6000) * 10).astype(np.float32)
    got = feats(x)
    assert got["noise_uv"][0] == pytest.approx(10.0, rel=0.05)
    # The relative threshold scales with the window: gain does not change counts.
    louder = feats(x * 20)
    for name in ("zc_per_s", "ssc_per_s", "wamp_per_s", "turns_per_s", "spike_count"):
        assert louder[name][0] == got[name][0]


@pytest.mark.parametrize("freq_hz", [90.0, 300.0, 560.0, 1700.0])
def test_spectral_features_of_a_sine(freq_hz: float) -> None:
    rep = FeatureRepr()
    got = feats(sine(freq_hz))
    assert got["mean_freq_hz"][0] == pytest.approx(freq_hz, rel=0.01)
    df = FS / round(rep.welch_window_ms * 1e-3 * FS)
    assert abs(got["median_freq_hz"][0] - freq_hz) <= df
    bands = {b: got[f"band_{b[0]:g}_{b[1]:g}hz"][0] for b in rep.bands_hz}
    (home,) = [b for b in rep.bands_hz if b[0] <= freq_hz < b[1]]
    assert bands[home] > 0.95 and sum(bands.values()) <= 1.0 + 1e-6


def test_wavelet_features() -> None:
    # At 6 kHz, DWT detail level 3 spans ~375-750 Hz.
    got = feats(sine(560.0))
    energies = {k: v[0] for k, v in got.items() if k.startswith("wt_energy_")}
    assert sum(energies.values()) == pytest.approx(1.0, abs=1e-5)
    assert max(energies, key=energies.get) == "wt_energy_d3"  # type: ignore[arg-type]
    assert energies["wt_energy_d3"] > 0.8
    rng = np.random.default_rng(0)
    white = rng.standard_normal(6000).astype(np.float32)
    sparse = np.zeros(6000, dtype=np.float32)
    sparse[::1000] = 100.0
    sparse += 0.01 * white
    h_white, h_sparse = feats(white)["wt_entropy_d1"][0], feats(sparse)["wt_entropy_d1"][0]
    assert h_white > 0.85 > 0.5 > h_sparse


def _spike_train(
    shape: str, n_spikes: int, amp_uv: float = 300.0, sigma_uv: float = 2.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Noise plus ``n_spikes`` identical MUAP-like spikes; returns the window and one template."""
    s = 0.5e-3 * FS  # shape width in samples
    t = np.arange(-60, 61) / s
    if shape == "biphasic":  # first derivative of a Gaussian, slightly asymmetric
        template = -t * np.exp(0.5 - t**2 / 2) * np.where(t < 0, 1.0, 0.8)
    else:  # Mexican hat: three phases
        template = (1 - t**2) * np.exp(-(t**2) / 2)
    template = amp_uv * template
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(6000) * sigma_uv
    starts = np.arange(n_spikes) * 200 + 100
    for start in starts:
        x[start : start + template.size] += template
    return x.astype(np.float32), template


@pytest.mark.parametrize(("shape", "phases"), [("biphasic", 2), ("triphasic", 3)])
def test_muap_features_on_synthetic_spikes(shape: str, phases: int) -> None:
    n_spikes, sigma = 25, 2.0
    x, template = _spike_train(shape, n_spikes, sigma_uv=sigma)
    got = feats(x)
    assert got["spike_count"][0] == n_spikes
    assert got["spike_rate_hz"][0] == pytest.approx(n_spikes / 1.0)
    assert got["spike_phases"][0] == pytest.approx(phases)
    # Duration: the stretch of the clean template above 2 noise sigmas (default level).
    above = np.flatnonzero(np.abs(template) > 2 * sigma)
    want_ms = (above[-1] - above[0] + 1) / FS * 1e3
    assert got["spike_duration_ms"][0] == pytest.approx(want_ms, abs=0.5)
    assert got["spike_p2p_uv"][0] == pytest.approx(np.ptp(template), rel=0.05)
    empty = feats(np.random.default_rng(1).standard_normal(6000).astype(np.float32))
    assert empty["spike_count"][0] == 0 and empty["spike_duration_ms"][0] == 0


def test_turns_of_a_sine() -> None:
    amp, f = 100.0, 40.0
    x = sine(f, amp)
    t_ext = (np.arange(200) + 0.5) / (2 * f) - 0.3 / (2 * np.pi * f)  # extrema of the sine
    n_ext = np.count_nonzero((t_ext > 0) & (t_ext < 1.0))
    got = feats(x, turns_uv=1.5 * amp)["turns_per_s"][0]
    assert n_ext - 2 <= got <= n_ext  # the first and last extremum lack a neighbour
    assert feats(x, turns_uv=2.1 * amp)["turns_per_s"][0] == 0


def test_features_flat_window_and_vectorisation() -> None:
    data = np.vstack([noise_windows(n=3, t=6000), np.zeros((1, 6000), dtype=np.float32)])
    rep = FeatureRepr()
    x = rep.transform(data, FS)["x"]
    assert x.shape == (4, len(rep.feature_names)) and np.isfinite(x).all()
    assert len(set(rep.feature_names)) == len(rep.feature_names)
    for i in range(len(data)):
        np.testing.assert_allclose(rep.transform(data[i : i + 1], FS)["x"][0], x[i], rtol=1e-5)
    only = FeatureRepr(groups=("spectral",))
    assert only.feature_names[0] == "mean_freq_hz"
    assert only.transform(data, FS)["x"].shape == (4, len(only.feature_names))


def test_features_follow_simulated_pathology() -> None:
    # The simulator's units: reinnervated (neurogenic) MUAPs are large, long and slow; myopathic
    # ones small, short and high-frequency. The MUAP and spectral features must say the same.
    import pandas as pd

    from emgdx.frontend import FrontEnd, PreprocessConfig
    from emgdx.simulate import simulate_cohort

    sim = simulate_cohort(2, 2, fs_hz=FS, duration_s=4.0, seed=0)
    windows = FrontEnd(PreprocessConfig(target_fs_hz=FS), qc=False).prepare(sim.cohort).windows
    rep = FeatureRepr(groups=("spectral", "muap"))
    table = pd.DataFrame(rep.transform(windows.data, windows.fs_hz)["x"], columns=rep.feature_names)
    table["label"] = windows.index["label"].to_numpy()
    med = table.groupby("label").median()
    assert med.loc["myopathy", "spike_duration_ms"] < med.loc["healthy", "spike_duration_ms"]
    assert med.loc["myopathy", "spike_duration_ms"] < med.loc["neurogenic", "spike_duration_ms"]
    assert med.loc["neurogenic", "spike_p2p_uv"] > med.loc["myopathy", "spike_p2p_uv"]
    freq = med["mean_freq_hz"]
    assert freq["neurogenic"] < freq["healthy"] < freq["myopathy"]


# ---- real data ---------------------------------------------------------------------------


@pytest.mark.realdata
def test_representations_on_real_records(n2001: Path) -> None:
    from emgdx.io import read_recording
    from emgdx.preprocess import PreprocessConfig, make_windows, preprocess_recording

    config = PreprocessConfig(target_fs_hz=6000.0)
    records, masks = [], []
    for prefix in ("N2001A01", "N2001C01", "N2001M02"):  # one subject of each class
        header = sorted(n2001.glob(f"{prefix}*.hea"))[0]
        rec, usable = preprocess_recording(read_recording(header), config)
        records.append(rec)
        masks.append(usable)
    windows = make_windows(records, masks, window_s=1.0, hop_s=1.0)
    data = windows.data[:30]
    assert len(data) >= 10
    for name in REPRESENTATIONS:
        rep = make_representation(name)
        out = rep.transform(data, windows.fs_hz)
        shapes = rep.output_shape(data.shape[1], windows.fs_hz)
        for key, arr in out.items():
            assert arr.shape == (len(data), *shapes[key]) and np.isfinite(arr).all(), name
    # Needle EMG at rest/low effort is spiky: MUAP spikes are found in most windows.
    got = FeatureRepr(groups=("muap",)).transform(data, windows.fs_hz)["x"]
    assert np.mean(got[:, 0] > 0) > 0.5
