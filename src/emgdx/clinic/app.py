"""The clinic service: ``create_app(settings)`` builds the FastAPI application.

>>> app = create_app(ClinicSettings(model_dir="models/cnn1d"))  # doctest: +SKIP
>>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from emgdx import __version__
from emgdx.clinic.analysis import AnalysisRunner
from emgdx.clinic.api import router
from emgdx.clinic.db import Database
from emgdx.clinic.ingest import configure_staging
from emgdx.clinic.live import LiveHub
from emgdx.clinic.live import router as live_router
from emgdx.clinic.middleware import RequestGuard
from emgdx.clinic.scoped import NotFound
from emgdx.clinic.settings import ClinicSettings
from emgdx.errors import EmgdxError

if TYPE_CHECKING:
    from emgdx.pipeline import Pipeline

__all__ = ["UVICORN_OPTIONS", "create_app", "web_dir"]

log = logging.getLogger("emgdx.clinic")

#: uvicorn settings of ``emgdx serve`` (the browser tests serve the app with the same ones).
UVICORN_OPTIONS: dict[str, Any] = {
    "log_config": None,
    "access_log": False,
    # Keep idle connections longer than clients do (httpx and browsers: 5-60 s): with
    # uvicorn's 5 s a client could send its next request on a connection the server was
    # closing, and that request was lost (seen once in 800 under load).
    "timeout_keep_alive": 75,
    # The live page's WebSocket: websockets' current (sans-I/O) protocol; uvicorn's default
    # picks the legacy one, deprecated since websockets 14.
    "ws": "websockets-sansio",
}

DESCRIPTION = """
Upload a visit's EMG recordings, get the model's second opinion (class probabilities, quality
findings, quantitative EMG against reference ranges, evidence figures, a clinical report) and
follow each patient across visits.

Every route but `/api/v1/health` needs `Authorization: Bearer <token>` (tokens are created by
the administrator with `emgdx clinic token`). Data of one clinic is invisible to every other.

**Decision support, not a diagnosis.**
"""


def web_dir() -> Path:
    return Path(str(resources.files("emgdx.clinic") / "web"))


def _error(
    request: Request, detail: Any, status: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The API's error body: ``detail`` and the request's id (see :class:`RequestGuard`)."""
    request_id = str(getattr(request.state, "request_id", ""))
    return JSONResponse(
        {"detail": detail, "request_id": request_id}, status_code=status, headers=headers
    )


def create_app(
    settings: ClinicSettings | None = None, *, pipeline: Pipeline | None = None
) -> FastAPI:
    """The application: database (migrated), model (``settings.model_dir`` or ``pipeline``)."""
    settings = settings or ClinicSettings.from_env()
    assert settings.data_dir is not None  # set by ClinicSettings
    removed = configure_staging(settings.data_dir / "staging")
    if removed:
        log.warning("removed %d upload(s) left half-staged by an earlier process", removed)
    db = Database(settings.database_url, run_migrations=settings.migrate)
    if pipeline is None and settings.model_dir is not None:
        from emgdx.pipeline import Pipeline

        pipeline = Pipeline.load(settings.model_dir, backend=settings.backend)
    runner = (
        AnalysisRunner(
            pipeline,
            workers=settings.analysis_workers,
            explain_figures=settings.explain_figures,
            isolate=settings.isolate_analyses,
            model_dir=settings.model_dir,
            scratch_dir=settings.data_dir / "models",
            backend=settings.backend,
            timeout_s=settings.analysis_timeout_s,
        )
        if pipeline is not None
        else None
    )
    live = LiveHub(pipeline, runner.model_info if runner else None)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            live.shutdown()  # every live session's thread stopped and joined
            if runner is not None:
                runner.close()  # the analysis worker processes stopped
            db.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="emgdx clinic service",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "patients", "description": "Patients and their course over time."},
            {"name": "visits", "description": "Examination days."},
            {"name": "recordings", "description": "Uploaded EMG files."},
            {"name": "analyses", "description": "Diagnoses, evidence and reports."},
            {
                "name": "live",
                "description": "Live monitoring of an LSL stream or a replayed recording: "
                "sessions over REST, their windows and events over a WebSocket.",
            },
            {"name": "service", "description": "Health and identity."},
        ],
    )
    app.state.settings = settings
    app.state.db = db
    app.state.runner = runner
    app.state.live = live
    app.include_router(router)
    app.include_router(live_router)

    # Starlette's own HTTPException (e.g. an unparseable multipart body) as well as FastAPI's.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(request, exc.detail, exc.status_code, getattr(exc, "headers", None))

    # another clinic's row, as one that does not exist (emgdx.clinic.scoped)
    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return _error(request, f"no such {exc.what}", 404)

    # (an upload's UploadError is an EmgdxError)
    @app.exception_handler(EmgdxError)
    async def emgdx_error(request: Request, exc: EmgdxError) -> JSONResponse:
        # Our own errors name the problem (and at most a file's name), never a server path.
        return _error(request, str(exc), 422)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the input back; keep only where and what, not the values
        # (they may be patient data).
        errors = [
            {
                "loc": list(e.get("loc", ())),
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        return _error(request, errors, 422)

    static = web_dir()
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> Any:
        page = static / "index.html"
        if not page.is_file():
            raise HTTPException(404, "the web page is not installed")
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    app.add_middleware(RequestGuard, max_body_bytes=settings.max_request_bytes)
    return app
