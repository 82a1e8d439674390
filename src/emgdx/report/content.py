"""What a clinical report says, independent of how it is rendered (HTML or PDF).

:func:`build_report` asks the pipeline for the :class:`~emgdx.diagnosis.Diagnosis` of one
visit's recordings (or a single record), explains each decision, compares quantitative measures
with the reference ranges stored in the model, and collects everything into a
:class:`ClinicalReport`; :mod:`emgdx.report.html` and :mod:`emgdx.report.pdf` only lay it out.
QC findings, probabilities, intervals and the visit's reading are the diagnosis's own: the
report computes none of them again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from emgdx.config import ProgressCallback
from emgdx.diagnosis import Diagnosis, Verdict
from emgdx.errors import ConfigError
from emgdx.frontend import flag_messages
from emgdx.recording import Cohort, Recording, Windows

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

    from emgdx.pipeline import Pipeline

__all__ = ["DISCLAIMER", "ClinicalReport", "EvidenceFigure", "RecordSection", "build_report"]

DISCLAIMER = (
    "Decision support, not a diagnosis. This report was produced automatically by emgdx from "
    "the recordings listed. It is meant to assist a qualified clinical neurophysiologist, who "
    "must interpret it together with the full clinical and electrodiagnostic examination. "
    "Probabilities are those of a statistical model trained on a limited number of subjects; "
    "they are not the probability that the patient has the disease."
)

SEGMENT_COLUMNS = ["start_s", "end_s", "share", "peak_uv"]


@dataclass
class EvidenceFigure:
    """One figure: a title, a caption and the PNG bytes."""

    title: str
    caption: str
    png: bytes


@dataclass
class RecordSection:
    """Everything the report says about one recording."""

    record_id: str
    source: str
    subject_id: str
    muscle: str
    level: str
    fs_hz: float
    duration_s: float
    qc_flags: list[str]
    qc_messages: list[str]
    usable_fraction: float
    true_label: str | None
    verdict: Verdict  # the diagnosis's reading of this record
    measures: pd.DataFrame = field(default_factory=pd.DataFrame)
    segments: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SEGMENT_COLUMNS))
    figures: list[EvidenceFigure] = field(default_factory=list)
    note: str = ""

    analysed = property(lambda self: self.verdict.judged)
    n_windows = property(lambda self: self.verdict.n_windows)
    probs = property(lambda self: self.verdict.probs)
    intervals = property(lambda self: self.verdict.interval)
    predicted = property(lambda self: self.verdict.predicted)
    window_agreement = property(lambda self: self.verdict.agreement)


@dataclass
class ClinicalReport:
    """A report for one record or one patient visit."""

    title: str
    patient: dict[str, str]
    visit: dict[str, str]
    created: str
    records: list[RecordSection]
    diagnosis: Diagnosis
    model: dict[str, Any]
    methods: str
    references: list[str]
    class_names: tuple[str, ...]
    disclaimer: str = DISCLAIMER
    #: Files that could not be read (each message names the file and the problem).
    unreadable: list[str] = field(default_factory=list)

    @property
    def not_judged(self) -> list[tuple[str, str]]:
        """``(what, why)`` for every file that could not be read and every recording that
        could not be judged: listed in the report itself, not only on a terminal."""
        out = [("unreadable file", problem) for problem in self.unreadable]
        for s in self.records:
            if not s.analysed:
                name = f"{s.record_id}" + (f" ({s.source})" if s.source else "")
                out.append((name, s.note))
        return out

    @property
    def visit_verdict(self) -> Verdict | None:
        """The visit's reading over its analysed recordings (``None`` for fewer than two)."""
        return self.diagnosis.visit if sum(r.analysed for r in self.records) > 1 else None

    # The visit's reading, or None without one (see visit_verdict).
    visit_probs = property(lambda self: getattr(self.visit_verdict, "probs", None))
    visit_intervals = property(lambda self: getattr(self.visit_verdict, "interval", None))
    visit_predicted = property(lambda self: getattr(self.visit_verdict, "predicted", None))

    @property
    def summary_line(self) -> str:
        """One sentence for the top of the report."""
        analysed = [r for r in self.records if r.analysed]
        refused = [r for r in self.records if r.verdict.outcome == "not interpretable"]
        if not analysed:
            if refused:
                reasons = self.diagnosis.visit.reasons or refused[0].verdict.reasons
                return "NOT INTERPRETABLE: " + "; ".join(reasons) + "."
            return "No recording could be analysed (see the quality findings)."
        verdict, where = self.visit_verdict, f" across {len(analysed)} recordings"
        if verdict is None or verdict.predicted is None:
            verdict, where = analysed[0].verdict, ""
        assert verdict.predicted is not None
        bounds = verdict.interval.get(verdict.predicted, (math.nan, math.nan))
        line = (
            f"Most consistent with {verdict.predicted.upper()} (model probability "
            f"{verdict.probs[verdict.predicted]:.2f}{_interval_text(bounds)}){where}."
        )
        if refused:
            line += f" {len(refused)} recording(s) not interpretable (listed below)."
        if verdict.warnings:
            line += " Caution: " + "; ".join(verdict.warnings) + "."
        return line


def _interval_text(bounds: tuple[float, float]) -> str:
    lo, hi = bounds
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f", 95 % interval {lo:.2f}–{hi:.2f}"


# --------------------------------------------------------------------------- building


def _png(fig: MplFigure, dpi: int = 130) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _model_info(pipeline: Pipeline, identity: dict[str, str]) -> dict[str, Any]:
    assert pipeline.model_ is not None
    ref = pipeline.reference_ or {}
    return {
        "name": identity["name"],
        "kind": pipeline.kind,
        "backend": identity["backend"],
        "task": identity["task"],
        "classes": list(pipeline.class_names),
        "emgdx_version": identity["version"],
        "weights_sha256": identity["weights_sha256"],
        "training_data_sha256": pipeline.data_hash_ or "",
        "n_training_subjects": len(pipeline.train_subjects_),
        "n_parameters": pipeline.model_.n_parameters,
        "reference": (
            f"{ref.get('n_subjects')} healthy subjects, {ref.get('n_records')} records"
            if ref.get("available")
            else ref.get("reason", "none stored with this model")
        ),
    }


def _record_section(
    pipeline: Pipeline,
    diagnosis: Diagnosis,
    recording: Recording,
    row: pd.Series,
    *,
    explain_method: str | None,
    n_figures: int,
) -> RecordSection:
    from emgdx.reference import compare_to_reference, record_measures

    rid = recording.record_id
    flags = [f for f in str(row.get("qc_flags") or "").split(";") if f]
    level = str(recording.meta.get("level") or "")
    usable = row.get("usable_fraction")
    section = RecordSection(
        record_id=rid,
        # The file's name, not its path: a report should not reveal the server's folders.
        source=Path(recording.source).name if recording.source else "",
        subject_id=str(recording.subject_id or ""),
        muscle=str(recording.muscle or ""),
        level=level,
        fs_hz=float(recording.fs_hz),
        duration_s=float(recording.signal.size / recording.fs_hz),
        qc_flags=flags,
        qc_messages=flag_messages(flags),
        usable_fraction=float(usable) if pd.notna(usable) else 1.0,
        true_label=recording.label,
        verdict=diagnosis.record(rid),
    )
    if not section.analysed:
        reasons = section.verdict.reasons
        if reasons:
            section.note = "Not interpretable: " + "; ".join(reasons) + "."
            return section
        why = diagnosis.problems.get(rid) or (
            f"no usable {pipeline.preprocess.window_s:g}-s window after quality control."
        )
        section.note = f"Not analysed: {why}"
        return section
    if section.verdict.warnings:
        section.note = "Caution: " + "; ".join(section.verdict.warnings) + "."
    assert diagnosis.windows is not None
    mine = (diagnosis.window_index["record_id"].astype(str) == rid).to_numpy()
    windows, probs = diagnosis.windows.select(mine), diagnosis.window_probs[mine]
    if pipeline.windows_in_uv:
        per_record = record_measures(windows, max_windows_per_record=None)
        if len(per_record):
            ref = pipeline.reference_
            section.measures = compare_to_reference(per_record.iloc[0], ref, level or None)
    explains = getattr(pipeline.model_, "explanation", None)
    if explain_method and explains == "attribution" and n_figures > 0:
        section.figures, section.segments = _evidence(
            pipeline, windows, probs, explain_method, n_figures
        )
    elif explains == "feature_importance" and n_figures > 0:
        section.figures = _feature_figure(pipeline)
    return section


def _evidence(
    pipeline: Pipeline, windows: Windows, probs: np.ndarray, method: str, n_figures: int
) -> tuple[list[EvidenceFigure], pd.DataFrame]:
    from emgdx.explain import attribute_record, attribute_windows, top_segments
    from emgdx.explain.figures import (
        figure_image_evidence,
        figure_record_evidence,
        figure_top_segments,
    )

    explanation = attribute_record(pipeline, windows, method, probs=probs)  # type: ignore[arg-type]
    segments = top_segments(explanation, k=3)
    figs = [
        EvidenceFigure(
            "Evidence on the signal",
            f"Preprocessed signal coloured by the evidence for '{explanation.target_name}' "
            f"({method.replace('_', ' ')}); the lower panel is the evidence over time and the "
            "numbered boxes are the most influential 100-ms segments.",
            _png(figure_record_evidence(explanation, segments=segments)),
        )
    ]
    if n_figures > 1 and len(segments):
        figs.append(
            EvidenceFigure(
                "Most influential segments",
                "The numbered segments zoomed in (50 ms either side); the percentage is each "
                "segment's share of all evidence in the record.",
                _png(figure_top_segments(explanation, segments=segments)),
            )
        )
    if n_figures > 2 and explanation.windows.inputs.ndim == 4:
        # The window that holds the top segment, with Grad-CAM over its time-frequency image.
        starts = explanation.window_starts_s
        best = 0
        if len(segments):
            centre = 0.5 * (segments["start_s"].iloc[0] + segments["end_s"].iloc[0])
            best = int(np.argmin(np.abs(starts + windows.window_s / 2 - centre)))
        cam = attribute_windows(
            pipeline, windows, "gradcam", target=explanation.target, probs=probs
        )
        kind = "scalogram" if pipeline.representation_name == "cwt" else "spectrogram"
        figs.append(
            EvidenceFigure(
                f"Evidence on the {kind}",
                f"The model's input for the window with the most evidence ({kind}), and the same "
                "image with the Grad-CAM map; the white contour encloses the half-maximum.",
                _png(figure_image_evidence(explanation.windows, best, heat=cam)),
            )
        )
    return figs, segments


def _feature_figure(pipeline: Pipeline) -> list[EvidenceFigure]:
    from emgdx.explain import feature_importance
    from emgdx.explain.figures import figure_feature_importance

    try:
        importance = feature_importance(pipeline, method="model")
    except ConfigError:
        return []
    return [
        EvidenceFigure(
            "What the model relies on",
            "The model's own feature importance (not specific to this record).",
            _png(figure_feature_importance(importance)),
        )
    ]


def _unique_ids(recs: list[Recording]) -> list[Recording]:
    """The recordings with distinct record ids (two uploads may share a file name)."""
    seen: dict[str, int] = {}
    out = []
    for rec in recs:
        n = seen[rec.record_id] = seen.get(rec.record_id, 0) + 1
        out.append(rec if n == 1 else dataclasses.replace(rec, record_id=f"{rec.record_id} ({n})"))
    return out


def build_report(
    pipeline: Pipeline,
    recordings: Recording | Sequence[Recording] | Cohort,
    *,
    patient: Mapping[str, str] | None = None,
    visit: Mapping[str, str] | None = None,
    explain_method: str | None = "integrated_gradients",
    n_figures: int = 3,
    title: str | None = None,
    unreadable: Sequence[str] = (),
    on_progress: ProgressCallback | None = None,
) -> ClinicalReport:
    """Analyse, explain and summarise the recordings of one patient visit.

    Parameters
    ----------
    pipeline
        A fitted pipeline.
    recordings
        One recording (a record report) or several (a visit report).
    patient, visit
        Identifiers shown in the header (e.g. ``{"id": ..., "name": ...}``, ``{"date": ...}``).
    explain_method
        Attribution method of the evidence figures (torch models); None for no figures.
    n_figures
        Figures per record (1: signal; 2: + zoomed segments; 3: + time-frequency image).
    title
        Report title.
    unreadable
        Messages about files of this visit that could not be read: listed in the report.
    on_progress
        ``on_progress(done, total)``: the diagnosis (step 1), then each record's section.
    """
    from emgdx.report.methods import methods_paragraph

    if not pipeline.fitted:
        raise ConfigError("the report needs a fitted pipeline (train or load one)")
    recs = [recordings] if isinstance(recordings, Recording) else list(recordings)
    if not recs:
        raise ConfigError("no recordings to report on")
    recs = _unique_ids(recs)
    total = len(recs) + 1
    if on_progress is not None:
        on_progress(0, total)
    diagnosis = pipeline.predict(recs, keep_windows=True)
    if on_progress is not None:
        on_progress(1, total)
    explains_on_signal = getattr(pipeline.model_, "explanation", None) == "attribution"
    rows = diagnosis.records.set_index("record_id")
    sections = []
    for i, r in enumerate(recs, start=2):
        sections.append(
            _record_section(
                pipeline,
                diagnosis,
                r,
                rows.loc[r.record_id],
                explain_method=explain_method,
                n_figures=n_figures,
            )
        )
        if on_progress is not None:
            on_progress(i, total)
    names = tuple(pipeline.class_names)
    fs = {s.fs_hz for s in sections}
    methods, references = methods_paragraph(
        pipeline,
        explain_method=explain_method if explains_on_signal else None,
        source_fs_hz=fs.pop() if len(fs) == 1 else None,
    )
    pat = {k: str(v) for k, v in (patient or {}).items()}
    if not pat and len({s.subject_id for s in sections}) == 1:
        pat = {"id": sections[0].subject_id}
    return ClinicalReport(
        title=title or ("EMG visit report" if len(sections) > 1 else "EMG record report"),
        patient=pat,
        visit={k: str(v) for k, v in (visit or {}).items()},
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        records=sections,
        diagnosis=diagnosis,
        model=_model_info(pipeline, diagnosis.model.to_dict()),
        methods=methods,
        references=references,
        class_names=names,
        unreadable=list(unreadable),
    )
