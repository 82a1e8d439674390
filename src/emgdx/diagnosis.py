"""The :class:`Diagnosis`: what a model says about recordings, at every level, and who said it.

Window probabilities are aggregated by the pipeline's rule (``"mean"`` probability or
``"vote"``, :func:`emgdx.evaluation.aggregate.aggregate`, the one implementation) to records,
subjects and the visit, each with a bootstrap interval from the same rule
(:func:`~emgdx.evaluation.aggregate.bootstrap_interval`): a record's over its windows (blocks of
overlapping windows), a subject's or visit's over its records (from
:data:`MIN_RECORDS_FOR_CI` records on; fewer say nothing about spread). The interval shows how
consistent the unit is, not the between-patient uncertainty, and it is never narrower than a
Wilson score interval for the unit's probability from its independent evidence (a record's
non-overlapping windows; a subject's or visit's records), so that a unit judged on little
evidence never shows "1.00 (1.00-1.00)".

A record can also be **not interpretable**: its QC flags say it is not needle EMG one can judge
(:data:`emgdx.quality.NOT_INTERPRETABLE_FLAGS`), or it is far outside the training distribution
(:mod:`emgdx.ood`). Such a record gets no probability, its reasons instead; it takes no part in
its subject's or the visit's reading, and a visit with nothing but such records is itself not
interpretable, with their reasons. A record above the distribution's threshold but not far
beyond it is judged with a warning.

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
from emgdx.quality import not_interpretable_reasons

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
    #: Why the unit is not interpretable (empty when it is, or when it had no window at all).
    reasons: tuple[str, ...] = ()
    #: Cautions that come with a reading (e.g. a record unlike the training data).
    warnings: tuple[str, ...] = ()

    @property
    def judged(self) -> bool:
        return self.predicted is not None

    @property
    def outcome(self) -> str:
        """``"judged"``, ``"not interpretable"`` (see :attr:`reasons`) or ``"not analysed"``."""
        if self.judged:
            return "judged"
        return "not interpretable" if self.reasons else "not analysed"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: z of the 95 % Wilson interval.
_Z = 1.959964


def wilson_interval(p: np.ndarray, n_eff: float) -> np.ndarray:
    """95 % Wilson score intervals ``[k, 2]`` for probabilities ``p`` seen on ``n_eff``
    independent units."""
    n = max(float(n_eff), 1.0)
    z2 = _Z * _Z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return np.stack([np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)], axis=1)


def _widened(bounds: np.ndarray, scores: np.ndarray, n_eff: float) -> np.ndarray:
    """The hull of the bootstrap interval (NaN: none) and the Wilson interval."""
    wilson = wilson_interval(np.clip(scores, 0, 1), n_eff)
    lo = np.where(np.isfinite(bounds[:, 0]), np.minimum(bounds[:, 0], wilson[:, 0]), wilson[:, 0])
    hi = np.where(np.isfinite(bounds[:, 1]), np.maximum(bounds[:, 1], wilson[:, 1]), wilson[:, 1])
    return np.stack([lo, hi], axis=1)


def _verdict(
    names: Sequence[str],
    scores: np.ndarray,
    members: np.ndarray,
    bounds: np.ndarray,
    n_windows: int,
    n_records: int,
    n_eff: float,
    warnings: tuple[str, ...] = (),
) -> Verdict:
    top = int(np.argmax(scores))
    bounds = _widened(bounds, scores, n_eff)
    return Verdict(
        probs={c: float(p) for c, p in zip(names, scores, strict=True)},
        interval={c: (float(b[0]), float(b[1])) for c, b in zip(names, bounds, strict=True)},
        predicted=names[top],
        n_windows=n_windows,
        n_records=n_records,
        agreement=float(np.mean(np.argmax(members, axis=1) == top)),
        warnings=warnings,
    )


def _unjudged(names: Sequence[str], n_records: int = 0, reasons: Sequence[str] = ()) -> Verdict:
    nan = math.nan
    return Verdict(
        {c: nan for c in names},
        {c: (nan, nan) for c in names},
        None,
        0,
        n_records,
        reasons=tuple(reasons),
    )


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


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
        ood: Mapping[str, float] | None = None,
        ood_limits: tuple[float, float] | None = None,
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
            Per-record QC columns (``record_id``, ``qc_flags``, ...) joined to the records;
            flags in :data:`emgdx.quality.NOT_INTERPRETABLE_FLAGS` make a record not
            interpretable.
        problems
            ``record_id -> why it was not judged``.
        ood, ood_limits
            ``record_id -> out-of-distribution score`` and the ``(threshold, refusal)``
            levels: above the threshold a record is judged with a warning, above the refusal
            level it is not interpretable.
        """
        names = tuple(class_names)
        cols = score_columns(names)
        method: Any = aggregation
        ids = ["record_id", "subject_id", "label"]
        arr = np.asarray(probs, dtype=np.float64)
        index = index.reset_index(drop=True)
        rec_of_window = index["record_id"].astype(str).to_numpy() if len(index) else np.array([])
        base = (
            (index if base is None else base)[ids]
            .drop_duplicates("record_id")
            .astype({"record_id": str, "subject_id": str})
            .reset_index(drop=True)
        )
        records = base
        if qc is not None:
            records = records.merge(qc, on="record_id", how="left")
        # ---- which records can be judged at all
        ood = dict(ood or {})
        reasons: dict[str, tuple[str, ...]] = {}
        warnings: dict[str, tuple[str, ...]] = {}
        flags_of = (
            dict(zip(records["record_id"], records["qc_flags"].fillna(""), strict=True))
            if "qc_flags" in records
            else {}
        )
        for rid in records["record_id"]:
            why = list(not_interpretable_reasons(str(flags_of.get(rid, ""))))
            score = ood.get(rid, math.nan)
            if ood_limits is not None and math.isfinite(score):
                threshold, refusal = ood_limits
                if score > refusal:
                    why.append(
                        "unlike any recording the model was trained on (out-of-distribution "
                        f"score {score:.1f}, refused above {refusal:.1f})"
                    )
                elif score > threshold:
                    warnings[rid] = (
                        "unlike most training recordings (out-of-distribution score "
                        f"{score:.1f} > {threshold:.1f}): read with caution",
                    )
            if why:
                reasons[rid] = tuple(why)
        used = ~np.isin(rec_of_window, list(reasons)) if len(index) else np.zeros(0, bool)
        used_probs, used_index = arr[used], index.loc[used].reset_index(drop=True)
        columns = [*ids, *cols, "predicted", "n_windows"]
        if len(used_index):
            table = aggregate(used_probs, used_index, level="record", method=method, task=task)
            table = table[columns]
        else:
            table = pd.DataFrame(columns=columns)
        records = records.merge(table.drop(columns=ids[1:]), on="record_id", how="left")
        records["n_windows"] = records["n_windows"].fillna(0).astype(np.int64)
        records["confidence"] = records[cols].max(axis=1)
        problems = dict(problems or {})
        records["ood_score"] = [ood.get(r, math.nan) for r in records["record_id"]]
        records["interpretable"] = [r not in reasons for r in records["record_id"]]
        records["reasons"] = ["; ".join(reasons.get(r, ())) for r in records["record_id"]]
        records["warnings"] = ["; ".join(warnings.get(r, ())) for r in records["record_id"]]
        records["note"] = [
            f"not interpretable: {'; '.join(reasons[r])}" if r in reasons else problems.get(r, "")
            for r in records["record_id"]
        ]
        verdicts: dict[str, Verdict] = {}
        used_rec = rec_of_window[used] if len(index) else np.array([])
        for row in records.itertuples(index=False):
            rid = str(row.record_id)
            members = used_probs[used_rec == rid]
            if not len(members):
                verdicts[rid] = _unjudged(names, 1, reasons.get(rid, ()))
                continue
            scores = np.array([getattr(row, f"p_{c}") for c in names], dtype=np.float64)
            bounds = bootstrap_interval(members, method, block=block)
            verdicts[rid] = _verdict(
                names,
                scores,
                members,
                bounds,
                len(members),
                1,
                n_eff=len(members) / max(block, 1),
                warnings=warnings.get(rid, ()),
            )
        for c in names:
            records[f"low_{c}"] = [verdicts[str(r)].interval[c][0] for r in records["record_id"]]
            records[f"high_{c}"] = [verdicts[str(r)].interval[c][1] for r in records["record_id"]]
        records["agreement"] = [verdicts[str(r)].agreement for r in records["record_id"]]
        records["outcome"] = [verdicts[str(r)].outcome for r in records["record_id"]]
        subjects = (
            aggregate(used_probs, used_index, level="subject", method=method, task=task)
            if len(used_index)
            else pd.DataFrame(columns=["subject_id", *cols, "predicted"])
        )
        return cls(
            names,
            task,
            aggregation,
            model,
            arr,
            index,
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
            reasons = _unique([w for r in record_ids for w in self.record_verdicts[r].reasons])
            return _unjudged(self.class_names, len(record_ids), reasons)
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
        warnings = _unique([w for r in judged for w in self.record_verdicts[r].warnings])
        return _verdict(names, score, members, bounds, n_win, len(judged), len(judged), warnings)

    def subject(self, subject_id: str) -> Verdict:
        """The verdict on one subject (over its judged records)."""
        ids = self.records.loc[self.records["subject_id"] == str(subject_id), "record_id"]
        return self._over_records([str(r) for r in ids])

    @property
    def visit(self) -> Verdict:
        """All records together, as one visit (whatever their subject ids say)."""
        return self._over_records([str(r) for r in self.records["record_id"]])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: model, records (with intervals, QC, notes, outcome) and the
        visit (with its ``outcome``)."""
        visit = self.visit
        return {
            "model": self.model.to_dict(),
            "classes": list(self.class_names),
            "aggregation": self.aggregation,
            "records": self.records.to_dict(orient="records"),
            "visit": {**visit.to_dict(), "outcome": visit.outcome},
            "problems": dict(self.problems),
        }
