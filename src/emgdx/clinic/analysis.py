"""Run the model over a visit's recordings and store the result, all in one transaction.

The slow part (model, explanations, report rendering) runs outside any database transaction,
in a worker process (:mod:`emgdx.clinic.workers`) unless isolation is switched off; the result
is then written in a single transaction. An analysis that fails (an error, a crash of the
worker, a timeout) is stored as a failed analysis with its reason and nothing else.
"""

from __future__ import annotations

import dataclasses
import html
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emgdx.clinic.ingest import UploadedFile, read_stored
from emgdx.clinic.models import Analysis, Figure, RecordResult, Visit
from emgdx.clinic.workers import (
    AnalysisFailed,
    AnalysisJob,
    AnalysisProduct,
    WorkerPool,
    describe_failure,
    run_job,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from emgdx.pipeline import Pipeline
    from emgdx.report import ClinicalReport

__all__ = ["AnalysisFailed", "AnalysisRunner", "finite"]


def finite(value: Any) -> float | None:
    """A float, or None for NaN/inf (JSON and PostgreSQL have no NaN)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _measure_rows(frame: Any) -> list[dict[str, Any]]:
    if frame is None or len(frame) == 0:
        return []
    return [
        {
            "measure": str(row["measure"]),
            "label": str(row["label"]),
            "unit": str(row["unit"]),
            "value": finite(row["value"]),
            "ref_low": finite(row["low"]),
            "ref_high": finite(row["high"]),
            "status": str(row["flag"]),
        }
        for _, row in frame.iterrows()
    ]


def _probs_and_intervals(
    names: Sequence[str], probs: Mapping[str, Any], intervals: Mapping[str, Any]
) -> dict[str, Any]:
    """Each class's probability and interval as stored (NaN as None)."""
    return {
        "probs": {n: finite(probs.get(n)) for n in names},
        "intervals": {n: [finite(b) for b in intervals.get(n, (math.nan,) * 2)] for n in names},
    }


def visit_measures(report: ClinicalReport) -> dict[str, float | None]:
    """Each quantitative measure averaged over the visit's analysed records."""
    values: dict[str, list[float]] = {}
    for section in report.records:
        for row in _measure_rows(section.measures):
            if row["value"] is not None:
                values.setdefault(row["measure"], []).append(row["value"])
    return {k: float(np.mean(v)) for k, v in values.items()}


class AnalysisRunner:
    """Analyses visits with one pipeline; at most ``workers`` at the same time.

    With ``isolate`` (the default) each analysis runs in one of ``workers`` worker processes
    that load the pipeline from ``model_dir`` (or from a copy of ``pipeline`` saved under
    ``scratch_dir``); a crash or a run over ``timeout_s`` fails that analysis only. Without it,
    analyses run in the server's own process (for embedding and quick tests).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        workers: int = 1,
        explain_figures: int = 3,
        isolate: bool = True,
        model_dir: Path | None = None,
        scratch_dir: Path | None = None,
        backend: str = "auto",
        timeout_s: float = 600.0,
    ) -> None:
        self.pipeline = pipeline
        self.explain_figures = explain_figures
        # The model already uses every core; more parallel analyses only queue inside torch.
        self._slots = threading.BoundedSemaphore(workers)
        self.model_info = pipeline.identity().to_dict()
        self.pool: WorkerPool | None = None
        if isolate:
            folder = model_dir or _saved_copy(pipeline, scratch_dir, self.model_info)
            self.pool = WorkerPool(folder, size=workers, backend=backend, timeout_s=timeout_s)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def load_inputs(
        self, session: Session, visit: Visit
    ) -> tuple[list[Any], list[tuple[str, str]]]:
        """The visit's recordings as per-channel Recording objects, with (recording id, channel)."""
        recordings: list[Any] = []
        origin: list[tuple[str, str]] = []
        for stored in visit.recordings:
            files = [UploadedFile(f.filename, f.content) for f in stored.files]
            channels = read_stored(files, stored.read_options)
            for ch in channels:
                recordings.append(
                    dataclasses.replace(
                        ch,
                        subject_id=visit.patient.external_id,
                        muscle=stored.muscle or ch.muscle,
                        label=None,  # a file's own diagnosis field is not the clinic's finding
                    )
                )
                origin.append((stored.id, str(ch.channel or "ch0")))
        return recordings, origin

    def analyse(
        self,
        recordings: list[Any],
        *,
        patient: Mapping[str, str],
        visit: Mapping[str, str],
        explain: bool,
    ) -> AnalysisProduct:
        """The visit's report and its renderings, or :class:`AnalysisFailed` with the reason."""
        job = AnalysisJob(recordings, patient, visit, explain, self.explain_figures)
        if self.pool is not None:
            return self.pool.run(job)
        with self._slots:
            try:
                return run_job(self.pipeline, job)
            except Exception as exc:  # the same outcome as in a worker: a failed analysis
                raise AnalysisFailed(describe_failure(exc)) from exc

    def failed_row(self, visit_id: str, reason: str) -> Analysis:
        """A failed analysis as an (unsaved) row: the reason, and nothing that looks like a
        result."""
        page = (
            "<!doctype html><meta charset='utf-8'><title>emgdx: analysis failed</title>"
            f"<h1>Analysis failed</h1><p>{html.escape(reason)}</p>"
        )
        return Analysis(
            visit_id=visit_id,
            status="failed",
            failure=reason,
            outcome="not analysed",
            reasons=[],
            model_name=self.model_info["name"],
            model_version=self.model_info["version"],
            weights_sha256=self.model_info["weights_sha256"],
            predicted=None,
            probs={},
            intervals={},
            summary=f"Analysis failed: {reason}",
            measures={},
            report_html=page,
            report_pdf=b"",
        )

    def to_rows(
        self, visit_id: str, product: AnalysisProduct, origin: list[tuple[str, str]]
    ) -> Analysis:
        """The report as (unsaved) rows: Analysis → RecordResult → Figure."""
        report = product.report
        names = report.class_names
        verdict = report.diagnosis.visit  # one analysed record: the visit is that record
        analysis = Analysis(
            visit_id=visit_id,
            model_name=self.model_info["name"],
            model_version=self.model_info["version"],
            weights_sha256=self.model_info["weights_sha256"],
            outcome=verdict.outcome,
            reasons=list(verdict.reasons),
            predicted=verdict.predicted,
            **_probs_and_intervals(names, verdict.probs, verdict.interval),
            summary=report.summary_line,
            measures=visit_measures(report),
            report_html=product.html,
            report_pdf=product.pdf,
        )
        for position, (section, (recording_id, channel)) in enumerate(
            zip(report.records, origin, strict=True)
        ):
            result = RecordResult(
                recording_id=recording_id,
                position=position,
                channel=channel,
                outcome=section.verdict.outcome,
                reasons=list(section.verdict.reasons),
                ood_score=finite(_ood_score(report, section.record_id)),
                predicted=section.predicted,
                **_probs_and_intervals(names, section.probs, section.intervals),
                qc_flags=list(section.qc_flags),
                qc_messages=list(section.qc_messages),
                usable_fraction=float(section.usable_fraction),
                n_windows=int(section.n_windows),
                note=section.note,
                measures=_measure_rows(section.measures),
            )
            result.figures = [
                Figure(position=i, title=f.title, caption=f.caption, png=f.png)
                for i, f in enumerate(section.figures)
            ]
            analysis.records.append(result)
        return analysis


def _ood_score(report: ClinicalReport, record_id: str) -> float | None:
    rows = report.diagnosis.records
    if "ood_score" not in rows:
        return None
    match = rows.loc[rows["record_id"] == record_id, "ood_score"]
    return float(match.iloc[0]) if len(match) else None


def _saved_copy(pipeline: Pipeline, scratch_dir: Path | None, info: Mapping[str, str]) -> Path:
    """A pipeline given as an object, saved once for the worker processes to load."""
    if scratch_dir is None:
        raise ValueError("isolated analyses need the model's folder or a scratch folder")
    folder = scratch_dir / f"model-{info['weights_sha256'][:16]}"
    if not (folder / "pipeline.json").is_file():
        pipeline.save(folder, overwrite=True)
    return folder
