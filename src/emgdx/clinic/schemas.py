"""Request and response bodies of the API (they are also its OpenAPI documentation)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = [
    "AnalysisIn",
    "AnalysisOut",
    "AnalysisSummary",
    "ClinicOut",
    "Error",
    "FieldError",
    "FigureOut",
    "FileOut",
    "Health",
    "LiveSessionIn",
    "LiveSessionList",
    "LiveSessionOut",
    "LiveStreamList",
    "LiveStreamOut",
    "MeasureOut",
    "PatientDetail",
    "PatientIn",
    "PatientOut",
    "RecordResultOut",
    "RecordingOut",
    "TimelineOut",
    "VisitDetail",
    "VisitIn",
    "VisitOut",
]

CURRENT_YEAR = dt.date.today().year


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Error(BaseModel):
    detail: str | list[FieldError] = Field(
        description="What went wrong, in words a user can act on (for invalid fields: where "
        "and what, without the values sent)."
    )
    request_id: str = Field(description="Quote it to the administrator; it finds the log entry.")


class Limits(BaseModel):
    max_file_bytes: int
    max_request_bytes: int
    max_files_per_request: int


class Health(BaseModel):
    status: Literal["ok"]
    database: str
    model: dict[str, object] | None
    limits: Limits


class ClinicOut(BaseModel):
    id: str
    name: str


class Me(BaseModel):
    clinic: ClinicOut


class PatientIn(_In):
    external_id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="The clinic's own patient identifier (e.g. its record number).",
        examples=["MRN-0042"],
    )
    name: str | None = Field(default=None, max_length=200)
    birth_year: int | None = Field(default=None, ge=1900, le=CURRENT_YEAR)
    sex: Literal["female", "male", "other"] | None = None


class PatientOut(BaseModel):
    id: str
    external_id: str
    name: str | None
    birth_year: int | None
    sex: str | None
    created_at: dt.datetime
    n_visits: int


class VisitIn(_In):
    date: dt.date = Field(description="Day of the examination.", examples=["2026-11-24"])
    notes: str | None = Field(default=None, max_length=5000)


class VisitOut(BaseModel):
    id: str
    patient_id: str
    date: dt.date
    notes: str | None
    created_at: dt.datetime
    n_recordings: int
    status: Literal["new", "analysed", "not interpretable", "failed"] = Field(
        description="'analysed' when the latest analysis covers every recording of the visit, "
        "'not interpretable' when it found no recording it could judge, 'failed' when that "
        "analysis failed, else 'new'."
    )


class FileOut(BaseModel):
    filename: str
    size_bytes: int
    sha256: str


class RecordingOut(BaseModel):
    id: str
    visit_id: str
    name: str
    format: str
    files: list[FileOut]
    channels: list[str]
    fs_hz: float
    duration_s: float
    muscle: str | None
    qc_flags: list[str]
    created_at: dt.datetime


class RecordingList(BaseModel):
    recordings: list[RecordingOut]


class MeasureOut(BaseModel):
    measure: str
    label: str
    unit: str
    value: float | None
    ref_low: float | None
    ref_high: float | None
    status: str = Field(description="'low', 'high', '' (within range) or 'n/a'.")


class FigureOut(BaseModel):
    id: str
    title: str
    caption: str
    url: str


Outcome = Literal["judged", "not interpretable", "not analysed"]


def _no_reasons(value: Any) -> Any:
    return [] if value is None else value  # rows stored before outcomes existed


Reasons = Annotated[list[str], BeforeValidator(_no_reasons)]


class RecordResultOut(BaseModel):
    recording_id: str
    channel: str
    outcome: Outcome = Field(
        description="'not interpretable': not needle EMG one can judge, or unlike anything the "
        "model was trained on (``reasons``); 'not analysed': no usable window."
    )
    reasons: Reasons
    ood_score: float | None = Field(
        description="Out-of-distribution score against the model's training data (see "
        "docs/safety.md); null when the model stores no training distribution."
    )
    predicted: str | None
    probs: dict[str, float | None]
    intervals: dict[str, list[float | None]]
    qc_flags: list[str]
    qc_messages: list[str]
    usable_fraction: float
    n_windows: int
    note: str
    measures: list[MeasureOut]
    figures: list[FigureOut]


class AnalysisIn(_In):
    explain: bool = Field(default=True, description="Compute evidence figures (slower).")


class AnalysisSummary(BaseModel):
    id: str
    visit_id: str
    created_at: dt.datetime
    status: Literal["done", "failed"] = Field(
        description="'failed': the analysis could not be completed (an error, a crash of its "
        "worker process, a timeout); ``failure`` says why, and there is no result or report."
    )
    failure: str | None
    outcome: Outcome = Field(
        description="The visit's reading: 'judged', 'not interpretable' (no recording could be "
        "judged; ``reasons`` says why) or 'not analysed'."
    )
    reasons: Reasons
    predicted: str | None
    summary: str


class AnalysisOut(AnalysisSummary):
    model: dict[str, str]
    probs: dict[str, float | None]
    intervals: dict[str, list[float | None]]
    measures: dict[str, float | None]
    records: list[RecordResultOut]
    report_html_url: str
    report_pdf_url: str


class VisitDetail(VisitOut):
    recordings: list[RecordingOut]
    analysis: AnalysisOut | None


class PatientDetail(PatientOut):
    visits: list[VisitOut]


class PatientList(BaseModel):
    patients: list[PatientOut]


class VisitList(BaseModel):
    visits: list[VisitOut]


class AnalysisList(BaseModel):
    analyses: list[AnalysisSummary]


class TimelinePointOut(BaseModel):
    visit_id: str
    date: dt.date
    analysis_id: str
    predicted: str | None
    probs: dict[str, float | None]
    intervals: dict[str, list[float | None]]
    measures: dict[str, float | None]


class TrendOut(BaseModel):
    quantity: str
    label: str
    unit: str
    slope_per_year: float | None
    ci95: list[float] | None
    n_visits: int
    direction: Literal["rising", "falling", "stable", "unknown"]


class AlertOut(BaseModel):
    quantity: str
    severity: Literal["warning", "info"]
    message: str


class TimelineOut(BaseModel):
    patient_id: str
    points: list[TimelinePointOut]
    trends: list[TrendOut]
    alerts: list[AlertOut]
    labels: dict[str, str] = Field(description="Words (and unit) for each quantity's key.")
    plot_url: str


# --------------------------------------------------------------------------- live monitoring


class LiveStreamOut(BaseModel):
    name: str = Field(description="Use it as `lsl:NAME` to monitor the stream.")
    type: str
    channel_count: int
    nominal_srate: float = Field(description="Sampling rate in Hz (0: irregular, not usable).")
    source_id: str


class LiveStreamList(BaseModel):
    streams: list[LiveStreamOut]


class LiveSessionIn(_In):
    """Either a Lab Streaming Layer stream (`source`) or a stored recording to replay."""

    source: str | None = Field(
        default=None,
        pattern=r"^lsl:.{1,200}$",
        description="`lsl:NAME`: an LSL stream visible from the server.",
        examples=["lsl:EMG-bedside-1"],
    )
    recording_id: str | None = Field(
        default=None,
        max_length=36,
        description="A recording of this clinic, replayed as if it were live.",
    )
    speed: float = Field(
        default=1.0, gt=0, le=50, description="Replay speed (1 = real time); replays only."
    )
    channel: int = Field(default=0, ge=0, le=255, description="Channel to monitor.")

    @model_validator(mode="after")
    def _one_source(self) -> LiveSessionIn:
        if (self.source is None) == (self.recording_id is None):
            raise ValueError("give exactly one of source (lsl:NAME) or recording_id")
        return self


class LiveSessionOut(BaseModel):
    id: str
    source: str = Field(description="What is monitored, in words (`lsl:NAME`, `replay: …`).")
    kind: Literal["lsl", "replay"]
    status: Literal["running", "ended"] = Field(
        description="'ended' once the stream ended (a replay reached its end) or failed; "
        "an ended session stays listed until deleted, or for 10 minutes."
    )
    fs_hz: float
    hop_s: float
    window_s: float
    class_names: list[str]
    model: dict[str, str]
    created_at: dt.datetime
    ws_url: str = Field(
        description='WebSocket of the session. Send `{"token": "..."}` first (within '
        "5 s; wrong token: close code 4401, unknown session: 4404); then messages `hello`, "
        "`signal` (min/max envelope), `window` (probabilities) and `event` arrive."
    )


class LiveSessionList(BaseModel):
    sessions: list[LiveSessionOut]


class Erased(BaseModel):
    target: str = Field(description="patient, visit or recording")
    id: str
    deleted: dict[str, int] = Field(
        description="What went with it: patients, visits, recordings, analyses, stored answers."
    )


class AuditEventOut(BaseModel):
    at: dt.datetime
    actor: str = Field(description="The token (its prefix and label) or the command-line user.")
    action: str
    target_id: str
    details: dict[str, int]


class AuditList(BaseModel):
    events: list[AuditEventOut]
