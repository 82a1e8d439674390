"""The :class:`Diagnosis`: what a model says about recordings, at every level, and who said it.

Window probabilities are aggregated by the pipeline's rule (``"mean"`` probability or
``"vote"``, :func:`emgdx.evaluation.aggregate.aggregate`, the one implementation) to records,
subjects and the visit, each with a bootstrap interval from the same rule
(:func:`~emgdx.evaluation.aggregate.bootstrap_interval`): a record's over its windows (blocks of
overlapping windows), a subject's or visit's over its records (from
:data:`MIN_RECORDS_FOR_CI` records on; fewer say nothing about spread). The interval shows how
consistent the unit is, not the between-patient uncertainty.

:meth:`emgdx.pipeline.Pipeline.predict` makes one; the clinical report, the clinic, the CLI and
the live monitor (a stream summarised as one record) read it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from emgdx.evaluation.aggregate import aggregate, bootstrap_interval, score_columns

if TYPE_CHECKING:
    from emgdx.recording import Windows

__all__ = ["MIN_RECORDS_FOR_CI", "Diagnosis", "ModelIdentity", "Verdict"]

#: Records a subject or visit needs before its probabilities get a bootstrap interval.
MIN_RECORDS_FOR_CI = 3


@dataclass(frozen=True)
class ModelIdentity:
    """Which model gave a diagnosis: name, emgdx version, weights hash and how it ran."""

    name: str
    version: str
    weights_sha256: str
    backend: str
    task: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Verdict:
    """One unit's reading (a record, a subject or a visit); NaN scores when not judged."""

    probs: dict[str, float]
    interval: dict[str, tuple[float, float]]
    predicted: str | None
    n_windows: int
    n_records: int
    agreement: float = math.nan  # share of the members that voted for the prediction

    @property
    def judged(self) -> bool:
        return self.predicted is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _verdict(
    names: Sequence[str],
    scores: np.ndarray,
    members: np.ndarray,
    bounds: np.ndarray,
    n_windows: int,
    n_records: int,
) -> Verdict:
    top = int(np.argmax(scores))
    return Verdict(
        probs={c: float(p) for c, p in zip(names, scores, strict=True)},
        interval={c: (float(b[0]), float(b[1])) for c, b in zip(names, bounds, strict=True)},
        predicted=names[top],
        n_windows=n_windows,
        n_records=n_records,
        agreement=float(np.mean(np.argmax(members, axis=1) == top)),
    )


def _unjudged(names: Sequence[str], n_records: int = 0) -> Verdict:
    nan = math.nan
    return Verdict({c: nan for c in names}, {c: (nan, nan) for c in names}, None, 0, n_records)


@dataclass
class Diagnosis:
    """Class probabilities at window, record, subject and visit level, with intervals, the
    records' QC findings and problems, and the model's identity.

    Build it with :meth:`from_windows`; read :attr:`records` (one row per record, also for
    records that yielded no window), :attr:`subjects`, :attr:`visit` and :meth:`record`.
    """

    class_names: tuple[str, ...]
    task: str
    aggregation: str
    model: ModelIdentity
    window_probs: np.ndarray
    window_index: pd.DataFrame
    records: pd.DataFrame
    subjects: pd.DataFrame
    record_verdicts: dict[str, Verdict]
    problems: dict[str, str] = field(default_factory=dict)
    windows: Windows | None = None

    @classmethod
    def from_windows(
        cls,
        probs: np.ndarray,
        index: pd.DataFrame,
        *,
        class_names: Sequence[str],
        task: str,
        aggregation: str,
        model: ModelIdentity,
        block: int = 1,
        base: pd.DataFrame | None = None,
        qc: pd.DataFrame | None = None,
        problems: Mapping[str, str] | None = None,
        windows: Windows | None = None,
    ) -> Diagnosis:
        """Aggregate window probabilities ``[n, n_classes]`` (rows of ``index``).

        Parameters
        ----------
        block
            Windows per bootstrap block (window length / hop: overlapping windows).
        base
            ``record_id, subject_id, label`` of every record asked about (records without a
            window get a row with NaN scores); default: the records in ``index``.
        qc
            Per-record QC columns (``record_id``, ``qc_flags``, ...) joined to the records.
        problems
            ``record_id -> why it was not judged``.
        """
        names = tuple(class_names)
        cols = score_columns(names)
        method: Any = aggregation
        ids = ["record_id", "subject_id", "label"]
        columns = [*ids, *cols, "predicted", "n_windows"]
        if len(index):
            table = aggregate(probs, index, level="record", method=method, task=task)[columns]
        else:
            table = pd.DataFrame(columns=columns)
        base = (
            (table if base is None else base)[ids]
            .astype({"record_id": str, "subject_id": str})
            .reset_index(drop=True)
        )
        records = base.merge(table.drop(columns=ids[1:]), on="record_id", how="left")
        records["n_windows"] = records["n_windows"].fillna(0).astype(np.int64)
        if qc is not None:
            records = records.merge(qc, on="record_id", how="left")
        records["confidence"] = records[cols].max(axis=1)
        problems = dict(problems or {})
        records["note"] = [problems.get(r, "") for r in records["record_id"]]
        verdicts: dict[str, Verdict] = {}
        rec_of_window = index["record_id"].astype(str).to_numpy() if len(index) else np.array([])
        arr = np.asarray(probs, dtype=np.float64)
        for row in records.itertuples(index=False):
            rid = str(row.record_id)
            members = arr[rec_of_window == rid]
            if not len(members):
                verdicts[rid] = _unjudged(names, 1)
                continue
            scores = np.array([getattr(row, f"p_{c}") for c in names], dtype=np.float64)
            bounds = bootstrap_interval(members, method, block=block)
            verdicts[rid] = _verdict(names, scores, members, bounds, len(members), 1)
        for c in names:
            records[f"low_{c}"] = [verdicts[str(r)].interval[c][0] for r in records["record_id"]]
            records[f"high_{c}"] = [verdicts[str(r)].interval[c][1] for r in records["record_id"]]
        records["agreement"] = [verdicts[str(r)].agreement for r in records["record_id"]]
        subjects = (
            aggregate(probs, index, level="subject", method=method, task=task)
            if len(index)
            else pd.DataFrame(columns=["subject_id", *cols, "predicted"])
        )
        return cls(
            names,
            task,
            aggregation,
            model,
            arr,
            index.reset_index(drop=True),
            records,
            subjects,
            verdicts,
            problems,
            windows,
        )

    # ---- reading ------------------------------------------------------------------------------

    def record(self, record_id: str) -> Verdict:
        """The verdict on one record (raises ``KeyError`` for a record not asked about)."""
        return self.record_verdicts[str(record_id)]

    def _over_records(self, record_ids: Sequence[str]) -> Verdict:
        judged = [r for r in record_ids if self.record_verdicts[r].judged]
        if not judged:
            return _unjudged(self.class_names, len(record_ids))
        if len(judged) == 1:
            return self.record_verdicts[judged[0]]
        names = self.class_names
        members = np.array([[self.record_verdicts[r].probs[c] for c in names] for r in judged])
        method: Any = self.aggregation
        frame = pd.DataFrame({"record_id": judged, "subject_id": "unit", "label": None})
        scores = aggregate(members, frame, level="subject", method=method, task=self.task)
        score = scores[score_columns(names)].to_numpy()[0]
        bounds = (
            bootstrap_interval(members, method)
            if len(judged) >= MIN_RECORDS_FOR_CI
            else np.full((len(names), 2), np.nan)
        )
        n_win = sum(self.record_verdicts[r].n_windows for r in judged)
        return _verdict(names, score, members, bounds, n_win, len(judged))

    def subject(self, subject_id: str) -> Verdict:
        """The verdict on one subject (over its judged records)."""
        ids = self.records.loc[self.records["subject_id"] == str(subject_id), "record_id"]
        return self._over_records([str(r) for r in ids])

    @property
    def visit(self) -> Verdict:
        """All records together, as one visit (whatever their subject ids say)."""
        return self._over_records([str(r) for r in self.records["record_id"]])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: model, records (with intervals, QC, notes) and the visit."""
        return {
            "model": self.model.to_dict(),
            "classes": list(self.class_names),
            "aggregation": self.aggregation,
            "records": self.records.to_dict(orient="records"),
            "visit": self.visit.to_dict(),
            "problems": dict(self.problems),
        }
