"""The HTTP API (``/api/v1``): patients, visits, uploads, analyses, reports, timelines.

Every route but ``/health`` needs a bearer token; each query is scoped to the token's clinic,
and a resource of another clinic answers 404 exactly like one that does not exist.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, File, Form, Header, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from emgdx.clinic import schemas as s
from emgdx.clinic import scoped
from emgdx.clinic.admin import live_token
from emgdx.clinic.analysis import AnalysisFailed
from emgdx.clinic.erasure import ErasureTarget, erase
from emgdx.clinic.ingest import UploadedFile, parse_upload, safe_filename
from emgdx.clinic.models import (
    Analysis,
    AuditEvent,
    Figure,
    IdempotentRequest,
    Patient,
    Recording,
    RecordingFile,
    RecordResult,
    Visit,
)
from emgdx.clinic.trends import TimelinePoint, alerts, quantity_label, timeline_plot, trends

__all__ = ["router"]

log = logging.getLogger("emgdx.clinic")
router = APIRouter(
    prefix="/api/v1",
    # Any route: a body that cannot be parsed at all (400), one over the size limit (413).
    responses={
        400: {"model": s.Error, "description": "Malformed request."},
        413: {"model": s.Error, "description": "Request body over the size limit."},
    },
)
bearer = HTTPBearer(auto_error=False, description="An API token from `emgdx clinic token`.")

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": s.Error, "description": "Missing or invalid token."},
    404: {"model": s.Error, "description": "No such resource in this clinic."},
}


# --------------------------------------------------------------------------- plumbing


def _state(request: Request) -> Any:
    return request.app.state


def clinic_of(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The id of the clinic whose token authorised the request (401 otherwise)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    with _state(request).db.session() as session:
        token = live_token(session, credentials.credentials)
        if token is None:
            raise HTTPException(
                401, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"}
            )
        request.state.clinic_id = token.clinic_id
        # who, for the audit log: the token's public prefix and label, never the secret
        request.state.actor = f"token {token.prefix}" + (f" ({token.label})" if token.label else "")
        return token.clinic_id


ClinicId = Annotated[str, Depends(clinic_of)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Any unique string chosen by the client: a retry of this POST with the "
        "same key (after a lost answer) gets the first answer again, and nothing is created "
        "twice. Reusing a key for another request is refused (422).",
    ),
]


def _request_line(request: Request) -> str:
    return f"{request.method} {request.url.path}"[:300]


def _replayed(
    session: Session, clinic_id: str, key: str | None, request: Request
) -> JSONResponse | None:
    """The stored answer to an earlier request with this key, if there was one."""
    if key is None:
        return None
    row = session.scalar(
        select(IdempotentRequest).where(
            IdempotentRequest.clinic_id == clinic_id, IdempotentRequest.key == key
        )
    )
    if row is None:
        return None
    if row.request != _request_line(request):
        raise HTTPException(
            422, f"this Idempotency-Key was used for another request ({row.request})"
        )
    return JSONResponse(
        row.response, status_code=row.status_code, headers={"Idempotent-Replayed": "true"}
    )


def _remember(
    session: Session, clinic_id: str, key: str | None, request: Request, answer: BaseModel
) -> None:
    """Store the answer under the key, in the transaction that created what it describes."""
    if key is not None:
        session.add(
            IdempotentRequest(
                clinic_id=clinic_id,
                key=key,
                request=_request_line(request),
                status_code=201,
                response=answer.model_dump(mode="json"),
            )
        )


def _answers_concurrent_retries(route: Callable[..., Any]) -> Callable[..., Any]:
    """A keyed route whose commit is refused on a unique constraint answers with the stored
    answer of the concurrent retry that committed first (FastAPI passes arguments by name)."""

    @functools.wraps(route)
    def guarded(**kwargs: Any) -> Any:
        try:
            return route(**kwargs)
        except IntegrityError:
            replay = _replayed_after_conflict(kwargs["request"], kwargs["clinic_id"], kwargs["key"])
            if replay is not None:
                return replay
            raise

    return guarded


def _replayed_after_conflict(
    request: Request, clinic_id: str, key: str | None
) -> JSONResponse | None:
    """A commit refused on a unique constraint: if it was a concurrent retry of the same
    keyed request, the other one's stored answer."""
    if key is None:
        return None
    with _state(request).db.session() as session:
        return _replayed(session, clinic_id, key, request)


_Out = TypeVar("_Out", bound=BaseModel)


def _reported_analysis(session: Session, clinic_id: str, analysis_id: str) -> Analysis:
    """The analysis, if it has a report (a failed one has none: 409 with its reason)."""
    a = scoped.analysis(session, clinic_id, analysis_id)
    if a.status == "failed":
        raise HTTPException(409, f"the analysis failed, so it has no report: {a.failure}")
    return a


def _latest_analysis(session: Session, visit_id: str, *, done: bool = False) -> Analysis | None:
    """The visit's newest analysis (with ``done``, its newest one that did not fail)."""
    query = select(Analysis).where(Analysis.visit_id == visit_id)
    if done:
        query = query.where(Analysis.status == "done")
    return session.scalar(query.order_by(Analysis.created_at.desc(), Analysis.id).limit(1))


# --------------------------------------------------------------------------- serialisers


def _out(schema: type[_Out], row: Any, **given: Any) -> _Out:
    """``schema`` filled from ``row``'s attributes of the same names, and from ``given``."""
    return schema(
        **{name: getattr(row, name) for name in schema.model_fields if name not in given}, **given
    )


def _visit_out(session: Session, v: Visit) -> s.VisitOut:
    latest = _latest_analysis(session, v.id)
    covered = (
        latest is not None
        and v.recordings
        and all(r.created_at <= latest.created_at for r in v.recordings)
    )
    return _out(
        s.VisitOut,
        v,
        date=v.visit_date,
        n_recordings=len(v.recordings),
        status=_visit_status(latest) if covered and latest is not None else "new",
    )


def _visit_status(latest: Analysis) -> str:
    if latest.status == "failed":
        return "failed"
    return "not interpretable" if latest.outcome == "not interpretable" else "analysed"


def _recording_out(r: Recording) -> s.RecordingOut:
    files = sorted(r.files, key=lambda f: f.filename)
    return _out(s.RecordingOut, r, files=[_out(s.FileOut, f) for f in files])


def _analysis_out(a: Analysis) -> s.AnalysisOut:
    base = f"/api/v1/analyses/{a.id}"
    return _out(
        s.AnalysisOut,
        a,
        model={
            "name": a.model_name,
            "version": a.model_version,
            "weights_sha256": a.weights_sha256,
        },
        records=[
            _out(
                s.RecordResultOut,
                r,
                measures=[s.MeasureOut(**m) for m in r.measures],
                figures=[
                    _out(s.FigureOut, f, url=f"/api/v1/figures/{f.id}.png") for f in r.figures
                ],
            )
            for r in a.records
        ],
        report_html_url=f"{base}/report.html",
        report_pdf_url=f"{base}/report.pdf",
    )


# --------------------------------------------------------------------------- routes


@router.get("/health", tags=["service"])
def health(request: Request) -> s.Health:
    """Liveness: the database answers; which model is loaded; upload limits (no token needed)."""
    state = _state(request)
    with state.db.session() as session:
        session.execute(select(1))
    runner = state.runner
    model = (
        {**runner.model_info, "class_names": list(runner.pipeline.class_names)} if runner else None
    )
    limits = _out(s.Limits, state.settings)
    return s.Health(status="ok", database=state.db.backend, model=model, limits=limits)


@router.get("/me", responses=ERRORS, tags=["service"])
def me(request: Request, clinic_id: ClinicId) -> s.Me:
    """The clinic this token belongs to."""
    from emgdx.clinic.models import Clinic

    with _state(request).db.session() as session:
        clinic = session.get(Clinic, clinic_id)
        assert clinic is not None
        return s.Me(clinic=_out(s.ClinicOut, clinic))


@router.post(
    "/patients",
    status_code=201,
    response_model=s.PatientOut,
    responses={**ERRORS, 409: {"model": s.Error}, 422: {"model": s.Error}},
    tags=["patients"],
)
def create_patient(
    request: Request, clinic_id: ClinicId, body: s.PatientIn, key: IdempotencyKey = None
) -> Any:
    """Register a patient under the clinic's own identifier."""
    try:
        with _state(request).db.session() as session:
            if (replay := _replayed(session, clinic_id, key, request)) is not None:
                return replay
            patient = Patient(clinic_id=clinic_id, **body.model_dump())
            session.add(patient)
            session.flush()
            out = _out(s.PatientOut, patient, n_visits=0)
            _remember(session, clinic_id, key, request, out)
            return out
    except IntegrityError:
        if (replay := _replayed_after_conflict(request, clinic_id, key)) is not None:
            return replay
        raise HTTPException(409, "a patient with this external_id exists already") from None


@router.get("/patients", responses=ERRORS, tags=["patients"])
def list_patients(request: Request, clinic_id: ClinicId) -> s.PatientList:
    """The clinic's patients, by external id."""
    with _state(request).db.session() as session:
        counts = (
            select(Visit.patient_id, func.count(Visit.id).label("n"))
            .group_by(Visit.patient_id)
            .subquery()
        )
        rows = session.execute(
            select(Patient, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.patient_id == Patient.id)
            .where(Patient.clinic_id == clinic_id)
            .order_by(Patient.external_id)
        ).all()
        return s.PatientList(patients=[_out(s.PatientOut, p, n_visits=int(n)) for p, n in rows])


@router.get("/patients/{patient_id}", responses=ERRORS, tags=["patients"])
def get_patient(request: Request, clinic_id: ClinicId, patient_id: str) -> s.PatientDetail:
    """A patient with its visits (oldest first)."""
    with _state(request).db.session() as session:
        p = scoped.patient(session, clinic_id, patient_id)
        visits = [_visit_out(session, v) for v in p.visits]
        return _out(s.PatientDetail, p, n_visits=len(visits), visits=visits)


@router.post(
    "/patients/{patient_id}/visits",
    status_code=201,
    response_model=s.VisitOut,
    responses={**ERRORS, 422: {"model": s.Error}},
    tags=["visits"],
)
@_answers_concurrent_retries
def create_visit(
    request: Request,
    clinic_id: ClinicId,
    patient_id: str,
    body: s.VisitIn,
    key: IdempotencyKey = None,
) -> Any:
    """Open a visit (an examination day) for the patient."""
    with _state(request).db.session() as session:
        if (replay := _replayed(session, clinic_id, key, request)) is not None:
            return replay
        p = scoped.patient(session, clinic_id, patient_id)
        visit = Visit(patient_id=p.id, visit_date=body.date, notes=body.notes)
        session.add(visit)
        session.flush()
        out = _visit_out(session, visit)
        _remember(session, clinic_id, key, request, out)
        return out


@router.get("/patients/{patient_id}/visits", responses=ERRORS, tags=["visits"])
def list_visits(request: Request, clinic_id: ClinicId, patient_id: str) -> s.VisitList:
    """The patient's visits, oldest first."""
    with _state(request).db.session() as session:
        p = scoped.patient(session, clinic_id, patient_id)
        return s.VisitList(visits=[_visit_out(session, v) for v in p.visits])


@router.get("/visits/{visit_id}", responses=ERRORS, tags=["visits"])
def get_visit(request: Request, clinic_id: ClinicId, visit_id: str) -> s.VisitDetail:
    """A visit with its recordings and its latest analysis."""
    with _state(request).db.session() as session:
        v = scoped.visit(session, clinic_id, visit_id)
        latest = _latest_analysis(session, v.id)
        return s.VisitDetail(
            **_visit_out(session, v).model_dump(),
            recordings=[_recording_out(r) for r in v.recordings],
            analysis=_analysis_out(latest) if latest else None,
        )


@router.post(
    "/visits/{visit_id}/recordings",
    status_code=201,
    response_model=s.RecordingList,
    responses={**ERRORS, 413: {"model": s.Error}, 422: {"model": s.Error}},
    tags=["recordings"],
)
@_answers_concurrent_retries
def upload_recordings(
    request: Request,
    clinic_id: ClinicId,
    visit_id: str,
    files: Annotated[
        list[UploadFile],
        File(description="The files of one or more records (WFDB: the .hea with its .dat/.bin)."),
    ],
    muscle: Annotated[str | None, Form(max_length=100)] = None,
    fs_hz: Annotated[
        float | None,
        Form(
            gt=0,
            le=1e6,
            description="Sampling rate for files that store none (NPY, CSV without time).",
        ),
    ] = None,
    uv_per_unit: Annotated[
        float | None,
        Form(gt=0, le=1e9, description="µV per stored unit for files without a voltage unit."),
    ] = None,
    key: IdempotencyKey = None,
) -> Any:
    """Add recordings to a visit. Every file is read and checked first; if any is unreadable,
    none is stored and the answer (422) names the file and the problem."""
    settings = _state(request).settings
    with _state(request).db.session() as session:
        if (replay := _replayed(session, clinic_id, key, request)) is not None:
            return replay  # a retry: stored once already
        scoped.visit(session, clinic_id, visit_id)  # 404 before reading anything
    if len(files) > settings.max_files_per_request:
        raise HTTPException(422, f"at most {settings.max_files_per_request} files per upload")
    uploaded: list[UploadedFile] = []
    for f in files:
        content = f.file.read(settings.max_file_bytes + 1)
        if len(content) > settings.max_file_bytes:
            raise HTTPException(
                413,
                f"{(f.filename or '?')[:60]}: larger than the limit of "
                f"{settings.max_file_bytes / 2**20:g} MiB per file",
            )
        uploaded.append(UploadedFile(safe_filename(f.filename), content))
    runner = _state(request).runner
    parsed = parse_upload(
        uploaded,
        fs_hz=fs_hz,
        uv_per_unit=uv_per_unit,
        # With a model loaded, a record it cannot judge is refused now, not at analysis.
        check=runner.pipeline.check_recording if runner else None,
    )
    with _state(request).db.session() as session:
        visit = scoped.visit(session, clinic_id, visit_id)
        rows = []
        for rec in parsed:
            row = Recording(
                visit_id=visit.id,
                name=rec.name,
                format=rec.format,
                channels=rec.channels,
                fs_hz=rec.fs_hz,
                duration_s=rec.duration_s,
                muscle=muscle or None,
                qc_flags=rec.qc_flags,
                read_options=rec.read_options,
                created_at=dt.datetime.now(dt.UTC),
            )
            row.files = [
                RecordingFile(
                    filename=f.filename,
                    size_bytes=len(f.content),
                    sha256=f.sha256,
                    content=f.content,
                )
                for f in rec.files
            ]
            session.add(row)
            rows.append(row)
        session.flush()
        out = s.RecordingList(recordings=[_recording_out(r) for r in rows])
        _remember(session, clinic_id, key, request, out)
        return out


@router.get("/visits/{visit_id}/recordings", responses=ERRORS, tags=["recordings"])
def list_recordings(request: Request, clinic_id: ClinicId, visit_id: str) -> s.RecordingList:
    """The visit's recordings (without their content)."""
    with _state(request).db.session() as session:
        v = scoped.visit(session, clinic_id, visit_id)
        return s.RecordingList(recordings=[_recording_out(r) for r in v.recordings])


@router.post(
    "/visits/{visit_id}/analysis",
    status_code=201,
    response_model=s.AnalysisOut,
    responses={**ERRORS, 409: {"model": s.Error}, 422: {"model": s.Error}, 503: {"model": s.Error}},
    tags=["analyses"],
)
@_answers_concurrent_retries
def analyse_visit(
    request: Request,
    clinic_id: ClinicId,
    visit_id: str,
    body: Annotated[s.AnalysisIn | None, Body()] = None,
    key: IdempotencyKey = None,
) -> Any:
    """Run the model over all the visit's recordings: diagnosis, QC, measures, evidence figures
    and the clinical report, stored together in one transaction. An analysis that fails (an
    error, a crash of its worker process, a timeout) is stored with ``status: "failed"`` and
    the reason in ``failure``, and nothing else."""
    state = _state(request)
    runner = state.runner
    if runner is None:
        raise HTTPException(503, "no model is loaded on this server (start it with --model)")
    explain = (body or s.AnalysisIn()).explain
    with state.db.session() as session:
        if (replay := _replayed(session, clinic_id, key, request)) is not None:
            return replay
        visit = scoped.visit(session, clinic_id, visit_id)
        if not visit.recordings:
            raise HTTPException(409, "the visit has no recordings yet; upload some first")
        recordings, origin = runner.load_inputs(session, visit)
        patient = {"id": visit.patient.external_id}
        if visit.patient.name:
            patient["name"] = visit.patient.name
        visit_info = {"date": visit.visit_date.isoformat()}
        recording_ids = {r.id for r in visit.recordings}
    try:
        product = runner.analyse(recordings, patient=patient, visit=visit_info, explain=explain)
        analysis = runner.to_rows(visit_id, product, origin)
    except AnalysisFailed as exc:  # stored as a failed analysis, with the reason
        log.warning("analysis of visit %s failed: %s", visit_id, exc.reason)
        analysis = runner.failed_row(visit_id, exc.reason)
    with state.db.session() as session:
        visit = scoped.visit(session, clinic_id, visit_id)  # still there (and still this clinic's)?
        if not recording_ids <= {r.id for r in visit.recordings}:
            raise HTTPException(
                409, "the visit's recordings changed during the analysis; run it again"
            )
        analysis.created_at = dt.datetime.now(dt.UTC)
        session.add(analysis)
        session.flush()
        out = _analysis_out(analysis)
        _remember(session, clinic_id, key, request, out)
        return out


@router.get("/visits/{visit_id}/analysis", responses=ERRORS, tags=["analyses"])
def latest_analysis(request: Request, clinic_id: ClinicId, visit_id: str) -> s.AnalysisOut:
    """The visit's most recent analysis."""
    with _state(request).db.session() as session:
        v = scoped.visit(session, clinic_id, visit_id)
        latest = _latest_analysis(session, v.id)
        if latest is None:
            raise HTTPException(404, "the visit has not been analysed yet")
        return _analysis_out(latest)


@router.get("/visits/{visit_id}/analyses", responses=ERRORS, tags=["analyses"])
def list_analyses(request: Request, clinic_id: ClinicId, visit_id: str) -> s.AnalysisList:
    """Every analysis of the visit, newest first."""
    with _state(request).db.session() as session:
        v = scoped.visit(session, clinic_id, visit_id)
        rows = session.scalars(
            select(Analysis).where(Analysis.visit_id == v.id).order_by(Analysis.created_at.desc())
        ).all()
        return s.AnalysisList(analyses=[_out(s.AnalysisSummary, a) for a in rows])


@router.get("/analyses/{analysis_id}", responses=ERRORS, tags=["analyses"])
def get_analysis(request: Request, clinic_id: ClinicId, analysis_id: str) -> s.AnalysisOut:
    """One analysis."""
    with _state(request).db.session() as session:
        return _analysis_out(scoped.analysis(session, clinic_id, analysis_id))


@router.get(
    "/analyses/{analysis_id}/report.html",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"text/html": {}}}},
    tags=["analyses"],
)
def report_html(request: Request, clinic_id: ClinicId, analysis_id: str) -> Response:
    """The clinical report, a self-contained HTML page."""
    with _state(request).db.session() as session:
        a = _reported_analysis(session, clinic_id, analysis_id)
        return HTMLResponse(a.report_html, headers={"Cache-Control": "no-store"})


@router.get(
    "/analyses/{analysis_id}/report.pdf",
    responses={**ERRORS, 200: {"content": {"application/pdf": {}}}},
    response_class=Response,
    tags=["analyses"],
)
def report_pdf(request: Request, clinic_id: ClinicId, analysis_id: str) -> Response:
    """The clinical report as an A4 PDF."""
    with _state(request).db.session() as session:
        a = _reported_analysis(session, clinic_id, analysis_id)
        return Response(
            a.report_pdf,
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'inline; filename="emgdx-report-{a.id[:8]}.pdf"',
                "Cache-Control": "no-store",
            },
        )


@router.get(
    "/figures/{figure_id}.png",
    responses={**ERRORS, 200: {"content": {"image/png": {}}}},
    response_class=Response,
    tags=["analyses"],
)
def figure_png(request: Request, clinic_id: ClinicId, figure_id: str) -> Response:
    """One evidence figure."""
    with _state(request).db.session() as session:
        png = session.scalar(
            select(Figure.png)
            .join(RecordResult)
            .join(Analysis)
            .join(Visit)
            .join(Patient)
            .where(Figure.id == figure_id, Patient.clinic_id == clinic_id)
        )
        if png is None:
            raise scoped.NotFound("figure")
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


def _timeline(
    session: Session, clinic_id: str, patient_id: str
) -> tuple[list[TimelinePoint], list[str]]:
    p = scoped.patient(session, clinic_id, patient_id)
    points: list[TimelinePoint] = []
    names: list[str] = []
    for v in p.visits:
        a = _latest_analysis(session, v.id, done=True)  # a failed analysis has no result
        if a is None or a.outcome != "judged":  # nor has one that could judge nothing
            continue
        names = names or list(a.probs)
        points.append(
            TimelinePoint(
                visit_id=v.id,
                date=v.visit_date,
                analysis_id=a.id,
                predicted=a.predicted,
                probs=dict(a.probs),
                intervals=dict(a.intervals),
                measures=dict(a.measures),
            )
        )
    return points, names


def _labelled(quantity: str) -> str:
    from emgdx.reference import MEASURES

    unit = MEASURES.get(quantity, ("", ""))[1]
    label = quantity_label(quantity)
    return f"{label} ({unit})" if unit else label


@router.get("/patients/{patient_id}/timeline", responses=ERRORS, tags=["patients"])
def timeline(request: Request, clinic_id: ClinicId, patient_id: str) -> s.TimelineOut:
    """The patient's analysed visits over time, the trend of each quantity and the alerts."""
    with _state(request).db.session() as session:
        points, names = _timeline(session, clinic_id, patient_id)
    found = trends(points, names)
    keys = {f"p_{n}" for n in names} | {k for p in points for k in p.measures}
    return s.TimelineOut(
        labels={k: _labelled(k) for k in sorted(keys)},
        patient_id=patient_id,
        points=[s.TimelinePointOut(**p.__dict__) for p in points],
        trends=[s.TrendOut(**t.as_dict()) for t in found],
        alerts=[s.AlertOut(**a) for a in alerts(points, found)],  # type: ignore[arg-type]
        plot_url=f"/api/v1/patients/{patient_id}/timeline.png",
    )


@router.get(
    "/patients/{patient_id}/timeline.png",
    responses={**ERRORS, 200: {"content": {"image/png": {}}}},
    response_class=Response,
    tags=["patients"],
)
def timeline_png(request: Request, clinic_id: ClinicId, patient_id: str) -> Response:
    """The timeline as a plot (probabilities with intervals and trend lines; MUAP measures)."""
    with _state(request).db.session() as session:
        points, names = _timeline(session, clinic_id, patient_id)
    png = timeline_plot(points, trends(points, names), names)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


# --------------------------------------------------------------------------- erasure


def _erase(request: Request, clinic_id: str, target: ErasureTarget, target_id: str) -> s.Erased:
    with _state(request).db.session() as session:
        counts = erase(session, clinic_id, target, target_id, actor=request.state.actor)
    return s.Erased(target=target, id=target_id, deleted=counts)


@router.delete("/patients/{patient_id}", responses=ERRORS, tags=["patients"])
def delete_patient(request: Request, clinic_id: ClinicId, patient_id: str) -> s.Erased:
    """Erase a patient with all their visits, recordings and analyses (audit-logged)."""
    return _erase(request, clinic_id, "patient", patient_id)


@router.delete("/visits/{visit_id}", responses=ERRORS, tags=["visits"])
def delete_visit(request: Request, clinic_id: ClinicId, visit_id: str) -> s.Erased:
    """Erase a visit with its recordings and analyses (audit-logged)."""
    return _erase(request, clinic_id, "visit", visit_id)


@router.delete("/recordings/{recording_id}", responses=ERRORS, tags=["recordings"])
def delete_recording(request: Request, clinic_id: ClinicId, recording_id: str) -> s.Erased:
    """Erase a recording's files and every analysis that read it (audit-logged)."""
    return _erase(request, clinic_id, "recording", recording_id)


@router.get("/audit", responses=ERRORS, tags=["service"])
def audit_log(request: Request, clinic_id: ClinicId) -> s.AuditList:
    """The clinic's audit log (erasures), newest first; it holds ids and counts, no data."""
    with _state(request).db.session() as session:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.clinic_id == clinic_id)
            .order_by(AuditEvent.at.desc(), AuditEvent.id)
        ).all()
        return s.AuditList(events=[_out(s.AuditEventOut, e) for e in rows])
