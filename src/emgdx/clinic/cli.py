"""``emgdx serve`` and ``emgdx clinic ...``: run the service, manage clinics and tokens.

FastAPI, SQLAlchemy and uvicorn (the ``serve`` extra) are imported only when a command runs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from emgdx.terminal import labelled, plain_console

__all__ = ["clinic_app", "serve"]

out = plain_console()
err = plain_console(stderr=True, soft_wrap=True)

clinic_app = typer.Typer(
    help="Clinics, API tokens and the database schema of the clinic service.",
    no_args_is_help=True,
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="EMGDX_DATABASE_URL",
        help="SQLAlchemy URL (default: SQLite in $EMGDX_HOME or ~/.emgdx; PostgreSQL: "
        "postgresql+psycopg://user:password@host:5432/emgdx).",
        show_default=False,
    ),
]


def _settings(database_url: str | None, **kw: object):
    try:
        from emgdx.clinic.settings import ClinicSettings
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        err.print(
            labelled(
                "error:",
                "bold red",
                f"the clinic service needs `pip install 'emgdx[serve]'` ({exc})",
            )
        )
        raise typer.Exit(2) from exc
    return ClinicSettings.from_env(database_url=database_url, **kw)


def _database(database_url: str | None):
    from emgdx.clinic.db import Database

    return Database(_settings(database_url).database_url)


def _fail(exc: Exception) -> typer.Exit:
    err.print(labelled("error:", "bold red", str(exc)))
    return typer.Exit(code=2)


@clinic_app.command("upgrade")
def upgrade(database_url: DatabaseUrl = None) -> None:
    """Create or migrate the database schema (Alembic) to the current version."""
    db = _database(database_url)
    out.print(f"database schema is current ({db.backend})")


@clinic_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The clinic's name.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Register a clinic (its data is invisible to every other clinic)."""
    from emgdx.clinic.admin import create_clinic
    from emgdx.errors import EmgdxError

    try:
        clinic_id = create_clinic(_database(database_url), name)
    except EmgdxError as exc:
        raise _fail(exc) from exc
    out.print(f"created clinic {name!r} ({clinic_id})")


@clinic_app.command("token")
def token(
    name: Annotated[str, typer.Argument(help="The clinic the token is for.")],
    label: Annotated[
        str, typer.Option(help="Who or what uses it (shown in `emgdx clinic list`).")
    ] = "",
    database_url: DatabaseUrl = None,
) -> None:
    """Create an API token. It is printed once and stored only as a hash: keep it safe."""
    from emgdx.clinic.admin import create_token
    from emgdx.errors import EmgdxError

    try:
        secret = create_token(_database(database_url), name, label=label)
    except EmgdxError as exc:
        raise _fail(exc) from exc
    err.print(f"token for {name!r} (shown once; only its hash is stored):")
    print(secret)  # plain stdout, so that scripts can capture it


@clinic_app.command("revoke")
def revoke(
    prefix: Annotated[str, typer.Argument(help="The token, or its first 12 characters.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a token."""
    from emgdx.clinic.admin import revoke_token
    from emgdx.errors import EmgdxError

    try:
        n = revoke_token(_database(database_url), prefix)
    except EmgdxError as exc:
        raise _fail(exc) from exc
    if n == 0:
        raise _fail(ValueError("no live token starts with that prefix"))
    out.print(f"revoked {n} token(s)")


@clinic_app.command("list")
def list_(database_url: DatabaseUrl = None) -> None:
    """The clinics and their tokens (prefixes only)."""
    from emgdx.clinic.admin import list_clinics

    for clinic in list_clinics(_database(database_url)):
        out.print(f"{clinic['name']}  ({clinic['id']})")
        for t in clinic["tokens"]:  # type: ignore[attr-defined]
            state = "revoked" if t["revoked"] else "live"
            out.print(f"    {t['prefix']}…  {state}  {t['label']}")


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


def train_demo_model(path: Path) -> Path:
    """A small 1-D CNN trained on simulated data, for trying the service out (not for patients)."""
    from emgdx.demo import DEMO_PREPROCESS
    from emgdx.pipeline import Pipeline
    from emgdx.simulate import simulate_cohort
    from emgdx.training import TrainConfig

    sim = simulate_cohort(3, 3, fs_hz=23_437.5, duration_s=6.0, seed=2026)
    pipeline = Pipeline(
        preprocess=DEMO_PREPROCESS, model="cnn1d", train=TrainConfig(epochs=6, seed=0)
    )
    pipeline.fit(pipeline.prepare(sim.cohort))
    return pipeline.save(path, overwrite=True)


def serve(
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            envvar="EMGDX_MODEL_DIR",
            help="A pipeline saved by `emgdx train`.",
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
    analysis_workers: Annotated[int, typer.Option(help="Analyses run at the same time.")] = 1,
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

    from emgdx.clinic.app import create_app
    from emgdx.clinic.settings import default_data_dir
    from emgdx.errors import EmgdxError

    _configure_logging()
    if model is None and demo_model:
        model = default_data_dir() / "demo-model"
        if not (model / "pipeline.json").exists():
            err.print(f"training a demo model on simulated data into {model} (about a minute)…")
            train_demo_model(model)
        err.print(
            labelled(
                "warning:",
                "bold yellow",
                "the demo model is trained on simulated EMG; it is not for patients",
            )
        )
    if model is None:
        err.print(
            labelled(
                "warning:",
                "bold yellow",
                "no model (--model or EMGDX_MODEL_DIR): analyses answer 503",
            )
        )
    try:
        settings = _settings(
            database_url,
            model_dir=model,
            max_file_bytes=int(max_file_mb * 2**20),
            analysis_workers=analysis_workers,
            backend=backend,
        )
        application = create_app(settings)
    except EmgdxError as exc:
        raise _fail(exc) from exc
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            labelled(
                "note:",
                "bold yellow",
                "listening beyond loopback: put a TLS reverse proxy in front",
            )
        )
    err.print(
        f"emgdx clinic service on http://{host}:{port}/ (API docs at /docs), "
        f"database {settings.database_url.split('@')[-1]}"
    )
    uvicorn.run(application, host=host, port=port, **UVICORN_OPTIONS)
