"""The needle-EMG simulator: determinism, physics, ground truth, files, and a check against reality.

The real-data tests compare the *direction* of class differences: first measured on the real
N2001 low-contraction records and the Pattichis MUAP table, then on simulated low-level records
measured the same way; every direction must agree. Run with ``-s`` to see the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.signal
import wfdb

from emgdx.errors import ConfigError, ReadError
from emgdx.recording import LABELS, Recording
from emgdx.simulate import (
    EVENT_KINDS,
    MUSCLE,
    GroundTruth,
    SimulatedCohort,
    SimulationConfig,
    draw_subject,
    inject_fault,
    load_truth,
    muap_measures,
    simulate_cohort,
    simulate_recording,
    simulate_subject,
    write_cohort,
)

FS_N2001 = 23_437.5


@pytest.fixture(scope="module")
def small_cohort() -> SimulatedCohort:
    return simulate_cohort(2, 2, fs_hz=10_000.0, duration_s=2.0, seed=7)


# ---------------------------------------------------------------------------------------------
# basic contract
# ---------------------------------------------------------------------------------------------


def test_record_is_a_recording_with_metadata() -> None:
    sim = simulate_recording("myopathy", fs_hz=10_000.0, duration_s=1.5, level="low", seed=1)
    rec = sim.recording
    assert isinstance(rec, Recording)
    assert rec.signal.dtype == np.float32 and rec.n_samples == 15_000
    assert rec.label == "myopathy" and rec.fs_hz == 10_000.0
    assert rec.muscle == MUSCLE and rec.meta["simulated"] is True
    assert rec.meta["level"] == "low" and "myopathy" in rec.meta["diagnosis"]
    assert rec.record_id.startswith(rec.subject_id) and rec.subject_id.startswith("SIM-M")
    assert np.isfinite(rec.signal).all() and rec.signal.std() > 1.0


def test_cohort_ids_manifest_and_progress() -> None:
    calls: list[tuple[int, int]] = []
    sim = simulate_cohort(
        2, 3, fs_hz=4000.0, duration_s=1.0, seed=3, on_progress=lambda d, t: calls.append((d, t))
    )
    man = sim.cohort.manifest
    assert len(sim.cohort) == 18 and len(sim.cohort.subjects) == 6
    assert sorted(man["label"].unique()) == sorted(LABELS)
    assert "SIM-H01-R03" in man.index and "SIM-N02-R01" in man.index
    assert set(man.loc[man["label"] == "myopathy", "subject_id"]) == {"SIM-M01", "SIM-M02"}
    assert set(sim.truth) == set(man.index)
    assert (man.loc[man["label"] == "healthy", "severity"] == 0).all()
    assert (man.loc[man["label"] != "healthy", "severity"] > 0).all()
    assert calls[-1] == (6, 6) and len(calls) == 6


def test_levels_by_label_mimic_the_n2001_protocol() -> None:
    sim = simulate_cohort(
        1,
        2,
        fs_hz=4000.0,
        duration_s=0.5,
        seed=2,
        levels={"healthy": ["low", "moderate"], "neurogenic": ["low"], "myopathy": ["low"]},
    )
    levels = sim.cohort.manifest.groupby("label")["level"].agg(set)
    assert levels["healthy"] == {"low", "moderate"}
    assert levels["neurogenic"] == {"low"} and levels["myopathy"] == {"low"}


def test_bad_arguments_raise_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fs_hz"):
        simulate_recording("healthy", duration_s=1.0, seed=1)
    with pytest.raises(ConfigError, match="2000"):
        simulate_recording("healthy", fs_hz=500.0, duration_s=1.0, seed=1)
    with pytest.raises(ConfigError, match="level"):
        simulate_recording("healthy", fs_hz=4000.0, duration_s=1.0, level="maximal", seed=1)
    with pytest.raises(ConfigError, match="level"):
        simulate_recording("healthy", fs_hz=4000.0, duration_s=1.0, level=1.5, seed=1)
    with pytest.raises(ConfigError, match="label"):
        simulate_recording("tired", fs_hz=4000.0, duration_s=1.0, seed=1)
    with pytest.raises(ConfigError, match="seed or rng"):
        simulate_recording(
            "healthy", fs_hz=4000.0, duration_s=1.0, seed=1, rng=np.random.default_rng(1)
        )
    subject = draw_subject("neurogenic", rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="not healthy"):
        simulate_recording("healthy", fs_hz=4000.0, duration_s=1.0, subject=subject, seed=1)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "other.txt").write_text("keep me")
    sim = simulate_cohort(1, 1, fs_hz=4000.0, duration_s=0.5, seed=0, labels=["healthy"])
    with pytest.raises(ConfigError, match="not empty"):
        write_cohort(sim, busy)
    assert [p.name for p in busy.iterdir()] == ["other.txt"]


def test_config_round_trip() -> None:
    cfg = SimulationConfig(fs_hz=10_000.0, duration_s=2.0, level=0.3, line_hz=60.0, noise_uv=4.0)
    again = SimulationConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ConfigError, match="unknown"):
        SimulationConfig.from_dict({**cfg.to_dict(), "colour": "blue"})
    sim = simulate_recording("healthy", config=cfg, seed=5)
    assert sim.recording.fs_hz == 10_000.0 and sim.recording.meta["level"] == 0.3
    assert sim.truth.params["config"] == cfg.to_dict()


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------


def test_same_seed_is_bit_identical_and_other_seeds_differ() -> None:
    kw = dict(fs_hz=10_000.0, duration_s=2.0, level="low")
    a = simulate_recording("neurogenic", seed=42, **kw)
    b = simulate_recording("neurogenic", seed=42, **kw)
    c = simulate_recording("neurogenic", seed=43, **kw)
    np.testing.assert_array_equal(a.recording.signal, b.recording.signal)
    pd.testing.assert_frame_equal(a.truth.events, b.truth.events)
    pd.testing.assert_frame_equal(a.truth.units, b.truth.units)
    assert a.subject == b.subject and a.subject != c.subject
    assert not np.array_equal(a.recording.signal, c.recording.signal)


def test_cohort_seed_reproducible(small_cohort: SimulatedCohort) -> None:
    again = simulate_cohort(2, 2, fs_hz=10_000.0, duration_s=2.0, seed=7)
    other = simulate_cohort(2, 2, fs_hz=10_000.0, duration_s=2.0, seed=8)
    for rec, rec2, rec3 in zip(small_cohort.cohort, again.cohort, other.cohort, strict=True):
        np.testing.assert_array_equal(rec.signal, rec2.signal)
        assert rec.record_id == rec3.record_id
        assert not np.array_equal(rec.signal, rec3.signal)
    assert small_cohort.subjects == again.subjects


def test_records_of_a_subject_share_its_pool() -> None:
    recs = simulate_subject("healthy", 3, fs_hz=4000.0, duration_s=1.0, seed=9)
    assert [r.recording.record_id for r in recs] == ["SIM-H01-R01", "SIM-H01-R02", "SIM-H01-R03"]
    unit_sets = [set(r.truth.units["unit_id"]) for r in recs]
    # Different needle positions see overlapping but different subsets of the same pool.
    assert unit_sets[0] & unit_sets[1] and unit_sets[0] != unit_sets[1]
    assert len({r.truth.params["needle_mm"][0] for r in recs}) == 3
    shared = sorted(unit_sets[0] & unit_sets[1])
    thr = [r.truth.units.set_index("unit_id").loc[shared, "threshold"] for r in recs[:2]]
    np.testing.assert_array_equal(thr[0].to_numpy(), thr[1].to_numpy())
    # Another subject has its own pool and recording chain.
    other = simulate_subject("healthy", 1, fs_hz=4000.0, duration_s=1.0, seed=10)[0]
    assert other.subject.pool_seed != recs[0].subject.pool_seed
    assert other.subject.noise_uv != recs[0].subject.noise_uv


# ---------------------------------------------------------------------------------------------
# physics and ground truth
# ---------------------------------------------------------------------------------------------


def test_muap_duration_is_physical_at_every_sampling_rate() -> None:
    units = {}
    times = {}
    for fs in (4000.0, 10_000.0, FS_N2001):
        sim = simulate_recording("healthy", fs_hz=fs, duration_s=2.0, seed=11)
        u = sim.truth.units
        units[fs] = u[u["kind"] == "motor_unit"].set_index("unit_id")
        ev = sim.truth.events.sort_values(["unit_id", "sample"])
        times[fs] = (ev["unit_id"].to_numpy(), ev["sample"].to_numpy() / fs)
    ref = units[FS_N2001]
    seen = ref.index[ref["amplitude_uv"] >= 50]
    assert len(seen) >= 5
    for fs in (4000.0, 10_000.0):
        assert list(units[fs].index) == list(ref.index)  # same units in view
        diff = (units[fs].loc[seen, "duration_ms"] - ref.loc[seen, "duration_ms"]).abs()
        sample_ms = 1e3 / fs
        # Same physical duration: within a sample for the typical unit and within two samples
        # for nine in ten (a unit whose tail hovers at the 10 µV level may gain or lose a
        # stretch when the low-pass changes its height by a few per cent).
        assert diff.median() <= sample_ms, diff.median()
        assert (diff <= 2 * sample_ms + 0.05).mean() >= 0.9, diff.describe()
        # the same discharges of the same units; the peak times agree within the rounding of
        # discharge and peak to the coarser grid (at most two of its samples)
        np.testing.assert_array_equal(times[fs][0], times[FS_N2001][0])
        assert np.max(np.abs(times[fs][1] - times[FS_N2001][1])) <= 2.0 / fs + 1e-9
    # durations in the clinical range for units a clinician would measure (active, visible)
    act = ref.loc[seen][ref.loc[seen, "active"]]
    assert act["duration_ms"].between(3.0, 20.0).all()


def test_truth_events_rebuild_the_noise_free_signal() -> None:
    sim = simulate_recording("neurogenic", fs_hz=10_000.0, duration_s=3.0, seed=4, keep_clean=True)
    truth, clean = sim.truth, sim.clean
    assert clean is not None and truth.templates is not None and truth.template_peak is not None
    assert set(truth.events["kind"]) <= set(EVENT_KINDS)
    # Every event's sample is where its source's potential peaks: summing each source's
    # template with its peak on the event sample gives back the noise-free signal. (Events
    # whose peak fell outside the record are not listed, so compare away from the edges.)
    rebuilt = np.zeros(truth.n_samples + 4000)
    row_of = {uid: i for i, uid in enumerate(truth.units["unit_id"])}
    for s, uid in zip(truth.events["sample"], truth.events["unit_id"], strict=True):
        i = row_of[uid]
        start = int(s) - int(truth.template_peak[i]) + 2000
        w = truth.templates[i]
        rebuilt[start : start + w.size] += w
    rebuilt = rebuilt[2000 : 2000 + truth.n_samples]
    core = slice(1000, truth.n_samples - 1000)
    scale = np.abs(clean[core]).max()
    assert np.abs(rebuilt[core] - clean[core]).max() < 1e-3 * scale
    # and the events sit on large deflections, not on the baseline
    at_events = np.abs(clean[truth.events["sample"].to_numpy()])
    rng = np.random.default_rng(0)
    anywhere = np.abs(clean[rng.integers(0, truth.n_samples, 2000)])
    assert np.median(at_events) > 3 * np.median(anywhere)


def test_level_recruits_units_and_raises_rates() -> None:
    subject = draw_subject("healthy", rng=np.random.default_rng(21))
    low = simulate_recording(
        "healthy", fs_hz=4000.0, duration_s=2.0, level="low", seed=5, subject=subject
    )
    mod = simulate_recording(
        "healthy", fs_hz=4000.0, duration_s=2.0, level="moderate", seed=5, subject=subject
    )
    ul = low.truth.units.set_index("unit_id")
    um = mod.truth.units.set_index("unit_id")
    assert mod.recording.meta["n_active_units"] > low.recording.meta["n_active_units"]
    both = ul.index[ul["active"] & um["active"]]
    assert len(both) > 0 and (um.loc[both, "rate_hz"] > ul.loc[both, "rate_hz"]).all()
    rl = ul.loc[ul["active"], "rate_hz"]
    assert rl.between(5.0, 30.0).all()
    assert mod.recording.signal.std() > low.recording.signal.std()


def test_disease_changes_the_pool_as_expected() -> None:
    sims = {lab: simulate_subject(lab, 2, fs_hz=4000.0, duration_s=2.0, seed=31) for lab in LABELS}
    units = {lab: pd.concat([s.truth.units for s in sims[lab]]) for lab in LABELS}
    mu = {lab: u[u["kind"] == "motor_unit"] for lab, u in units.items()}
    assert not mu["healthy"]["disease_signature"].any()
    assert mu["neurogenic"]["reinnervated"].mean() > 0.5
    assert (mu["neurogenic"]["n_fibres"] > mu["neurogenic"]["n_fibres_orig"]).mean() > 0.5
    assert mu["myopathy"]["myopathic"].mean() > 0.5
    assert mu["myopathy"]["fibre_loss"].mean() > 0.2
    assert (mu["healthy"]["fibre_loss"] == 0).all() and (mu["neurogenic"]["fibre_loss"] == 0).all()
    # fewer motor units left in view in ALS, spontaneous activity only in disease
    assert len(mu["neurogenic"]) < len(mu["healthy"])
    kinds = {lab: set(pd.concat([s.truth.events for s in sims[lab]])["kind"]) for lab in LABELS}
    assert kinds["healthy"] == {"muap"}
    assert {"fibrillation", "positive_sharp_wave"} <= kinds["neurogenic"]
    spont = units["neurogenic"][units["neurogenic"]["kind"] == "fibrillation"]
    assert spont["amplitude_uv"].between(10.0, 250.0).all()
    assert spont["duration_ms"].between(0.5, 6.0).all()


def test_signature_mask() -> None:
    sim = simulate_recording("neurogenic", fs_hz=10_000.0, duration_s=2.0, seed=4)
    truth = sim.truth
    mask = truth.signature_mask()
    assert mask.dtype == bool and mask.size == truth.n_samples and 0 < mask.mean() < 1
    ev = truth.events
    fib = ev.loc[ev["kind"] == "fibrillation", "sample"].to_numpy()
    assert fib.size and mask[fib].all()
    only_fib = truth.signature_mask(kinds=["fibrillation"])
    assert only_fib.sum() < mask.sum() and only_fib[fib].all()
    everything = truth.signature_mask(disease_only=False)
    assert everything[ev["sample"].to_numpy()].all()
    assert not (mask & ~everything).any()  # the disease mask is a subset of all discharges
    healthy = simulate_recording("healthy", fs_hz=10_000.0, duration_s=1.0, seed=4).truth
    assert not healthy.signature_mask().any()
    assert healthy.signature_mask(disease_only=False).any()
    with pytest.raises(ConfigError, match="kinds"):
        truth.signature_mask(kinds=["sneeze"])


def test_muap_measures_on_known_shapes() -> None:
    fs = 20_000.0
    t = (np.arange(800) - 400) / fs * 1e3  # ms

    def shape(x: np.ndarray | float) -> np.ndarray | float:
        return -400.0 * x * np.exp(-0.5 * (x / 0.5) ** 2)  # biphasic, peaks ~ +-121 µV

    biphasic = np.asarray(shape(t))
    m = muap_measures(np.vstack([biphasic, np.zeros_like(t)]), fs)
    assert m.loc[0, "phases"] == 2
    assert m.loc[0, "amplitude_uv"] == pytest.approx(np.ptp(biphasic))
    # |v| >= 10 µV out to the outer crossing t1 on either side (the dip near 0 is far shorter
    # than the 3 ms gap that would split it), so the duration is 2 * t1 to within a sample
    t1 = scipy.optimize.brentq(lambda x: abs(shape(x)) - 10.0, 0.5, 5.0)
    assert m.loc[0, "duration_ms"] == pytest.approx(2 * t1, abs=1.5e3 / fs)
    assert m.loc[1, "duration_ms"] == 0.0 and m.loc[1, "phases"] == 0


def test_line_noise_frequency_shows_in_the_spectrum() -> None:
    peaks = {}
    for line_hz in (50.0, 60.0):
        cfg = SimulationConfig(fs_hz=4000.0, duration_s=4.0, line_hz=line_hz, line_uv=40.0)
        sig = simulate_recording("healthy", config=cfg, seed=3).recording.signal
        f, p = scipy.signal.welch(sig, fs=4000.0, nperseg=4000)
        peaks[line_hz] = (p[f == 50.0][0], p[f == 60.0][0], p[f == 55.0][0])
    p50, p60, p55 = peaks[50.0]
    assert p50 > 20 * p60 and p50 > 20 * p55
    p50, p60, p55 = peaks[60.0]
    assert p60 > 20 * p50 and p60 > 20 * p55


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def test_write_cohort_round_trip(small_cohort: SimulatedCohort, tmp_path: Path) -> None:
    out = write_cohort(small_cohort, tmp_path / "sim")
    man = pd.read_csv(out / "manifest.csv")
    assert list(man.columns[:6]) == ["record_id", "subject_id", "label", "level", "muscle", "fs_hz"]
    assert len(man) == len(small_cohort.cohort)
    assert not list(tmp_path.glob(".sim.*"))  # no temporary folder left behind
    for rec in small_cohort.cohort:
        w = wfdb.rdrecord(str(out / rec.record_id))
        assert w.fs == rec.fs_hz and w.units == ["uV"] and w.fmt == ["16"]
        step = 1.0 / w.adc_gain[0]
        assert np.abs(w.p_signal[:, 0] - rec.signal).max() <= step / 2 + 1e-6
        digital = wfdb.rdrecord(str(out / rec.record_id), physical=False).d_signal[:, 0]
        assert 20_000 < np.abs(digital).max() <= 32_767  # the gain uses the int16 range
        comments = dict(c.split(": ", 1) for c in w.comments)
        assert comments["subject"] == rec.subject_id and comments["simulated"] == "true"
        assert comments["level"] == "low" and comments["muscle"] == MUSCLE
        assert comments["seed"] == "7"
        truth = load_truth(out / f"{rec.record_id}.truth.json")
        orig = small_cohort.truth[rec.record_id]
        assert isinstance(truth, GroundTruth) and truth.n_samples == rec.n_samples
        pd.testing.assert_frame_equal(truth.events, orig.events)
        pd.testing.assert_frame_equal(truth.units, orig.units)
    with pytest.raises(ReadError, match="not found"):
        load_truth(tmp_path / "missing.truth.json")
    (tmp_path / "junk.truth.json").write_text("{not json")
    with pytest.raises(ReadError, match=r"junk\.truth\.json"):
        load_truth(tmp_path / "junk.truth.json")


def test_written_cohort_reads_back_through_emgdx_io(
    small_cohort: SimulatedCohort, tmp_path: Path
) -> None:
    io = pytest.importorskip("emgdx.io")
    out = write_cohort(small_cohort, tmp_path / "sim")
    cohort = io.read_cohort(out)
    assert not cohort.errors
    man = cohort.manifest.sort_index()
    ref = small_cohort.cohort.manifest.sort_index()
    assert list(man.index) == list(ref.index)
    assert (man["label"] == ref["label"]).all() and (man["subject_id"] == ref["subject_id"]).all()
    rec = cohort[ref.index[0]]
    np.testing.assert_allclose(
        rec.signal, small_cohort.cohort[ref.index[0]].signal, atol=0.05 + 1e-3
    )


# ---------------------------------------------------------------------------------------------
# against reality
# ---------------------------------------------------------------------------------------------

MEASURES = ("p99_uv", "rms_uv", "mean_freq_hz", "median_freq_hz")
PAIRS = (("neurogenic", "healthy"), ("myopathy", "healthy"), ("neurogenic", "myopathy"))


def _record_measures(x: np.ndarray, fs_hz: float) -> dict[str, float]:
    """Robust amplitude and spectral measures of one record, the same for real and simulated.

    20 Hz high-pass (removes wander and drift), then per 1 s window the 99th percentile of
    |x|, the RMS and the mean and median frequency of the Welch PSD; the record's value is the
    median over windows, so a short garbage tail or clipped stretch cannot dominate.
    """
    sos = scipy.signal.butter(4, 20.0, "highpass", fs=fs_hz, output="sos")
    y = scipy.signal.sosfiltfilt(sos, np.asarray(x, dtype=float))
    win = int(fs_hz)
    segs = y[: y.size // win * win].reshape(-1, win)
    f, p = scipy.signal.welch(segs, fs=fs_hz, nperseg=2048, axis=1)
    cum = np.cumsum(p, axis=1)
    median_idx = np.argmax(cum >= cum[:, -1:] / 2, axis=1)
    return {
        "p99_uv": float(np.median(np.percentile(np.abs(segs), 99, axis=1))),
        "rms_uv": float(np.median(np.sqrt(np.mean(segs**2, axis=1)))),
        "mean_freq_hz": float(np.median((p * f).sum(axis=1) / p.sum(axis=1))),
        "median_freq_hz": float(np.median(f[median_idx])),
    }


def _class_table(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Per-subject means of the record measures, then the median subject of each class."""
    df = pd.DataFrame(rows)
    per_subject = df.groupby(["label", "subject_id"])[list(MEASURES)].mean()
    return per_subject.groupby("label").median()


def _directions(table: pd.DataFrame) -> dict[tuple[str, str, str], int]:
    return {
        (m, a, b): int(np.sign(table.loc[a, m] - table.loc[b, m]))
        for m in MEASURES
        for a, b in PAIRS
    }


@pytest.mark.realdata
def test_class_differences_match_real_n2001(n2001: Path) -> None:
    from emgdx.io import read_cohort

    real = read_cohort(n2001)
    rows: list[dict[str, object]] = []
    skipped = []
    for rec in real:
        if rec.level != "low" or rec.label is None:
            continue  # controls also have moderate records; patients only low ones
        if np.mean(rec.signal == 0) > 0.5:
            skipped.append(rec.record_id)  # an empty record (QC would flag it) says nothing
            continue
        rows.append(
            {
                "label": rec.label,
                "subject_id": rec.subject_id,
                **_record_measures(rec.signal, rec.fs_hz),
            }
        )
    real_table = _class_table(rows)
    assert set(real_table.index) == set(LABELS)

    sim = simulate_cohort(8, 3, fs_hz=FS_N2001, duration_s=4.0, levels=("low",), seed=2024)
    sim_rows = [
        {"label": r.label, "subject_id": r.subject_id, **_record_measures(r.signal, r.fs_hz)}
        for r in sim.cohort
    ]
    sim_table = _class_table(sim_rows)
    print("\nreal N2001 low-level, median subject per class:\n", real_table.round(1))
    print("simulated low-level, median subject per class:\n", sim_table.round(1))
    print(f"real records used: {len(rows)}, skipped as empty: {skipped}")

    real_dir, sim_dir = _directions(real_table), _directions(sim_table)
    assert all(v != 0 for v in real_dir.values())
    disagree = {k: (real_dir[k], sim_dir[k]) for k in real_dir if real_dir[k] != sim_dir[k]}
    assert not disagree, f"direction (real, simulated) differs for {disagree}"


@pytest.mark.realdata
def test_simulated_muaps_match_muap_table_directions(muap_table: Path) -> None:
    table = pd.read_csv(muap_table)
    cls = {1: "healthy", 2: "neurogenic", 3: "myopathy"}
    ref = table.assign(label=table["Cls"].map(cls)).groupby("label")[["DurMn", "AmpMn", "PhMn"]]
    ref = ref.mean().rename(
        columns={"DurMn": "duration_ms", "AmpMn": "amplitude_uv", "PhMn": "phases"}
    )
    ref["amplitude_uv"] *= 1000.0  # mV -> µV

    sim = simulate_cohort(12, 3, fs_hz=FS_N2001, duration_s=0.5, levels=("low",), seed=77)
    units = pd.concat(
        [t.units.assign(label=t.label, subject_id=t.subject_id) for t in sim.truth.values()]
    )
    # What a clinician's MUAP analysis sees: units that discharge, with a visible MUAP.
    seen = units[(units["kind"] == "motor_unit") & units["active"] & (units["amplitude_uv"] >= 50)]
    per_subject = seen.groupby(["label", "subject_id"])[["duration_ms", "amplitude_uv", "phases"]]
    got = per_subject.mean().groupby("label").mean()
    print("\nMUAP table (class means):\n", ref.round(2))
    print("simulated MUAPs (class means of subject means):\n", got.round(2))

    for frame in (ref, got):
        for m in ("duration_ms", "amplitude_uv"):
            assert frame.loc["neurogenic", m] > frame.loc["healthy", m] > frame.loc["myopathy", m]
        assert frame.loc["neurogenic", "phases"] > frame.loc["healthy", "phases"]
        assert frame.loc["myopathy", "phases"] > frame.loc["healthy", "phases"]


def test_closed_form_spectra_match_the_time_shapes() -> None:
    """The templates are rendered from closed-form spectra; check them against the shapes."""
    from emgdx import simulate as sim_mod

    fs = 100_000.0
    dt_ms = 1e3 / fs
    n = 8192
    omega = 2 * np.pi * np.fft.rfftfreq(n, dt_ms)
    t = np.arange(n) * dt_ms
    tau = 20.0
    order = sim_mod._SPIKE_ORDER
    for w, spectrum, shape in (
        (0.2, sim_mod._spike_spectrum, lambda u: -np.real((1 + 1j * u) ** -(order + 1.0))),
        (1.5, sim_mod._tripole_spectrum, sim_mod._tripole_far),
    ):
        wave = np.fft.irfft((w / dt_ms) * spectrum(omega * w) * np.exp(-1j * omega * tau), n)
        ref = shape((t - tau) / w)
        assert wave.min() == pytest.approx(-1.0, abs=0.01)
        assert np.abs(wave - ref).max() < 0.01  # power-law tails wrap around a little


def test_inject_fault_kinds() -> None:
    rec = simulate_recording("healthy", fs_hz=10_000.0, duration_s=4.0, seed=11).recording
    rng = np.random.default_rng(0)
    clipped = inject_fault(rec, "clipping", rng=rng, adc_range_uv=2500.0)
    assert clipped.meta["digital_range_uv"] == (-2500.0, 2500.0)
    at_rails = np.abs(clipped.signal) >= 2500.0 - 1e-3
    assert at_rails.mean() > 0.01  # a real saturated stretch, not a stray sample
    assert np.abs(clipped.signal).max() <= 2500.0 + 1e-3
    tail = inject_fault(rec, "garbage_tail", rng=rng)
    changed = np.flatnonzero(tail.signal != rec.signal)
    assert changed.size > 0 and changed[-1] == rec.n_samples - 1
    assert 0.3 <= (rec.n_samples - changed[0]) / rec.fs_hz <= 0.6 + 1e-9
    assert not np.any(inject_fault(rec, "dropout", rng=rng).signal)
    hum = inject_fault(rec, "line_noise", rng=rng).signal - rec.signal
    spectrum = np.abs(np.fft.rfft(hum))
    freqs = np.fft.rfftfreq(hum.size, 1 / rec.fs_hz)
    assert freqs[np.argmax(spectrum)] == pytest.approx(60.0, abs=0.5)
    assert rec.meta.get("injected_fault") is None  # the original is untouched
    with pytest.raises(ConfigError, match="unknown fault"):
        inject_fault(rec, "gremlins", rng=rng)
