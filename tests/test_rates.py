"""Any sampling rate works: records from 2 kHz to 100 kHz are read, preprocessed at exactly the
model's rate and predicted, or refused as documented when they lack too much of its band."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import signal as sps

from emgdx.io import read
from emgdx.pipeline import Pipeline, ReducedBandWarning
from emgdx.simulate import simulate_cohort

wfdb = pytest.importorskip("wfdb")

#: Usual ADC rates, and rates whose ratio to 6 kHz has huge terms (a prime; a measured rate).
RATES = (
    2000.0,
    3000.0,
    4000.0,
    4096.0,
    8000.0,
    8192.0,
    10_000.0,
    16_000.0,
    22_050.0,
    23_437.5,
    24_000.0,
    32_000.0,
    32_768.0,
    44_100.0,
    48_000.0,
    50_000.0,
    64_000.0,
    96_000.0,
    100_000.0,
    99_991.0,
    5999.77,
)


@pytest.fixture(scope="module")
def forest() -> Pipeline:
    sim = simulate_cohort(2, 2, fs_hz=24_000.0, duration_s=4.0, seed=21)
    pipe = Pipeline(model="random_forest", model_params={"n_estimators": 30})
    return pipe.fit(sim.cohort)


@pytest.fixture(scope="module")
def source() -> tuple[np.ndarray, float]:
    rec = simulate_cohort(1, 1, labels=("neurogenic",), fs_hz=96_000.0, duration_s=3.0, seed=5)
    return rec.cohort.recordings[0].signal.astype(np.float64), 96_000.0


def _write(folder: Path, x: np.ndarray, fs_hz: float) -> Path:
    name = f"rate_{str(fs_hz).replace('.', '_')}"
    wfdb.wrsamp(
        name,
        fs=fs_hz,
        units=["uV"],
        sig_name=["emg"],
        p_signal=x[:, None],
        fmt=["16"],
        adc_gain=[10.0],
        baseline=[0],
        write_dir=str(folder),
    )
    return folder / f"{name}.hea"


def test_every_rate_is_read_preprocessed_and_predicted(
    forest: Pipeline, source: tuple[np.ndarray, float], tmp_path: Path
) -> None:
    x96, fs96 = source
    needed = forest.min_fs_hz()
    assert needed is not None
    rows = []
    for fs in RATES:
        # the same 3 s of EMG at another rate (scipy's FFT resampler, not emgdx's)
        x = sps.resample(x96, round(x96.size * fs / fs96))
        (rec,) = read(_write(tmp_path, x, fs))
        assert rec.fs_hz == pytest.approx(fs, rel=1e-9)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dx = forest.predict(rec, keep_windows=True)
        row = dx.records.iloc[0]
        reduced = any(issubclass(w.category, ReducedBandWarning) for w in caught)
        rows.append((fs, int(row["n_windows"]), reduced, row["note"]))
        band_top = forest.preprocess.band_hz[1]
        if 0.95 * fs / 2 < band_top / 2:  # lacks more than half the band: refused, as documented
            assert row["n_windows"] == 0 and "too slowly" in row["note"], row
            continue
        assert row["note"] == "" and row["n_windows"] >= 3, (fs, row["note"])
        assert dx.windows is not None and dx.windows.fs_hz == 6000.0  # exactly the model's rate
        assert dx.windows.n_samples == forest.n_times_
        probs = [row[f"p_{c}"] for c in forest.class_names]
        assert all(math.isfinite(p) for p in probs) and sum(probs) == pytest.approx(1.0)
        assert reduced == (fs < needed), fs  # warned exactly when the band's top is missing
    refused = [fs for fs, n, _, _ in rows if n == 0]
    assert refused == [2000.0], rows
