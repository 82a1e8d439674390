"""``emgdx serve``: run the clinic service (API, web page, live page).

FastAPI, SQLAlchemy and uvicorn (the ``serve`` extra) are imported only when the command runs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from emgdx.cli import console as ui
from emgdx.cli.clinic import DatabaseUrl, settings_or_exit

app = typer.Typer(add_completion=False)


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Libraries that log file paths or request URLs at DEBUG/INFO stay quiet: file names
    # and URLs may carry patient data.
    for name in ("fsspec", "httpx", "matplotlib", "PIL", "multipart", "python_multipart"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Alembic announces each of its plugins at start-up (noise); migrations still log.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


@app.command()
def serve(
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            envvar="EMGDX_MODEL_DIR",
            help="A pipeline saved by `emgdx train` (default: the shipped model, "
            "docs/model-card.md).",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    demo_model: Annotated[
        bool,
        typer.Option(
            help="No model at hand: train a small one on simulated data first "
            "(for trying the service out; NOT for patients)."
        ),
    ] = False,
    database_url: DatabaseUrl = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    max_file_mb: Annotated[float, typer.Option(help="Largest uploaded file, MiB.")] = 64.0,
    analysis_workers: Annotated[
        int, typer.Option(help="Analyses run at the same time, each in a worker process.")
    ] = 1,
    analysis_timeout_s: Annotated[
        int,
        typer.Option(
            envvar="EMGDX_ANALYSIS_TIMEOUT_S",
            help="An analysis running longer is stopped and stored as failed.",
        ),
    ] = 600,
    backend: Annotated[
        str | None,
        typer.Option(
            envvar="EMGDX_BACKEND",
            help="Model inference: auto (ONNX when the model folder has model.onnx from "
            "`emgdx export`), torch, onnx or onnx-int8.",
        ),
    ] = None,
) -> None:
    """Run the clinic service: API (docs at /docs) and web page (at /)."""
    import uvicorn

    from emgdx.clinic.app import UVICORN_OPTIONS, create_app

    _configure_logging()
    if model is None:
        model = ui.demo_model_dir() if demo_model else ui.shipped_model_dir()
    with ui.failing():
        settings = settings_or_exit(
            database_url,
            model_dir=model,
            max_file_bytes=int(max_file_mb * 2**20),
            analysis_workers=analysis_workers,
            analysis_timeout_s=analysis_timeout_s,
            backend=backend,
        )
        application = create_app(settings)
    if host not in ("127.0.0.1", "localhost", "::1"):
        ui.warn("listening beyond loopback: put a TLS reverse proxy in front", "note:")
    ui.err.print(
        f"emgdx clinic service on http://{host}:{port}/ (API docs at /docs), "
        f"database {settings.database_url.split('@')[-1]}"
    )
    uvicorn.run(application, host=host, port=port, **UVICORN_OPTIONS)
