"""Tests of emgdx.frontend: QC + preprocessing + windows + normalisation for a cohort, its fitted
state, per-record failures, and the same stage on a live stream segment."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from emgdx.errors import ConfigError, SamplingRateError, SignalError
from emgdx.frontend import FrontEnd, ReducedBandWarning
from emgdx.preprocess import PreprocessConfig
from emgdx.recording import Cohort, Recording
from emgdx.simulate import inject_fault, simulate_cohort

FS = 23_437.5


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    sim = simulate_cohort(2, 2, fs_hz=FS, duration_s=4.0, seed=11)
    recs = list(sim.cohort.recordings)
    rng = np.random.default_rng(0)
    recs[1] = inject_fault(recs[1], "clipping", rng=rng)  # QC masks the clipped bursts
    return Cohort.from_recordings(recs)


def test_prepare_runs_qc_and_keeps_windows_off_what_it_masks(cohort: Cohort) -> None:
    cfg = PreprocessConfig(window_s=0.5, hop_s=0.25)
    calls: list[tuple[int, int]] = []
    serial = FrontEnd(cfg, n_jobs=1).prepare(cohort)
    threaded = FrontEnd(cfg, n_jobs=2).prepare(
        cohort, on_progress=lambda d, t: calls.append((d, t))
    )
    np.testing.assert_array_equal(serial.windows.data, threaded.windows.data)
    assert serial.windows.index.equals(threaded.windows.index)
    assert sorted(calls) == [(i, len(cohort)) for i in range(1, len(cohort) + 1)]
    assert serial.windows.fs_hz == 6000.0 and serial.windows.n_samples == 3000
    qc = serial.qc.set_index("record_id")
    clipped = cohort.recordings[1].record_id
    assert "clipping" in qc.loc[clipped, "qc_flags"] and qc.loc[clipped, "usable_fraction"] < 1
    per_record = serial.windows.index.groupby("record_id").size()
    assert per_record[clipped] < per_record.max()
    assert (serial.windows.index["usable_fraction"] == 1.0).all()
    assert serial.problems == {}


def test_fitted_normaliser_is_learnt_on_training_windows_only(cohort: Cohort) -> None:
    cfg = PreprocessConfig(normalise="zscore", normalise_scope="fitted")
    ids = [r.record_id for r in cohort.recordings]
    front = FrontEnd(cfg)
    train = front.prepare(cohort.subset(ids[:4])).windows
    test = front.prepare(cohort.subset(ids[4:])).windows
    raw_test = FrontEnd(dataclasses.replace(cfg, normalise="none")).prepare(cohort.subset(ids[4:]))
    np.testing.assert_array_equal(test.data, raw_test.windows.data)  # prepare fits nothing
    front.fit(train)
    norm = front.normaliser
    assert norm is not None and norm.scale == pytest.approx(float(train.data.std()), rel=1e-5)
    np.testing.assert_allclose(
        front.finish(test.data), (test.data - norm.center) / norm.scale, rtol=1e-4, atol=1e-4
    )
    again = FrontEnd(cfg).load_state(front.state_dict())
    np.testing.assert_array_equal(again.finish(test.data), front.finish(test.data))
    assert again.fs_hz == 6000.0 and again.n_times == train.n_samples


@pytest.mark.parametrize(("scope", "axis"), [("window", 1), ("record", None)])
def test_stateless_scopes_are_applied_in_prepare(
    cohort: Cohort, scope: str, axis: int | None
) -> None:
    cfg = PreprocessConfig(normalise="zscore", normalise_scope=scope)  # type: ignore[arg-type]
    windows = FrontEnd(cfg).prepare(cohort).windows
    if axis == 1:
        np.testing.assert_allclose(windows.data.mean(axis=1), 0.0, atol=1e-4)
        np.testing.assert_allclose(windows.data.std(axis=1), 1.0, rtol=1e-3)
    else:  # each record's usable samples have unit spread, so its windows come close
        for _, rows in windows.index.groupby("record_id").groups.items():
            assert windows.data[list(rows)].std() == pytest.approx(1.0, rel=0.2)


def test_a_failing_record_is_a_problem_not_a_crash_when_asked(cohort: Cohort) -> None:
    short = Recording(np.zeros(12, np.float32) + 1.0, FS, "TINY", "TINY")
    mixed = Cohort.from_recordings([*cohort.recordings[:2], short])
    with pytest.raises(SignalError, match="TINY"):
        FrontEnd().prepare(mixed)
    prepared = FrontEnd().prepare(mixed, skip_failures=True)
    assert set(prepared.problems) == {"TINY"} and "too short" in prepared.problems["TINY"]
    assert set(prepared.windows.index["record_id"]) == {r.record_id for r in cohort.recordings[:2]}
    nothing = FrontEnd().prepare([short], skip_failures=True)
    assert len(nothing.windows) == 0 and nothing.windows.n_samples == 6000


def test_a_fitted_front_end_checks_every_records_rate(cohort: Cohort) -> None:
    front = FrontEnd(PreprocessConfig(band_hz=(20.0, 1800.0)))
    front.fit(front.prepare(cohort).windows)
    rec = cohort.recordings[0]
    from emgdx.preprocess import resample

    slow = Recording(resample(rec.signal, FS, 3000.0)[0], 3000.0, "SLOW", "S")
    slower = Recording(resample(rec.signal, FS, 1500.0)[0], 1500.0, "SLOWER", "S")
    with pytest.warns(ReducedBandWarning, match="SLOW"):
        assert len(front.prepare([slow]).windows) > 0
    with pytest.raises(SamplingRateError, match="SLOWER"):
        front.prepare([slower])
    skipped = front.prepare([slower, rec], skip_failures=True)
    assert "1500 Hz" in skipped.problems["SLOWER"] and len(skipped.windows) > 0


def test_live_front_end_refuses_record_scope_and_bad_rates() -> None:
    with pytest.raises(ConfigError, match="each record"):
        FrontEnd(PreprocessConfig(normalise="zscore", normalise_scope="record")).live(FS)
    with pytest.raises(ConfigError, match="positive"):
        FrontEnd().live(float("nan"))


@pytest.mark.parametrize(
    ("scope", "method", "fs_hz"),
    [
        ("window", "none", FS),
        ("window", "robust", FS),
        ("fitted", "zscore", FS),
        ("window", "zscore", 32_768.0),
        ("window", "zscore", 5999.77),  # a rate with no small-term ratio to 6 kHz
    ],
)
def test_live_window_is_the_offline_window(scope: str, method: str, fs_hz: float) -> None:
    # the front end on a stream segment (QC, preprocessing on the offline grid, window,
    # normalisation) gives the offline window, for every normalisation and rate kind
    sim = simulate_cohort(1, 1, labels=("neurogenic",), fs_hz=fs_hz, duration_s=6.0, seed=4)
    rec = sim.cohort.recordings[0]
    cfg = PreprocessConfig(normalise=method, normalise_scope=scope)  # type: ignore[arg-type]
    front = FrontEnd(cfg)
    offline = front.prepare(rec).windows
    front.fit(offline)
    live = front.live(fs_hz, rec.record_id)
    context = round(0.3 * live.fs_out)
    for k in (2, 5):
        out_start = int(offline.index["start_sample"].iloc[k])
        start, stop = live.segment(out_start, context)
        assert start % live.plan.down == 0
        qc_from = max(0, stop - round(2.0 * fs_hz))
        raw = rec.signal[qc_from:stop]
        result = live.window(raw, np.ones(raw.size, bool), start - qc_from, start, out_start, 0.0)
        assert result.windows is not None
        got = front.finish(result.windows.data)[0]
        want = front.finish(offline.data[k : k + 1])[0]
        scale = float(np.std(want)) or 1.0
        assert float(np.abs(got - want).max()) / scale < 2e-3
