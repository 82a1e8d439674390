"""Tests of emgdx.io: every format round-trips a known signal; every bad input gets its error.

Synthetic files are written into ``tmp_path`` by the tests themselves; the real N2001 records
are only read (``@pytest.mark.realdata``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import edfio
import numpy as np
import pandas as pd
import pytest
import wfdb
from scipy.io import wavfile

from emgdx.errors import (
    ChannelMismatchError,
    ConfigError,
    EmptySignalError,
    HeaderMismatchError,
    MissingFileError,
    NonFiniteDataError,
    NonNumericDataError,
    NoRecordsError,
    ReadError,
    SamplingRateError,
    TruncatedDataError,
    UnknownFormatError,
)
from emgdx.io import (
    SUPPORTED_EXTENSIONS,
    UnreadableFileWarning,
    read,
    read_cohort,
    read_manifest,
    read_recording,
)
from emgdx.io.labels import parse_emglab_name
from emgdx.io.metadata import normalise_comments, parse_frequency_hz

RNG = np.random.default_rng(7)

EMGLAB_COMMENTS = (
    "#gender: F\n#age: 44\n#diagnosis: Polymyositis\n#duration: 2 years\n"
    "#muscle: Biceps brachii (short head)\n#side: Right\n#protocol: steady isometric contraction\n"
    "#level: Moderate\n#electrode: concentric needle\n#high-pass filter: 2 Hz\n"
    "#low-pass filter: 10 kHz\n#gain: 500\n#date: 08/2001\n"
)


def write_emglab(
    folder: Path,
    name: str,
    counts: np.ndarray,
    *,
    fs_hz: float = 10000.0,
    gain: str = "13.1070/uV",
    offset: int = 20,
    extra: int = 10,
    comments: str = EMGLAB_COMMENTS,
    n_declared: int | None = None,
) -> Path:
    """An EMGLAB-style record: header + int16 .bin with a byte offset and surplus samples."""
    n = len(counts) if n_declared is None else n_declared
    header = folder / f"{name}.hea"
    header.write_text(f"{name} 1 {fs_hz} {n}\n{name}.bin 16+{offset} {gain}\n{comments}")
    payload = np.concatenate([counts, np.zeros(extra, dtype=np.int16)]).astype("<i2")
    (folder / f"{name}.bin").write_bytes(b"\x00" * offset + payload.tobytes())
    return header


def counts_signal(n: int = 3000) -> np.ndarray:
    return RNG.integers(-30000, 30000, size=n).astype(np.int16)


# --------------------------------------------------------------------------- real N2001 data


@pytest.mark.realdata
def test_n2001_record_scaling_and_metadata(n2001: Path) -> None:
    header = n2001 / "N2001A01BB01.hea"
    first = header.read_text().splitlines()[0].split()
    n_declared = int(first[3])
    (rec,) = read(header)
    assert rec.fs_hz == float(first[2]) == 23437.5
    assert rec.n_samples == n_declared == 262124
    expected = np.fromfile(n2001 / "N2001A01BB01.bin", dtype="<i2", offset=20)[:n_declared]
    np.testing.assert_allclose(rec.signal, expected / 13.107, rtol=1e-6, atol=1e-4)
    assert rec.signal.dtype == np.float32
    assert rec.record_id == "N2001A01BB01"
    assert rec.subject_id == "N2001A01"
    assert rec.label == "neurogenic"
    assert rec.muscle is not None and rec.muscle.startswith("Biceps brachii")
    assert rec.meta["age"] == 56
    assert rec.meta["sex"] == "M"
    assert rec.level == "low"
    assert rec.meta["label_source"] == "header"
    assert rec.meta["highpass_hz"] == 2.0 and rec.meta["lowpass_hz"] == 10000.0
    assert rec.meta["units_source"] == "uV"
    lo, hi = rec.meta["digital_range_uv"]
    assert lo == pytest.approx(-2500.0, abs=0.1) and hi == pytest.approx(2500.0, abs=0.1)
    size = (n2001 / "N2001A01BB01.bin").stat().st_size
    assert rec.meta["extra_samples"] == (size - 20) // 2 - n_declared
    # The signal file and the bare record name lead to the same record.
    for alias in (n2001 / "N2001A01BB01.bin", n2001 / "N2001A01BB01"):
        np.testing.assert_array_equal(read_recording(alias).signal, rec.signal)


@pytest.mark.realdata
def test_n2001_nearly_empty_record_is_read_faithfully(n2001: Path) -> None:
    rec = read_recording(n2001 / "N2001A06BB08.hea")
    raw = np.fromfile(n2001 / "N2001A06BB08.bin", dtype="<i2", offset=20)[: rec.n_samples]
    assert np.mean(rec.signal == 0) == pytest.approx(np.mean(raw == 0))
    assert np.mean(rec.signal == 0) > 0.99  # data README: 99.6 % zeros


@pytest.mark.realdata
def test_n2001_cohort(n2001: Path) -> None:
    calls: list[tuple[int, int]] = []
    cohort = read_cohort(n2001, on_progress=lambda d, t: calls.append((d, t)))
    assert len(cohort) == 355
    assert cohort.errors == []
    assert len(cohort.subjects) == 18
    counts = cohort.manifest["label"].value_counts().to_dict()
    assert counts == {"healthy": 150, "myopathy": 107, "neurogenic": 98}
    assert cohort.manifest.groupby("subject_id")["label"].nunique().max() == 1
    # Data README: only controls were recorded at moderate contraction.
    moderate = cohort.manifest[cohort.manifest["level"] == "moderate"]
    assert len(moderate) > 0 and set(moderate["label"]) == {"healthy"}
    assert calls[0] == (0, 355) and calls[-1] == (355, 355)


# --------------------------------------------------------------------------- EMGLAB-style


def test_emglab_record_scaling_metadata_and_extra_samples(tmp_path: Path) -> None:
    counts = counts_signal()
    header = write_emglab(tmp_path, "N2001M02BB03", counts, extra=10)
    (rec,) = read(header)
    np.testing.assert_allclose(rec.signal, counts / 13.107, rtol=1e-6)
    assert rec.fs_hz == 10000.0
    assert rec.label == "myopathy" and rec.meta["label_source"] == "header"
    assert rec.subject_id == "N2001M02" and rec.meta["subject_source"] == "file name"
    assert rec.meta["sex"] == "F" and rec.meta["age"] == 44
    assert rec.level == "moderate"
    assert rec.meta["disease_duration"] == "2 years"
    assert rec.meta["amplifier_gain"] == 500.0
    assert rec.meta["extra_samples"] == 10
    assert rec.meta["format"] == "wfdb-16"
    assert rec.meta["header_comments"]["high-pass filter"] == "2 Hz"


def test_emglab_label_from_name_when_header_has_no_diagnosis(tmp_path: Path) -> None:
    header = write_emglab(tmp_path, "N2001C04BB11", counts_signal(500), comments="#age: 30\n")
    rec = read_recording(header)
    assert rec.label == "healthy" and rec.meta["label_source"] == "file name"
    assert rec.subject_id == "N2001C04"


def test_plain_name_gives_one_subject_per_record_and_no_label(tmp_path: Path) -> None:
    header = write_emglab(tmp_path, "patient_x", counts_signal(500), comments="")
    rec = read_recording(header)
    assert rec.subject_id == "patient_x" and rec.meta["subject_source"] == "record"
    assert rec.label is None and rec.meta["label_source"] is None


@pytest.mark.parametrize(
    ("unit_gain", "uv_per_count"),
    [("100/uV", 1 / 100), ("100/mV", 1e3 / 100), ("2/V", 1e6 / 2), ("4/nV", 1e-3 / 4)],
)
def test_wfdb_units_converted_to_microvolts(
    tmp_path: Path, unit_gain: str, uv_per_count: float
) -> None:
    counts = counts_signal(400)
    rec = read_recording(write_emglab(tmp_path, "u", counts, gain=unit_gain, comments=""))
    np.testing.assert_allclose(rec.signal, counts * uv_per_count, rtol=1e-6)


def test_wfdb_baseline_is_subtracted_and_shifts_the_digital_range(tmp_path: Path) -> None:
    counts = counts_signal(400)
    rec = read_recording(write_emglab(tmp_path, "b", counts, gain="200(50)/mV", comments=""))
    np.testing.assert_allclose(rec.signal, (counts.astype(float) - 50) / 200 * 1e3, rtol=1e-6)
    lo, hi = rec.meta["digital_range_uv"]
    assert lo == pytest.approx((-32768 - 50) / 200 * 1e3)
    assert hi == pytest.approx((32767 - 50) / 200 * 1e3)


def test_wfdb_unknown_unit_needs_uv_per_unit(tmp_path: Path) -> None:
    counts = counts_signal(100)
    header = write_emglab(tmp_path, "f", counts, gain="10/furlong", comments="")
    with pytest.raises(HeaderMismatchError, match="furlong"):
        read(header)
    rec = read_recording(header, uv_per_unit=3.0)
    np.testing.assert_allclose(rec.signal, counts / 10 * 3.0, rtol=1e-6)
    assert rec.meta["units_assumed"] is True


# --------------------------------------------------------------------------- PhysioNet WFDB


def _wrsamp(folder: Path, name: str, signal: np.ndarray, units: list[str], fmt: str) -> Path:
    n_sig = signal.shape[1]
    wfdb.wrsamp(
        name,
        fs=2000,
        units=units,
        sig_name=[f"emg{i}" for i in range(n_sig)],
        p_signal=signal,
        fmt=[fmt] * n_sig,
        write_dir=str(folder),
    )
    return folder / f"{name}.hea"


@pytest.mark.parametrize("fmt", ["16", "212", "80"])
def test_physionet_wfdb_three_channels_match_wfdb_physical(tmp_path: Path, fmt: str) -> None:
    signal = np.cumsum(RNG.normal(size=(2000, 3)), axis=0) * 0.05  # mV, a random walk
    header = _wrsamp(tmp_path, "rec", signal, ["mV", "mV", "mV"], fmt)
    recs = read(header)
    reference = wfdb.rdrecord(str(tmp_path / "rec")).p_signal * 1e3  # µV
    assert [r.record_id for r in recs] == ["rec:emg0", "rec:emg1", "rec:emg2"]
    assert [r.channel for r in recs] == ["emg0", "emg1", "emg2"]
    for i, rec in enumerate(recs):
        assert rec.fs_hz == 2000.0
        assert rec.meta["format"] == f"wfdb-{fmt}"
        np.testing.assert_allclose(rec.signal, reference[:, i], rtol=1e-5, atol=1e-3)
        # and close to the written signal within one quantisation step
        step_uv = 1e3 / rec.meta["adc_gain"]
        assert np.max(np.abs(rec.signal - signal[:, i] * 1e3)) <= step_uv


def test_physionet_wfdb_multi_rate_channels(tmp_path: Path) -> None:
    fast, slow = np.sin(np.arange(2000) / 10.0), np.cos(np.arange(1000) / 10.0)  # mV
    record = wfdb.Record(
        record_name="mf", n_sig=2, fs=500, sig_len=1000, sig_name=["fast", "slow"],
        units=["mV", "mV"], fmt=["16", "16"], samps_per_frame=[2, 1], e_p_signal=[fast, slow],
        adc_gain=[1000.0, 1000.0], baseline=[0, 0], file_name=["mf.dat", "mf.dat"],
        adc_res=[16, 16], adc_zero=[0, 0], block_size=[0, 0],
    )  # fmt: skip
    record.e_d_signal = record.adc(expanded=True)
    record.init_value = [int(x[0]) for x in record.e_d_signal]
    record.checksum = [int(np.sum(x) % 65536) for x in record.e_d_signal]
    record.wrsamp(expanded=True, write_dir=str(tmp_path))
    hi, lo = read(tmp_path / "mf.hea")
    assert (hi.fs_hz, lo.fs_hz) == (1000.0, 500.0)
    assert np.max(np.abs(hi.signal - fast * 1e3)) <= 0.5 + 1e-3  # half a count of 1 µV
    assert np.max(np.abs(lo.signal - slow * 1e3)) <= 0.5 + 1e-3


def test_physionet_wfdb_single_channel_microvolts(tmp_path: Path) -> None:
    signal = RNG.normal(scale=200.0, size=(3000, 1))  # µV
    rec = read_recording(_wrsamp(tmp_path, "one", signal, ["uV"], "16"))
    assert rec.record_id == "one"
    step = 1.0 / rec.meta["adc_gain"]
    assert np.max(np.abs(rec.signal - signal[:, 0])) <= step


def test_channel_selection_and_read_recording(tmp_path: Path) -> None:
    signal = RNG.normal(size=(500, 3))
    header = _wrsamp(tmp_path, "sel", signal, ["mV"] * 3, "16")
    picked = read(header, channels=["emg2", "emg0"])
    assert [r.channel for r in picked] == ["emg2", "emg0"]
    assert picked[0].record_id == "sel:emg2"  # ids follow the file, not the selection
    assert read_recording(header, channel="emg1").channel == "emg1"
    with pytest.raises(ChannelMismatchError, match=r"emg0.*emg1.*emg2"):
        read_recording(header)
    with pytest.raises(ChannelMismatchError, match="biceps"):
        read(header, channels=["biceps"])


def test_fs_argument_overrides_header_with_warning(tmp_path: Path) -> None:
    header = write_emglab(tmp_path, "fs", counts_signal(100), fs_hz=10000.0, comments="")
    with pytest.warns(UserWarning, match="declares 10000 Hz"):
        rec = read_recording(header, fs_hz=5000.0)
    assert rec.fs_hz == 5000.0 and rec.meta["fs_declared_hz"] == 10000.0


# --------------------------------------------------------------------------- WFDB errors


def test_wfdb_truncated_data(tmp_path: Path) -> None:
    header = write_emglab(tmp_path, "t", counts_signal(1000), extra=0, n_declared=2000)
    with pytest.raises(TruncatedDataError, match=r"1000.*2000") as info:
        read(header)
    assert str(header) in str(info.value)


@pytest.mark.parametrize(
    ("text", "error", "pattern"),
    [
        ("x 2 1000 100\nx.bin 16 200/mV\n", HeaderMismatchError, "2 signal"),
        ("x 1 1000 100\nx.bin 99 200/mV\n", HeaderMismatchError, "'99'"),
        ("x 1 1000 100.5\nx.bin 16 200/mV\n", HeaderMismatchError, "100.5"),
        ("x 1 1000 abc\nx.bin 16 200/mV\n", HeaderMismatchError, "abc"),
        ("x 1 0 100\nx.bin 16 200/mV\n", SamplingRateError, "positive"),
        ("x 1 -5 100\nx.bin 16 200/mV\n", SamplingRateError, "positive"),
        ("x 1\nx.bin 16 200/mV\n", SamplingRateError, "fs_hz"),
        ("x 1 1000 0\nx.bin 16 200/mV\n", EmptySignalError, "0 samples"),
    ],
)
def test_wfdb_bad_headers(tmp_path: Path, text: str, error: type, pattern: str) -> None:
    (tmp_path / "x.hea").write_text(text)
    (tmp_path / "x.bin").write_bytes(counts_signal(100).tobytes())
    with pytest.raises(error, match=pattern) as info:
        read(tmp_path / "x.hea")
    assert str(tmp_path / "x.hea") in str(info.value)


def test_wfdb_missing_rate_can_be_given(tmp_path: Path) -> None:
    (tmp_path / "x.hea").write_text("x 1\nx.bin 16 200/mV\n")
    (tmp_path / "x.bin").write_bytes(counts_signal(100).tobytes())
    rec = read_recording(tmp_path / "x.hea", fs_hz=4000.0)
    assert rec.fs_hz == 4000.0 and rec.n_samples == 100  # count inferred from the file size


def test_wfdb_missing_signal_file(tmp_path: Path) -> None:
    (tmp_path / "x.hea").write_text("x 1 1000 100\nx.bin 16 200/mV\n")
    with pytest.raises(MissingFileError, match=r"x\.bin.*missing"):
        read(tmp_path / "x.hea")


# --------------------------------------------------------------------------- EDF / BDF


def test_edf_two_rates_units_and_annotations(tmp_path: Path) -> None:
    t = np.arange(4000) / 2000.0
    uv = 800.0 * np.sin(2 * np.pi * 37 * t)
    mv = 0.9 * np.sin(2 * np.pi * 3 * np.arange(1000) / 500.0)
    edf = edfio.Edf(
        [
            edfio.EdfSignal(
                uv,
                2000,
                label="EMG biceps",
                physical_dimension="uV",
                physical_range=(-1000, 1000),
                prefiltering="HP:2Hz LP:1kHz",
            ),
            edfio.EdfSignal(
                mv, 500, label="EMG triceps", physical_dimension="mV", physical_range=(-1, 1)
            ),
        ],
        patient=edfio.Patient(code="P01", sex="F"),
        annotations=[edfio.EdfAnnotation(0.5, None, "needle in")],
    )
    edf.write(tmp_path / "two.edf")
    recs = read(tmp_path / "two.edf")
    assert [r.record_id for r in recs] == ["two:EMG biceps", "two:EMG triceps"]
    assert [r.fs_hz for r in recs] == [2000.0, 500.0]
    step_uv = 2000.0 / 65535
    assert np.max(np.abs(recs[0].signal - uv)) <= step_uv
    assert np.max(np.abs(recs[1].signal - mv * 1e3)) <= 2e3 / 65535
    assert recs[1].meta["digital_range_uv"] == pytest.approx((-1000.0, 1000.0))
    assert recs[0].meta["highpass_hz"] == 2.0 and recs[0].meta["lowpass_hz"] == 1000.0
    assert recs[0].meta["format"] == "edf+" and recs[0].meta["sex"] == "F"


def test_bdf_volts(tmp_path: Path) -> None:
    v = 1e-3 * np.sin(np.arange(3000) / 7.0)
    bdf = edfio.Bdf(
        [
            edfio.BdfSignal(
                v, 1000, label="EMG", physical_dimension="V", physical_range=(-2e-3, 2e-3)
            )
        ]
    )
    bdf.write(tmp_path / "b.bdf")
    rec = read_recording(tmp_path / "b.bdf")
    assert rec.meta["format"].startswith("bdf")
    assert np.max(np.abs(rec.signal - v * 1e6)) <= 4e3 / 2**24 + 1e-3


def _small_edf(path: Path, unit: str = "uV") -> None:
    sig = edfio.EdfSignal(
        np.sin(np.arange(2000) / 5.0),
        1000,
        label="EMG",
        physical_dimension=unit,
        physical_range=(-2, 2),
    )
    edfio.Edf([sig], data_record_duration=1).write(path)


def test_edf_truncated(tmp_path: Path) -> None:
    _small_edf(tmp_path / "a.edf")
    raw = (tmp_path / "a.edf").read_bytes()
    (tmp_path / "cut.edf").write_bytes(raw[:-500])
    with pytest.raises(TruncatedDataError, match=r"2 data records.*only 1"):
        read(tmp_path / "cut.edf")


def test_edf_unknown_dimension(tmp_path: Path) -> None:
    _small_edf(tmp_path / "t.edf", unit="degC")
    with pytest.raises(HeaderMismatchError, match="degC"):
        read(tmp_path / "t.edf")


# --------------------------------------------------------------------------- CSV / TSV


def test_csv_time_column_units_and_names(tmp_path: Path) -> None:
    n, fs = 1000, 2000.0
    t = np.arange(n) / fs
    a_mv, b_uv = RNG.normal(size=n), RNG.normal(scale=100, size=n)
    lines = ["time,biceps_mv,triceps (uV)"]
    lines += [f"{ti:.6f},{x:.9g},{y:.9g}" for ti, x, y in zip(t, a_mv, b_uv, strict=True)]
    (tmp_path / "tab.csv").write_text("\n".join(lines))
    recs = read(tmp_path / "tab.csv")
    assert [r.channel for r in recs] == ["biceps_mv", "triceps (uV)"]
    assert recs[0].fs_hz == pytest.approx(fs, rel=1e-9)
    np.testing.assert_allclose(recs[0].signal, a_mv * 1e3, rtol=1e-6)
    np.testing.assert_allclose(recs[1].signal, b_uv, rtol=1e-6)
    assert recs[0].meta["fs_source"] == "time column"
    assert "units_assumed" not in recs[0].meta


def test_tsv_time_in_ms_with_rounded_times(tmp_path: Path) -> None:
    fs = 23437.5
    t_ms = np.arange(2000) / fs * 1e3
    x = RNG.normal(size=2000)
    text = "time_ms\temg\n" + "\n".join(
        f"{ti:.3f}\t{xi:.6f}" for ti, xi in zip(t_ms, x, strict=True)
    )
    (tmp_path / "rounded.tsv").write_text(text)
    rec = read_recording(tmp_path / "rounded.tsv")
    assert rec.fs_hz == pytest.approx(fs, rel=1e-4)
    assert rec.meta["units_assumed"] is True and rec.meta["format"] == "tsv"


def test_csv_without_header_needs_fs(tmp_path: Path) -> None:
    x = RNG.normal(size=300)
    (tmp_path / "plain.csv").write_text("\n".join(f"{v:.8f}" for v in x))
    with pytest.raises(SamplingRateError, match="fs_hz"):
        read(tmp_path / "plain.csv")
    rec = read_recording(tmp_path / "plain.csv", fs_hz=1000.0, uv_per_unit=2.0)
    np.testing.assert_allclose(rec.signal, x * 2.0, rtol=1e-6, atol=1e-7)
    assert rec.channel is None and rec.record_id == "plain"


def test_csv_pandas_index_column_is_not_a_channel(tmp_path: Path) -> None:
    x = RNG.normal(size=(50, 2))
    pd.DataFrame(x, columns=["emg_a", "emg_b"]).to_csv(tmp_path / "df.csv")
    recs = read(tmp_path / "df.csv", fs_hz=1000.0)
    assert [r.channel for r in recs] == ["emg_a", "emg_b"]
    np.testing.assert_allclose(recs[1].signal, x[:, 1], rtol=1e-6)


def test_semicolon_with_decimal_comma(tmp_path: Path) -> None:
    (tmp_path / "eu.csv").write_text("1,5;2,25\n-0,5;3,0\n4,0;-1,5\n")
    recs = read(tmp_path / "eu.csv", fs_hz=100.0)
    np.testing.assert_allclose(recs[0].signal, [1.5, -0.5, 4.0])
    np.testing.assert_allclose(recs[1].signal, [2.25, 3.0, -1.5])


def test_csv_irregular_time(tmp_path: Path) -> None:
    t = np.cumsum(RNG.uniform(0.0009, 0.0011, size=200))
    text = "t,emg\n" + "\n".join(f"{ti:.7f},1" for ti in t)
    (tmp_path / "irr.csv").write_text(text)
    with pytest.raises(SamplingRateError, match=r"irr\.csv.*irregular"):
        read(tmp_path / "irr.csv")


def test_csv_time_not_increasing(tmp_path: Path) -> None:
    (tmp_path / "back.csv").write_text("time,emg\n0.0,1\n0.001,2\n0.0005,3\n")
    with pytest.raises(SamplingRateError, match="does not increase"):
        read(tmp_path / "back.csv")


def test_csv_non_numeric_cell_named(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("time,emg\n0.000,1\n0.001,2\n0.002,oops\n0.003,4\n")
    with pytest.raises(NonNumericDataError, match=r"line 4, column 'emg': 'oops'"):
        read(tmp_path / "bad.csv")


def test_csv_ragged_rows(tmp_path: Path) -> None:
    (tmp_path / "rag.csv").write_text("a,b\n1,2\n3,4\n5\n")
    with pytest.raises(ChannelMismatchError, match="line 4 has 1 values, expected 2"):
        read(tmp_path / "rag.csv", fs_hz=100.0)


def test_csv_nan_reported_with_count_and_position(tmp_path: Path) -> None:
    (tmp_path / "nan.csv").write_text("emg\n1\n2\nnan\n4\ninf\n")
    with pytest.raises(NonFiniteDataError, match=r"2 non-finite.*first at sample 2"):
        read(tmp_path / "nan.csv", fs_hz=100.0)


def test_csv_header_only_is_empty(tmp_path: Path) -> None:
    (tmp_path / "head.csv").write_text("time,emg\n")
    with pytest.raises(EmptySignalError):
        read(tmp_path / "head.csv")


# --------------------------------------------------------------------------- NPY / NPZ


def test_npy_orientation_and_fs(tmp_path: Path) -> None:
    data = RNG.normal(size=(3, 800)).astype(np.float32)
    np.save(tmp_path / "cs.npy", data)
    np.save(tmp_path / "sc.npy", data.T)
    with pytest.raises(SamplingRateError, match="fs_hz"):
        read(tmp_path / "cs.npy")
    a, b = read(tmp_path / "cs.npy", fs_hz=1000.0), read(tmp_path / "sc.npy", fs_hz=1000.0)
    assert [r.record_id for r in a] == ["cs:ch0", "cs:ch1", "cs:ch2"]
    for ra, rb, row in zip(a, b, data, strict=True):
        np.testing.assert_array_equal(ra.signal, row)
        np.testing.assert_array_equal(rb.signal, row)


def test_npy_integer_counts_scaled(tmp_path: Path) -> None:
    counts = counts_signal(500)
    np.save(tmp_path / "c.npy", counts)
    rec = read_recording(tmp_path / "c.npy", fs_hz=5000.0, uv_per_unit=0.25)
    np.testing.assert_allclose(rec.signal, counts * 0.25)
    assert rec.meta["digital_range_uv"] == pytest.approx((-32768 * 0.25, 32767 * 0.25))


def test_npz_with_rate_names_and_units(tmp_path: Path) -> None:
    data = RNG.normal(size=(600, 2))  # samples x channels, in mV
    np.savez(
        tmp_path / "z.npz", signal=data, fs_hz=4000.0, channels=np.array(["bic", "tri"]), units="mV"
    )
    recs = read(tmp_path / "z.npz")
    assert [r.channel for r in recs] == ["bic", "tri"] and recs[0].fs_hz == 4000.0
    np.testing.assert_allclose(recs[1].signal, data[:, 1] * 1e3, rtol=1e-6)
    assert recs[0].meta["units_source"] == "mV"


def test_npz_channels_as_keys_must_match_in_length(tmp_path: Path) -> None:
    np.savez(tmp_path / "ok.npz", left=np.ones(10), right=np.zeros(10), fs=100)
    assert [r.channel for r in read(tmp_path / "ok.npz")] == ["left", "right"]
    np.savez(tmp_path / "bad.npz", left=np.ones(10), right=np.zeros(12), fs=100)
    with pytest.raises(ChannelMismatchError, match="different lengths"):
        read(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    ("array", "error", "pattern"),
    [
        (np.ones((4, 4)), ChannelMismatchError, "square"),
        (np.ones((2, 3, 4)), ChannelMismatchError, "1-D or 2-D"),
        (
            np.array([1.0, np.nan, 2.0, np.inf, np.nan]),
            NonFiniteDataError,
            "3 non-finite.*sample 1",
        ),
        (np.zeros(0), EmptySignalError, "no samples"),
        (np.array(["a", "b"]), NonNumericDataError, "dtype"),
    ],
)
def test_npy_bad_arrays(tmp_path: Path, array: np.ndarray, error: type, pattern: str) -> None:
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(error, match=pattern):
        read(tmp_path / "x.npy", fs_hz=100.0)


def test_npy_ragged_object_array(tmp_path: Path) -> None:
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.ones(3), np.ones(5)
    np.save(tmp_path / "r.npy", ragged, allow_pickle=True)
    with pytest.raises(ChannelMismatchError, match="object array"):
        read(tmp_path / "r.npy", fs_hz=100.0)


def test_npy_truncated(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(1000.0))
    raw = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[:-80])
    with pytest.raises(TruncatedDataError, match=r"1000 values.*990"):
        read(tmp_path / "cut.npy", fs_hz=100.0)


@pytest.mark.parametrize("fs", [0.0, -10.0, float("nan")])
def test_bad_rate_argument(tmp_path: Path, fs: float) -> None:
    np.save(tmp_path / "a.npy", np.ones(10))
    with pytest.raises(SamplingRateError, match="positive"):
        read(tmp_path / "a.npy", fs_hz=fs)


# --------------------------------------------------------------------------- WAV


def test_wav_int16_stereo(tmp_path: Path) -> None:
    counts = RNG.integers(-20000, 20000, size=(1200, 2)).astype(np.int16)
    wavfile.write(tmp_path / "s.wav", 8000, counts)
    recs = read(tmp_path / "s.wav", uv_per_unit=0.5)
    assert [r.record_id for r in recs] == ["s:ch0", "s:ch1"]
    assert recs[0].fs_hz == 8000.0
    np.testing.assert_allclose(recs[1].signal, counts[:, 1] * 0.5)
    assert recs[0].meta["digital_range_uv"] == pytest.approx((-16384.0, 16383.5))
    assert recs[0].meta["units_assumed"] is False


def test_wav_float_mono_taken_as_microvolts(tmp_path: Path) -> None:
    x = RNG.normal(scale=50, size=900).astype(np.float32)
    wavfile.write(tmp_path / "f.wav", 12000, x)
    rec = read_recording(tmp_path / "f.wav")
    np.testing.assert_array_equal(rec.signal, x)
    assert rec.meta["units_assumed"] is True and "digital_range_uv" not in rec.meta


def test_wav_truncated(tmp_path: Path) -> None:
    wavfile.write(tmp_path / "a.wav", 8000, np.ones(1000, dtype=np.int16))
    (tmp_path / "cut.wav").write_bytes((tmp_path / "a.wav").read_bytes()[:-400])
    with pytest.raises(TruncatedDataError, match="cut short"):
        read(tmp_path / "cut.wav")


# --------------------------------------------------------------------------- sniffing


def test_content_wins_over_misleading_or_missing_extension(tmp_path: Path) -> None:
    _small_edf(tmp_path / "a.edf")
    (tmp_path / "edf_as.dat").write_bytes((tmp_path / "a.edf").read_bytes())
    assert read_recording(tmp_path / "edf_as.dat").meta["format"] == "edf"
    wavfile.write(tmp_path / "a.wav", 8000, np.arange(100, dtype=np.int16))
    (tmp_path / "noext").write_bytes((tmp_path / "a.wav").read_bytes())
    assert read_recording(tmp_path / "noext").fs_hz == 8000.0
    (tmp_path / "table.npy").write_text("emg\n1\n2\n3\n")
    assert read_recording(tmp_path / "table.npy", fs_hz=10.0).n_samples == 3
    with (tmp_path / "arr.csv").open("wb") as fh:  # np.save would append ".npy" to a name
        np.save(fh, np.ones(5))
    assert read_recording(tmp_path / "arr.csv", fs_hz=10.0).meta["format"] == "npy"
    header = write_emglab(tmp_path, "hdr", counts_signal(50), comments="")
    (tmp_path / "hdr_copy.txt").write_text(header.read_text())  # a header under another name
    assert read_recording(tmp_path / "hdr_copy.txt").n_samples == 50


def test_unknown_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "junk.xyz").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UnknownFormatError, match=r"junk\.xyz"):
        read(tmp_path / "junk.xyz")
    (tmp_path / "lonely.bin").write_bytes(b"\x01\x02" * 50)
    with pytest.raises(UnknownFormatError, match=r"lonely\.hea not found"):
        read(tmp_path / "lonely.bin")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(EmptySignalError, match="0 bytes"):
        read(tmp_path / "empty.csv")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read(tmp_path / "nope.edf")
    with pytest.raises(ReadError, match="read_cohort"):
        read(tmp_path)


def test_label_and_subject_arguments(tmp_path: Path) -> None:
    header = write_emglab(tmp_path, "N2001A05BB02", counts_signal(100))
    rec = read_recording(header, label="Mainly bulbar ALS", subject_id="S9")
    assert rec.label == "neurogenic" and rec.meta["label_source"] == "argument"
    assert rec.subject_id == "S9"
    with pytest.raises(ConfigError, match="not one of"):
        read(header, label="flu")


# --------------------------------------------------------------------------- metadata helpers


def test_metadata_helpers() -> None:
    assert parse_frequency_hz("10 kHz") == 10000.0
    assert parse_frequency_hz("0.5Hz") == 0.5
    assert parse_frequency_hz("off") is None
    meta = normalise_comments(["gender: male", "age: 61 years", "level: LOW", "a note"])
    assert meta["sex"] == "M" and meta["age"] == 61 and meta["level"] == "low"
    assert meta["header_notes"] == ["a note"]
    name = parse_emglab_name("N2001M07BB22")
    assert name is not None and name.subject_id == "N2001M07" and name.label == "myopathy"
    assert parse_emglab_name("N2001X07BB22") is None
    assert ".hea" in SUPPORTED_EXTENSIONS and ".edf" in SUPPORTED_EXTENSIONS


# --------------------------------------------------------------------------- manifest


def test_read_manifest_normalises(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(
        "File,Subject,Diagnosis,fs\nsub/r1.csv,P1,ALS,1000\nr2.hea,P1,healthy control,\n"
    )
    m = read_manifest(tmp_path / "m.csv")
    assert list(m.index) == ["r1", "r2"]
    assert list(m["label"]) == ["neurogenic", "healthy"]
    assert m.loc["r1", "fs_hz"] == 1000.0 and m.loc["r2", "subject_id"] == "P1"


@pytest.mark.parametrize(
    ("text", "error", "pattern"),
    [
        ("name,label\na,healthy\n", ReadError, "record_id"),
        ("record_id,label\na,flu\n", ReadError, "line 2: label 'flu'"),
        ("record_id,fs_hz\na,fast\n", SamplingRateError, "fast"),
        ("record_id,label\na,healthy\na.csv,myopathy\n", ReadError, "more than once"),
    ],
)
def test_read_manifest_errors(tmp_path: Path, text: str, error: type, pattern: str) -> None:
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(error, match=pattern):
        read_manifest(tmp_path / "m.csv")


# --------------------------------------------------------------------------- cohorts


def _mixed_folder(root: Path) -> dict[str, Path]:
    """Good records of several formats, bad files of several kinds, and sidecar files."""
    write_emglab(root, "N2001A01BB01", counts_signal(2000))  # header says Polymyositis
    write_emglab(root, "N2001C02BB01", counts_signal(2000), comments="#level: low\n")
    sub = root / "sub"
    sub.mkdir()
    np.save(sub / "pat7.npy", RNG.normal(size=1500))  # rate from the manifest
    (root / "trace.csv").write_text("time,emg\n" + "\n".join(f"{i / 1000},{i}" for i in range(50)))
    bad = {
        "trunc": write_emglab(root, "N2001M03BB01", counts_signal(100), extra=0, n_declared=500),
        "text": root / "broken.csv",
        "junk": root / "junk.npy",
        "lonely": root / "lonely.dat",
    }
    bad["text"].write_text("a,b\n1,2\nx,3\n")
    bad["junk"].write_bytes(b"\x93NUMPY garbage")
    bad["lonely"].write_bytes(b"\x00\x01" * 20)
    (root / "manifest.csv").write_text(
        "record_id,subject_id,label,muscle\n"
        "N2001A01BB01,,neurogenic,\n"
        "pat7,P7,myopathy,deltoid\n"
        "pat7_missing,P8,healthy,\n"
        "N2001C02BB01,,,\n"
    )
    (root / "notes.txt").write_text("not a recording")
    (root / "README.md").write_text("# readme")
    (root / "N2001A01BB01.truth.json").write_text("{}")
    (root / "manifest_fs.csv").write_text("record_id,fs_hz\npat7,2500\n")
    return bad


def test_cohort_reads_good_files_and_reports_each_bad_one(tmp_path: Path) -> None:
    bad = _mixed_folder(tmp_path)
    (tmp_path / "manifest_fs.csv").unlink()
    (tmp_path / "manifest.csv").write_text(
        "record_id,subject_id,label,muscle,fs_hz\n"
        "N2001A01BB01,,neurogenic,,\n"
        "pat7,P7,myopathy,deltoid,2500\n"
    )
    progress: list[tuple[int, int]] = []
    with pytest.warns(UnreadableFileWarning) as caught:
        cohort = read_cohort(tmp_path, on_progress=lambda d, t: progress.append((d, t)))
    assert sorted(cohort.manifest.index) == ["N2001A01BB01", "N2001C02BB01", "pat7", "trace"]
    ann = cohort["N2001A01BB01"]
    # the manifest's label wins over the header's diagnosis (Polymyositis)
    assert ann.label == "neurogenic" and ann.meta["label_source"] == "manifest"
    assert ann.meta["diagnosis"] == "Polymyositis"
    pat = cohort["pat7"]
    assert pat.subject_id == "P7" and pat.label == "myopathy" and pat.muscle == "deltoid"
    assert pat.fs_hz == 2500.0 and pat.meta["fs_source"] == "manifest"
    assert cohort["N2001C02BB01"].label == "healthy"  # from the name
    assert cohort["trace"].fs_hz == pytest.approx(1000.0)

    by_path = {Path(e.path).name: e for e in cohort.errors}
    assert set(by_path) == {"N2001M03BB01.hea", "broken.csv", "junk.npy", "lonely.dat"}
    assert isinstance(by_path["N2001M03BB01.hea"], TruncatedDataError)
    assert isinstance(by_path["broken.csv"], NonNumericDataError)
    assert isinstance(by_path["lonely.dat"], UnknownFormatError)
    warned = [str(w.message) for w in caught if issubclass(w.category, UnreadableFileWarning)]
    assert len(warned) == len(bad)
    assert all(any(str(p) in msg for msg in warned) for p in bad.values())
    assert progress[0] == (0, 8) and progress[-1] == (8, 8)
    assert [d for d, _ in progress] == list(range(9))


def test_cohort_threads_non_recursive_and_explicit_manifest(tmp_path: Path) -> None:
    _mixed_folder(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableFileWarning)
        serial = read_cohort(tmp_path, manifest=tmp_path / "manifest_fs.csv")
        threaded = read_cohort(tmp_path, manifest=tmp_path / "manifest_fs.csv", n_jobs=2)
        flat = read_cohort(tmp_path, recursive=False, manifest=None)
    assert list(serial.manifest.index) == list(threaded.manifest.index)
    for a, b in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(a.signal, b.signal)
    assert serial["pat7"].fs_hz == 2500.0
    assert serial["N2001A01BB01"].label == "myopathy"  # no label column: header diagnosis
    assert "pat7" not in flat.manifest.index


def test_cohort_duplicate_record_ids_are_reported(tmp_path: Path) -> None:
    for folder in (tmp_path / "a", tmp_path / "b"):
        folder.mkdir()
        np.save(folder / "same.npy", np.ones(20))
    with pytest.warns(UnreadableFileWarning, match="already read"):
        cohort = read_cohort(tmp_path, fs_hz=100.0)
    assert len(cohort) == 1 and len(cohort.errors) == 1


def test_cohort_without_records(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(NoRecordsError, match="0 candidate"):
        read_cohort(tmp_path)
    (tmp_path / "bad.csv").write_text("a\nx\n")
    with pytest.warns(UnreadableFileWarning), pytest.raises(NoRecordsError, match=r"bad\.csv"):
        read_cohort(tmp_path)
    with pytest.raises(MissingFileError, match="no such folder"):
        read_cohort(tmp_path / "missing")


def test_csv_with_one_huge_cell_costs_no_memory_and_fails_cleanly(tmp_path: Path) -> None:
    """One long cell once sized a fixed-width string array for every cell (+2 GB for 151 KB)."""
    import tracemalloc

    rows = "\n".join(f"{i},{i}" for i in range(20_000))
    cases = {
        "letters.csv": f"a,b\n{rows}\n1,{'x' * 100_000}\n",  # under the csv field limit
        "limit.csv": f"a,b\n{rows}\n1,{'x' * 200_000}\n",  # over it: csv.Error inside
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        tracemalloc.start()
        with pytest.raises(NonNumericDataError) as info:
            read(path, fs_hz=1000.0)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 40 * path.stat().st_size, (name, peak)
        message = str(info.value)
        assert name in message and len(message) < 300  # the cell is not echoed whole


def test_npz_decompression_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    import tracemalloc

    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, signal=np.zeros(8 * 2**20, dtype=np.float64), fs_hz=2000.0)
    assert bomb.stat().st_size < 2**20  # 64 MiB of zeros in well under 1 MiB
    tracemalloc.start()
    with pytest.raises(HeaderMismatchError, match="inflate to 64 MiB"):
        read(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * 2**20
    # real EMG compresses a few-fold only: a 20 MiB recording is read
    fine = tmp_path / "fine.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(fine, signal=rng.normal(0, 50, 5 * 2**20).astype(np.float32), fs_hz=2e4)
    assert read(fine)[0].signal.size == 5 * 2**20


def test_fuzz_findings_fail_fast_and_cheap(tmp_path: Path) -> None:
    """Two inputs benchmarks/fuzz_readers.py found: a WFDB header whose ADC resolution is a
    40-digit number (2 ** bits took hours), and a 4 KB WAV declaring 160 MB of samples
    (allocated before reading)."""
    import time
    import tracemalloc

    wfdb.wrsamp("rec", fs=2000, units=["uV"], sig_name=["emg"],
                p_signal=np.zeros((2000, 1)), fmt=["16"], write_dir=str(tmp_path))  # fmt: skip
    hea = tmp_path / "rec.hea"
    fields = hea.read_text().splitlines()
    parts = fields[1].split()
    parts[3] = "9" * 40  # the ADC resolution field
    hea.write_text("\n".join([fields[0], " ".join(parts), *fields[2:]]) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(HeaderMismatchError, match="ADC resolution"):
        read(hea)
    assert time.perf_counter() - t0 < 5

    wav = tmp_path / "liar.wav"
    wavfile.write(wav, 2000, np.zeros(2000, dtype=np.int16))
    data = bytearray(wav.read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = (160 * 2**20).to_bytes(4, "little")
    wav.write_bytes(bytes(data))
    tracemalloc.start()
    with pytest.raises(TruncatedDataError, match="declares"):
        read(wav)
    assert tracemalloc.get_traced_memory()[1] < 10 * 2**20
    tracemalloc.stop()

    # and lengths of headers: a .npy header, a WAV format chunk, each "960 MB long"
    npy = tmp_path / "liar.npy"
    np.save(npy, np.zeros(2000, dtype=np.float32))
    raw = bytearray(npy.read_bytes())
    raw[6:8] = b"99"  # the version bytes: numpy then reads a 4-byte header length
    npy.write_bytes(bytes(raw))
    fmt_chunk = bytearray(wav.read_bytes())
    at = fmt_chunk.index(b"fmt ") + 4
    fmt_chunk[at : at + 4] = (956 * 2**20).to_bytes(4, "little")
    wav.write_bytes(bytes(fmt_chunk))
    for path in (npy, wav):
        tracemalloc.start()
        with pytest.raises((HeaderMismatchError, TruncatedDataError)):
            read(path, fs_hz=2000.0)
        assert tracemalloc.get_traced_memory()[1] < 10 * 2**20, path.name
        tracemalloc.stop()


def test_structured_fuzz_findings(tmp_path: Path) -> None:
    """What the structured mutators of benchmarks/fuzz_readers.py found: an .npz member whose
    header declares 10^12 strings (numpy allocated what it declared before reading), a CSV
    exported as UTF-16 ("unknown format"), and a quote left open on one line (every later
    line became one cell)."""
    import io
    import tracemalloc
    import zipfile

    header = "{'descr': '<U10', 'fortran_order': False, 'shape': (1000000000000,), }"
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    member = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
    npz = tmp_path / "liar.npz"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("signal.npy", member + bytes(4000))
        zf.writestr("fs_hz.npy", member)
    npz.write_bytes(buf.getvalue())
    tracemalloc.start()
    with pytest.raises(TruncatedDataError, match=r"member '(fs_hz|signal)\.npy'"):
        read(npz)
    assert tracemalloc.get_traced_memory()[1] < 10 * 2**20
    tracemalloc.stop()

    rows = "".join(f"{i / 1000:.3f},{np.sin(i / 5):.4f}\n" for i in range(1000))
    utf16 = tmp_path / "export.csv"
    utf16.write_bytes(("time_s,emg_uV\n" + rows).encode("utf-16"))
    (rec,) = read(utf16)
    assert rec.fs_hz == pytest.approx(1000.0) and rec.signal.size == 1000

    lines = ("time_s,emg_uV\n" + rows).splitlines()
    lines[10] = '"' + lines[10].replace(",", '","')  # the closing quote lost
    quoted = tmp_path / "quoted.csv"
    quoted.write_text("\n".join(lines) + "\n")
    (rec,) = read(quoted)
    assert rec.signal.size == 1000
    assert rec.signal[9] == pytest.approx(np.sin(9 / 5), abs=1e-4)  # the quoted row
