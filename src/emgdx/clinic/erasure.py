"""Erasure: delete a patient, a visit or a recording with everything derived from it, and
say so in the audit log.

A clinic must be able to honour an erasure request. Deleting a record's files alone would
leave its traces in the analyses (their reports, figures and per-record results hold what
was read from it) and in the stored answers of idempotent requests. So:

* a **patient** goes with its visits, their recordings and their analyses;
* a **visit** goes with its recordings and analyses;
* a **recording** goes with every analysis that read it (a report of a visit shows every
  record it analysed); the visit's other recordings stay;
* every stored idempotent answer that names a deleted id goes too;
* an :class:`~emgdx.clinic.models.AuditEvent` records who, when, what (the target's id and
  the counts) and nothing of the patient's data. It is written in the same transaction, so
  the deletion and its log entry are committed together or not at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from emgdx.clinic import scoped
from emgdx.clinic.models import (
    Analysis,
    AuditEvent,
    Base,
    IdempotentRequest,
    Patient,
    Recording,
    RecordResult,
    Visit,
)

__all__ = ["ErasureTarget", "erase"]

ErasureTarget = Literal["patient", "visit", "recording"]


@dataclass(frozen=True)
class _Doomed:
    ids: set[str]
    counts: dict[str, int]


def _of_visits(visits: list[Visit]) -> _Doomed:
    recordings = [r for v in visits for r in v.recordings]
    analyses = [a for v in visits for a in v.analyses]
    ids = {v.id for v in visits} | {r.id for r in recordings} | {a.id for a in analyses}
    counts = {"visits": len(visits), "recordings": len(recordings), "analyses": len(analyses)}
    return _Doomed(ids, counts)


def erase(
    session: Session, clinic_id: str, target: ErasureTarget, target_id: str, *, actor: str
) -> dict[str, int]:
    """Delete ``target`` and everything derived from it (module docstring) in ``session``'s
    transaction, with its audit event; returns the counts of what went.

    Raises
    ------
    emgdx.clinic.scoped.NotFound
        No such target in this clinic.
    """
    if target == "patient":
        patient = scoped.patient(session, clinic_id, target_id)
        doomed = _of_visits(list(patient.visits))
        doomed = _Doomed(doomed.ids | {patient.id}, {"patients": 1, **doomed.counts})
        _delete(session, Patient, {patient.id})
    elif target == "visit":
        visit = scoped.visit(session, clinic_id, target_id)
        doomed = _of_visits([visit])
        _delete(session, Visit, {visit.id})
    else:
        recording = scoped.recording(session, clinic_id, target_id)
        readers = set(
            session.scalars(
                select(RecordResult.analysis_id).where(RecordResult.recording_id == recording.id)
            )
        )
        doomed = _Doomed({recording.id} | readers, {"recordings": 1, "analyses": len(readers)})
        _delete(session, Analysis, readers)
        _delete(session, Recording, {recording.id})
    stored = session.scalars(
        select(IdempotentRequest).where(IdempotentRequest.clinic_id == clinic_id)
    ).all()
    answers = [row for row in stored if doomed.ids & _ids_in(row.response)]
    for row in answers:
        session.delete(row)
    counts = {**doomed.counts, "stored_answers": len(answers)}
    session.add(
        AuditEvent(
            clinic_id=clinic_id,
            actor=actor[:300],
            action=f"delete {target}",
            target_id=target_id,
            details=counts,
        )
    )
    session.flush()
    return counts


def _delete(session: Session, table: type[Base], ids: set[str]) -> None:
    """One DELETE statement; the database's ON DELETE CASCADE removes what hangs on the rows
    (visits, recordings, files, analyses, results, figures). Deleting object by object, the
    session and the database's cascades would each try to remove the same rows."""
    if ids:
        session.execute(
            delete(table).where(table.id.in_(ids)),  # type: ignore[attr-defined]
            execution_options={"synchronize_session": False},
        )
    session.expire_all()


def _ids_in(response: object) -> set[str]:
    """Every ``id``-like string value in a stored answer (its own id and those it links)."""
    found: set[str] = set()

    def walk(node: object, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and (key == "id" or key.endswith("_id")):
            found.add(node)

    walk(response if not isinstance(response, str) else json.loads(response))
    return found
