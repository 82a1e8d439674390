"""Rows of one clinic. Every lookup joins up to ``patient.clinic_id``, so another clinic's
row is :class:`NotFound` exactly like one that does not exist; the API answers it with 404,
the CLI with an error line."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from emgdx.clinic.models import Analysis, Patient, Recording, Visit

__all__ = ["NotFound", "analysis", "patient", "recording", "visit"]

_VisitChild = TypeVar("_VisitChild", Analysis, Recording)


class NotFound(LookupError):
    """No such row in this clinic; ``what`` names its kind ("patient", "visit", ...)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def patient(session: Session, clinic_id: str, patient_id: str) -> Patient:
    row = session.scalar(
        select(Patient).where(Patient.id == patient_id, Patient.clinic_id == clinic_id)
    )
    if row is None:
        raise NotFound("patient")
    return row


def visit(session: Session, clinic_id: str, visit_id: str) -> Visit:
    """The visit, with its recordings and their files loaded."""
    row = session.scalar(
        select(Visit)
        .join(Patient)
        .where(Visit.id == visit_id, Patient.clinic_id == clinic_id)
        .options(selectinload(Visit.recordings).selectinload(Recording.files))
    )
    if row is None:
        raise NotFound("visit")
    return row


def _of_visit(
    session: Session, model: type[_VisitChild], object_id: str, clinic_id: str, what: str
) -> _VisitChild:
    row = session.scalar(
        select(model)
        .join(Visit)
        .join(Patient)
        .where(model.id == object_id, Patient.clinic_id == clinic_id)
    )
    if row is None:
        raise NotFound(what)
    return row


def analysis(session: Session, clinic_id: str, analysis_id: str) -> Analysis:
    return _of_visit(session, Analysis, analysis_id, clinic_id, "analysis")


def recording(session: Session, clinic_id: str, recording_id: str) -> Recording:
    return _of_visit(session, Recording, recording_id, clinic_id, "recording")
