"""The clinic's data as SQLAlchemy 2 models: clinics → patients → visits → recordings → analyses.

Every row a clinic owns hangs off its ``clinic_id`` (directly or through its patient), and every
query of the API goes through :mod:`emgdx.clinic.repository`, which filters by it: one clinic
can never read another's patients. Uploaded files are stored in the database itself (not on
disk), so an upload or analysis is one transaction, a backup is one database dump, and no
client-supplied name ever becomes a path on the server.

The schema is created by the Alembic migrations in :mod:`emgdx.clinic.migrations`, never by
``create_all``; a test checks that the migrations and these models agree.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship

__all__ = [
    "Analysis",
    "ApiToken",
    "AuditEvent",
    "Base",
    "Clinic",
    "Figure",
    "IdempotentRequest",
    "Patient",
    "RecordResult",
    "Recording",
    "RecordingFile",
    "Visit",
]

# Named constraints so that migrations can alter them on every backend (SQLite batch mode).
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    """A random UUID: ids cannot be guessed or enumerated."""
    return str(uuid.uuid4())


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps the offset; SQLite stores text without one and returns naive values,
    which clients would read as local time. Values are stored in UTC and come back aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give UTC-aware datetimes to the database")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Clinic(Base):
    __tablename__ = "clinic"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="clinic")


class ApiToken(Base):
    """An API token. Only its SHA-256 is stored; the token itself is shown once, at creation."""

    __tablename__ = "api_token"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, so an administrator can tell tokens apart without the secret.
    prefix: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    clinic: Mapped[Clinic] = relationship(back_populates="tokens")


class Patient(Base):
    __tablename__ = "patient"
    __table_args__ = (UniqueConstraint("clinic_id", "external_id", name="clinic_external_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"), index=True)
    # The clinic's own identifier (e.g. its medical record number).
    external_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    birth_year: Mapped[int | None] = mapped_column(Integer)
    sex: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)

    visits: Mapped[list[Visit]] = relationship(
        back_populates="patient", order_by="Visit.visit_date", cascade="all, delete-orphan"
    )


class Visit(Base):
    __tablename__ = "visit"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), index=True
    )
    visit_date: Mapped[dt.date] = mapped_column(Date)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)

    patient: Mapped[Patient] = relationship(back_populates="visits")
    recordings: Mapped[list[Recording]] = relationship(
        back_populates="visit", order_by="Recording.created_at", cascade="all, delete-orphan"
    )
    analyses: Mapped[list[Analysis]] = relationship(
        back_populates="visit", order_by="Analysis.created_at", cascade="all, delete-orphan"
    )


class Recording(Base):
    """One uploaded record (a WFDB header with its signal file, an EDF, a CSV ...)."""

    __tablename__ = "recording"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    visit_id: Mapped[str] = mapped_column(ForeignKey("visit.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(32))
    channels: Mapped[list[Any]] = mapped_column(JSON)
    fs_hz: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float)
    muscle: Mapped[str | None] = mapped_column(String(100))
    qc_flags: Mapped[list[Any]] = mapped_column(JSON)
    # How the files were read (fs_hz / uv_per_unit given at upload), to read them again alike.
    read_options: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)

    visit: Mapped[Visit] = relationship(back_populates="recordings")
    files: Mapped[list[RecordingFile]] = relationship(
        back_populates="recording", order_by="RecordingFile.filename", cascade="all, delete-orphan"
    )


class RecordingFile(Base):
    __tablename__ = "recording_file"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    recording_id: Mapped[str] = mapped_column(
        ForeignKey("recording.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(200))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    # Loaded only when asked for: listing a visit must not pull every signal into memory.
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary))

    recording: Mapped[Recording] = relationship(back_populates="files")


class Analysis(Base):
    """One run of the model over a visit's recordings, with its report."""

    __tablename__ = "analysis"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    visit_id: Mapped[str] = mapped_column(ForeignKey("visit.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(50))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    # "done", or "failed" with the reason in ``failure`` (and no result in the other columns)
    status: Mapped[str] = mapped_column(String(16), default="done", server_default="done")
    failure: Mapped[str | None] = mapped_column(Text)
    # "judged", "not interpretable" (why in ``reasons``: no probability) or "not analysed"
    outcome: Mapped[str] = mapped_column(String(32), default="judged", server_default="judged")
    reasons: Mapped[list[Any] | None] = mapped_column(JSON)
    predicted: Mapped[str | None] = mapped_column(String(32))
    probs: Mapped[dict[str, Any]] = mapped_column(JSON)
    intervals: Mapped[dict[str, Any]] = mapped_column(JSON)
    summary: Mapped[str] = mapped_column(Text)
    # Visit-level quantitative measures (mean over analysed records), for the timeline.
    measures: Mapped[dict[str, Any]] = mapped_column(JSON)
    report_html: Mapped[str] = deferred(mapped_column(Text))
    report_pdf: Mapped[bytes] = deferred(mapped_column(LargeBinary))

    visit: Mapped[Visit] = relationship(back_populates="analyses")
    records: Mapped[list[RecordResult]] = relationship(
        back_populates="analysis", order_by="RecordResult.position", cascade="all, delete-orphan"
    )


class RecordResult(Base):
    """The analysis of one channel of one recording."""

    __tablename__ = "record_result"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    analysis_id: Mapped[str] = mapped_column(
        ForeignKey("analysis.id", ondelete="CASCADE"), index=True
    )
    recording_id: Mapped[str] = mapped_column(
        ForeignKey("recording.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(32), default="judged", server_default="judged")
    reasons: Mapped[list[Any] | None] = mapped_column(JSON)
    ood_score: Mapped[float | None] = mapped_column(Float)
    predicted: Mapped[str | None] = mapped_column(String(32))
    probs: Mapped[dict[str, Any]] = mapped_column(JSON)
    intervals: Mapped[dict[str, Any]] = mapped_column(JSON)
    qc_flags: Mapped[list[Any]] = mapped_column(JSON)
    qc_messages: Mapped[list[Any]] = mapped_column(JSON)
    usable_fraction: Mapped[float] = mapped_column(Float)
    n_windows: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    measures: Mapped[list[Any]] = mapped_column(JSON)

    analysis: Mapped[Analysis] = relationship(back_populates="records")
    figures: Mapped[list[Figure]] = relationship(
        back_populates="record_result", order_by="Figure.position", cascade="all, delete-orphan"
    )


class Figure(Base):
    __tablename__ = "figure"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    record_result_id: Mapped[str] = mapped_column(
        ForeignKey("record_result.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    caption: Mapped[str] = mapped_column(Text)
    png: Mapped[bytes] = deferred(mapped_column(LargeBinary))

    record_result: Mapped[RecordResult] = relationship(back_populates="figures")


class IdempotentRequest(Base):
    """A POST that created something, under the client's ``Idempotency-Key``: a retry with the
    same key gets the stored answer instead of creating it again. Stored in the same
    transaction as what the request created, so the two are committed together or not at all."""

    __tablename__ = "idempotent_request"
    __table_args__ = (UniqueConstraint("clinic_id", "key", name="clinic_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(200))
    # "POST <path>": the same key on another request is refused, not replayed
    request: Mapped[str] = mapped_column(String(300))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class AuditEvent(Base):
    """Who did what to which record, and when: erasures (never any signal or patient data;
    the target is named by its id only)."""

    __tablename__ = "audit_event"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    # "token <prefix> (<label>)" for the API, "cli <user>" for the command line
    actor: Mapped[str] = mapped_column(String(300))
    action: Mapped[str] = mapped_column(String(50))
    target_id: Mapped[str] = mapped_column(String(36))
    # what went with it: counts of visits, recordings, analyses, ...
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
