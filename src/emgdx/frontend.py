"""The front end: quality control, preprocessing, windows and every normalisation.

Every path (train, evaluate, predict, report, clinic, live monitor, federated sites, demo) turns
recordings into model-ready windows through this one stage::

    Cohort / recordings ──prepare()──▶ Prepared: windows + per-record QC + per-record problems
        QC (emgdx.quality.assess_cohort: flags, usable mask, mains frequency)
        → preprocess_recording (interpolate unusable → resample exactly → band-pass + notch)
        → record-scope normalisation → make_windows → window-scope normalisation
    training windows ──fit()──▶ fitted normaliser (scope "fitted"), window rate and length
    prepared windows ──finish()──▶ what the representation reads (fitted normaliser applied)
    a live stream ──live(fs_hz)──▶ LiveFrontEnd: the same functions on each stream segment

Nothing in ``prepare`` is fitted on other data, so a cohort can be prepared once and split by
subject afterwards; everything fitted happens in :meth:`FrontEnd.fit`, on training windows only.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emgdx.config import ProgressCallback, is_number
from emgdx.errors import ConfigError, EmgdxError, EmptySignalError, SamplingRateError, SignalError
from emgdx.normalise import Normalisation, Normaliser
from emgdx.preprocess import (
    NYQUIST_FRACTION,
    WINDOW_COLUMNS,
    PreprocessConfig,
    fill_unusable,
    make_windows,
    preprocess_recording,
    resample_plan,
)
from emgdx.quality import (
    FLAG_TEXT,
    NOT_INTERPRETABLE_FLAGS,
    QCConfig,
    QualityReport,
    assess,
    assess_cohort,
    flag_messages,
    not_interpretable_reasons,
)
from emgdx.recording import Cohort, Recording, Windows

__all__ = [
    "FLAG_TEXT",
    "NOT_INTERPRETABLE_FLAGS",
    "QC_COLUMNS",
    "FrontEnd",
    "LiveFrontEnd",
    "LiveWindow",
    "Prepared",
    "PreprocessConfig",
    "QCConfig",
    "ReducedBandWarning",
    "as_cohort",
    "assess_recording",
    "flag_messages",
    "not_interpretable_reasons",
]

#: Per-record QC columns of :attr:`Prepared.qc`.
QC_COLUMNS = ("record_id", "qc_flags", "qc_ok", "usable_fraction", "line_freq_hz")

DataLike = Cohort | Sequence[Recording] | Recording


class ReducedBandWarning(UserWarning):
    """A record is sampled too slowly to carry the whole band the model reads."""


def as_cohort(data: DataLike) -> Cohort:
    """A cohort from a cohort, one recording or a list of recordings."""
    if isinstance(data, Cohort):
        return data
    recs = [data] if isinstance(data, Recording) else list(data)
    if not all(isinstance(r, Recording) for r in recs):
        raise SignalError("expected a Cohort, Recording(s) or Windows")
    return Cohort.from_recordings(recs)


def assess_recording(recording: Recording, config: QCConfig | None = None) -> QualityReport:
    """Quality control of one recording, as the front end runs it (flags, usable mask)."""
    return assess(recording, config)


@dataclass
class Prepared:
    """What :meth:`FrontEnd.prepare` made of a cohort.

    Attributes
    ----------
    windows
        Windows of every record that yielded any, normalised up to the fitted scope; with QC,
        the index has the record's ``qc_flags`` too.
    qc
        One row per record with :data:`QC_COLUMNS` (``None`` when QC is off).
    problems
        ``record_id -> message`` for records that could not be preprocessed (only with
        ``skip_failures=True``; otherwise the first such problem is raised).
    """

    windows: Windows
    qc: pd.DataFrame | None = None
    problems: dict[str, str] = field(default_factory=dict)


class FrontEnd:
    """QC + preprocessing + windows + normalisation, with one entry for a cohort and one for a
    live segment (module docstring).

    Parameters
    ----------
    config
        Filters, rate, windows and normalisation.
    qc
        Run quality control and leave out what it marks unusable (and notch the mains
        frequency it finds, with ``notch="auto"``).
    qc_config
        QC thresholds.
    n_jobs
        Worker threads over records (``None`` or <= 0: one per CPU). Threads pay off because
        scipy's ``upfirdn`` and ``sosfilt`` release the GIL (measured on 2 cores: 5.4 -> 3.1 ms
        per N2001 record).
    """

    def __init__(
        self,
        config: PreprocessConfig | None = None,
        *,
        qc: bool = True,
        qc_config: QCConfig | None = None,
        n_jobs: int | None = 1,
    ) -> None:
        self.config = config or PreprocessConfig()
        self.qc = bool(qc)
        self.qc_config = qc_config or QCConfig()
        self.n_jobs = n_jobs
        #: Rate and length of the windows fitted on (set by :meth:`fit`).
        self.fs_hz: float | None = None
        self.n_times: int | None = None
        #: The fitted-scope normaliser (set by :meth:`fit` when the config asks for one).
        self.normaliser: Normaliser | None = None

    @property
    def normalisation(self) -> Normalisation:
        return self.config.normalisation

    @property
    def fitted(self) -> bool:
        return self.fs_hz is not None

    def rate_for(self, fs_in_hz: float) -> float:
        """The window rate a record at ``fs_in_hz`` is brought to (exactly)."""
        return float(self.fs_hz or self.config.target_fs_hz or fs_in_hz)

    # ---- sampling rate ------------------------------------------------------------------------

    def min_fs_hz(self) -> float | None:
        """The lowest sampling rate that carries the whole band the model looks at."""
        band = self.config.band_hz
        return None if band is None else 2.0 * band[1] / NYQUIST_FRACTION

    def check_recording(self, recording: Recording) -> None:
        """What a clinic checks at upload: the rate (:meth:`check_sampling_rate`) and that the
        record holds at least one analysis window.

        Raises
        ------
        SamplingRateError, EmptySignalError
            Naming the record and the minimum.
        """
        self.check_sampling_rate(recording)
        window_s = self.config.window_s
        duration_s = recording.signal.size / recording.fs_hz
        if duration_s < window_s:
            name = Path(recording.source).name if recording.source else recording.record_id
            raise EmptySignalError(
                name,
                f"{recording.signal.size} sample(s), {duration_s:.3g} s at {recording.fs_hz:g} "
                f"Hz: shorter than this model's {window_s:g} s analysis window (at least "
                f"{math.ceil(window_s * recording.fs_hz):d} samples)",
            )

    def check_sampling_rate(self, recording: Recording) -> None:
        """Warn about, or refuse, a record sampled too slowly for the band.

        Resampling up does not put missing frequencies back. A record that lacks the top of
        the band (e.g. 4 kHz for a 20-2500 Hz model) is still judged, with a
        :class:`ReducedBandWarning` (docs/robustness.md measures what it costs); one that
        lacks more than half of it is refused: the model would judge a signal unlike anything
        it has seen.

        Raises
        ------
        SamplingRateError
            Naming the record, its rate and the rate needed.
        """
        needed = self.min_fs_hz()
        band = self.config.band_hz
        if needed is None or band is None or recording.fs_hz >= needed:
            return
        name = Path(recording.source).name if recording.source else recording.record_id
        usable = NYQUIST_FRACTION * recording.fs_hz / 2.0
        if usable < band[1] / 2.0:
            raise SamplingRateError(
                name,
                f"sampled at {recording.fs_hz:g} Hz, too slowly for this model, which reads "
                f"{band[0]:g}-{band[1]:g} Hz (it needs at least {math.ceil(needed / 2):d} Hz, "
                f"and {math.ceil(needed):d} Hz for the whole band)",
            )
        warnings.warn(
            f"{name}: sampled at {recording.fs_hz:g} Hz, so the content above {usable:.0f} Hz "
            f"of the model's {band[0]:g}-{band[1]:g} Hz band is missing; results may be less "
            f"reliable ({math.ceil(needed):d} Hz carries the whole band)",
            ReducedBandWarning,
            stacklevel=4,  # the caller of predict()/prepare()
        )

    # ---- a cohort -----------------------------------------------------------------------------

    def prepare(
        self,
        data: DataLike,
        *,
        on_progress: ProgressCallback | None = None,
        skip_failures: bool = False,
    ) -> Prepared:
        """QC, preprocessing, windows and the normalisation that needs no fitted statistics.

        Parameters
        ----------
        data
            A cohort, a list of recordings or one recording.
        on_progress
            ``on_progress(done, total)`` per record.
        skip_failures
            A record that cannot be preprocessed (too short to filter, sampled too slowly
            for a fitted front end, ...) goes to :attr:`Prepared.problems` instead of raising.

        Raises
        ------
        EmgdxError
            The first record that fails, unless ``skip_failures``.
        """
        cohort = as_cohort(data)
        qc_table = None
        reports: dict[str, QualityReport] = {}
        if self.qc:
            # A copy of the manifest: QC adds columns to it, and the caller's cohort is theirs.
            manifest = cohort.manifest.copy()
            reports = assess_cohort(Cohort(cohort.recordings, manifest, []), self.qc_config)
            qc_table = manifest[list(QC_COLUMNS)].astype({"record_id": str}).reset_index(drop=True)
        done = self._preprocess(cohort.recordings, reports, on_progress, skip_failures)
        ok = [(rec, mask) for rec, mask in done.values() if rec is not None]
        if ok:
            windows = make_windows(
                [r for r, _ in ok],
                [m for _, m in ok],
                self.config.window_s,
                self.config.hop_s,
                min_usable_fraction=self.config.min_usable_fraction,
            )
            windows.data = self.normalisation.windows(windows.data)
            if qc_table is not None:  # which faults a window's record has, for subsets
                flags = dict(zip(qc_table["record_id"], qc_table["qc_flags"], strict=True))
                windows.index["qc_flags"] = windows.index["record_id"].astype(str).map(flags)
        else:
            windows = self._no_windows(cohort)
        problems = {rid: str(err) for rid, (_, err) in done.items() if isinstance(err, str)}
        return Prepared(windows, qc_table, problems)

    def _no_windows(self, cohort: Cohort) -> Windows:
        fs = self.rate_for(cohort.recordings[0].fs_hz) if len(cohort) else self.rate_for(1.0)
        n = self.n_times or max(1, round(self.config.window_s * fs))
        index = pd.DataFrame({c: pd.Series(dtype=object) for c in WINDOW_COLUMNS})
        return Windows(np.zeros((0, n), dtype=np.float32), fs, index)

    def _preprocess(
        self,
        recordings: Sequence[Recording],
        reports: dict[str, QualityReport],
        on_progress: ProgressCallback | None,
        skip_failures: bool,
    ) -> dict[str, tuple[Any, Any]]:
        """``record_id -> (processed record, usable mask)``, or ``(None, message)`` on failure."""
        config = self.config
        if self.fs_hz is not None and config.target_fs_hz != self.fs_hz:
            config = replace(config, target_fs_hz=self.fs_hz)

        def one(rec: Recording) -> tuple[Any, Any]:
            try:
                if self.fitted:
                    self.check_sampling_rate(rec)
                out, usable = preprocess_recording(rec, config, reports.get(rec.record_id))
                norm = self.normalisation
                if norm.active and norm.scope == "record":
                    signal, info = norm.record(out.signal, usable)
                    out = out.with_signal(signal)
                    out.meta["preprocess"] = {**out.meta["preprocess"], "normalise": info}
                return out, usable
            except EmgdxError as exc:
                if not skip_failures:
                    raise
                return None, str(exc)

        recs = list(recordings)
        total = len(recs)
        wanted = self.n_jobs if self.n_jobs and self.n_jobs > 0 else os.cpu_count() or 1
        jobs = max(1, min(total, wanted))
        results: dict[str, tuple[Any, Any]] = {}
        pool = ThreadPoolExecutor(max_workers=jobs) if jobs > 1 else None
        outcomes: Iterator[tuple[Any, Any]] = (
            iter(map(one, recs)) if pool is None else pool.map(one, recs)
        )
        try:
            for done, (rec, outcome) in enumerate(zip(recs, outcomes, strict=True), start=1):
                results[rec.record_id] = outcome
                if on_progress is not None:
                    on_progress(done, total)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        return results

    # ---- fitted state -------------------------------------------------------------------------

    def fit(self, windows: Windows) -> FrontEnd:
        """Learn what is fitted, on training windows only: their rate and length, and the
        normaliser when the scope is ``"fitted"``."""
        self.fs_hz, self.n_times = float(windows.fs_hz), windows.n_samples
        norm = self.normalisation
        if norm.fitted and norm.method != "none":
            self.normaliser = Normaliser(norm.method).fit(windows.data)
        return self

    def finish(self, data: np.ndarray) -> np.ndarray:
        """Prepared window data as the representation reads it (the fitted normaliser applied)."""
        return data if self.normaliser is None else self.normaliser.transform(data)

    def check_windows(self, windows: Windows) -> None:
        """Refuse windows at another rate or length than this front end makes."""
        if not len(windows):
            return
        rec = windows.index["record_id"].iloc[0]
        target = self.fs_hz or self.config.target_fs_hz
        if target is not None and not math.isclose(windows.fs_hz, target, rel_tol=1e-9):
            raise SignalError(
                f"{rec}: windows at {windows.fs_hz:g} Hz, but this pipeline works at {target:g} Hz"
            )
        expected = self.n_times or round(self.config.window_s * windows.fs_hz)
        if windows.n_samples != expected:
            raise SignalError(
                f"{rec}: windows of {windows.n_samples} samples, but this pipeline uses "
                f"{expected} ({self.config.window_s:g} s at {windows.fs_hz:g} Hz)"
            )

    def state_dict(self) -> dict[str, Any]:
        """The fitted state, JSON-ready (saved in ``pipeline.json``)."""
        return {
            "fs_hz": self.fs_hz,
            "n_times": self.n_times,
            "normaliser": None if self.normaliser is None else self.normaliser.to_dict(),
        }

    def load_state(self, state: dict[str, Any]) -> FrontEnd:
        self.fs_hz = None if state.get("fs_hz") is None else float(state["fs_hz"])
        self.n_times = None if state.get("n_times") is None else int(state["n_times"])
        doc = state.get("normaliser")
        self.normaliser = None if doc is None else Normaliser.from_dict(doc)
        return self

    # ---- a live stream ------------------------------------------------------------------------

    def live(
        self, fs_hz: float, name: str = "stream", *, qc_config: QCConfig | None = None
    ) -> LiveFrontEnd:
        """This front end on a single-channel stream sampled at ``fs_hz`` (QC thresholds
        ``qc_config``, default: this front end's)."""
        return LiveFrontEnd(self, fs_hz, name, qc_config or self.qc_config)


@dataclass
class LiveWindow:
    """One stream window through the front end: QC of the recent signal and the window itself
    (``None`` when too much of it is unusable), prepared exactly as :meth:`FrontEnd.prepare`."""

    qc_flags: tuple[str, ...]
    line_freq_hz: float | None
    usable_fraction: float
    windows: Windows | None


class LiveFrontEnd:
    """:class:`FrontEnd` on a live stream: where a window's raw segment lies, and what the
    segment becomes (QC, preprocessing on the offline resampler grid, window, normalisation).

    Raises
    ------
    ConfigError
        When the front end normalises per record (a stream has no record) or ``fs_hz`` is not
        a positive rate.
    SamplingRateError
        When the stream is sampled too slowly for a fitted front end (as offline).
    """

    def __init__(self, front: FrontEnd, fs_hz: float, name: str, qc_config: QCConfig) -> None:
        norm = front.normalisation
        if norm.active and norm.scope == "record":
            raise ConfigError(
                "this pipeline normalises each record by its own statistics, which a live "
                "stream does not have; use a model trained with window or fitted normalisation"
            )
        if not (is_number(fs_hz) and fs_hz > 0):
            raise ConfigError(f"{name}: sampling rate must be positive, got {fs_hz!r}")
        self.front, self.fs_hz, self.name, self.qc_config = front, float(fs_hz), name, qc_config
        if front.fitted:
            front.check_sampling_rate(Recording(np.zeros(1, np.float32), self.fs_hz, name, name))
        self.plan = resample_plan(self.fs_hz, front.rate_for(self.fs_hz))
        self.fs_out = self.plan.fs_to_hz
        self.n_win = front.n_times or round(front.config.window_s * self.fs_out)
        self.config = replace(front.config, target_fs_hz=self.fs_out)
        # One index row, built once and updated (a new DataFrame costs ~0.8 ms a window).
        self._index = pd.DataFrame(
            {c: [None] for c in WINDOW_COLUMNS} | {"record_id": [name], "subject_id": [name]}
        )

    def segment(self, out_start: int, context_out: int) -> tuple[int, int]:
        """Raw stream samples ``[start, stop)`` whose preprocessing yields outputs
        ``out_start - context_out`` to ``out_start + n_win + context_out``; ``start`` lies on
        the resampler's grid, so the segment's outputs are the offline ones."""
        num, den = self.plan.ratio  # outputs per input sample, exactly (integer arithmetic:
        down = self.plan.down  # this runs on every chunk of a stream)
        start = max(0, ((out_start - context_out) * den) // (num * down)) * down
        stop = -((-(out_start + self.n_win + context_out) * den) // num)
        return start, stop

    def window(
        self,
        raw: np.ndarray,
        ok: np.ndarray,
        seg_start: int,
        offset: int,
        out_start: int,
        start_s: float,
    ) -> LiveWindow:
        """The window whose first output sample is ``out_start`` (stream output index).

        Parameters
        ----------
        raw, ok
            Recent raw samples (µV) and their usable flags: the QC span, which ends with the
            segment from :meth:`segment`.
        seg_start
            Where that segment begins in ``raw``.
        offset
            The segment's position in the stream (its ``start``).
        out_start, start_s
            The window's first output index and its stream time (for the index).
        """
        raw = fill_unusable(raw, ok)
        report = assess(Recording(raw, self.fs_hz, self.name, self.name), self.qc_config)
        flags = tuple(f for f in report.flags if f != "too_short")  # a short span is normal
        if not ok.all():
            flags = (*flags, "garbage")
        usable = report.usable_mask[seg_start:] & ok[seg_start:]
        seg = Recording(raw[seg_start:], self.fs_hz, self.name, self.name)
        # What preprocessing reads from QC, for the segment. Without QC: as offline, but samples
        # that never arrived stay unusable.
        if self.front.qc:
            qc = QualityReport(self.name, report.flags, usable, line_freq_hz=report.line_freq_hz)
        else:
            qc = QualityReport(self.name, (), ok[seg_start:])
        processed, usable_out = preprocess_recording(seg, self.config, qc, offset=offset)
        a = out_start - processed.meta["preprocess"]["first_output"]
        data = processed.signal[a : a + self.n_win]
        frac = float(usable_out[a : a + self.n_win].mean()) if data.size == self.n_win else 0.0
        windows = None
        if data.size == self.n_win and frac >= self.config.min_usable_fraction:
            index = self._index
            index.iat[0, 3], index.iat[0, 4], index.iat[0, 7] = start_s, out_start, frac
            data = self.front.normalisation.windows(data[None, :].astype(np.float32))
            windows = Windows(data, self.fs_out, index)
        return LiveWindow(flags, report.line_freq_hz, frac, windows)
