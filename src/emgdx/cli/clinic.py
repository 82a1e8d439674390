"""``emgdx clinic ...``: clinics, API tokens and database migrations of the clinic service.

SQLAlchemy and Alembic (the ``serve`` extra) are imported only when a command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from emgdx.cli import console as ui

if TYPE_CHECKING:
    from emgdx.clinic.settings import ClinicSettings

__all__ = ["DatabaseUrl", "app", "settings_or_exit"]

app = typer.Typer(
    add_completion=False,
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


def settings_or_exit(database_url: str | None, **kw: object) -> ClinicSettings:
    """The service's settings: ``EMGDX_*`` variables, then the options given (not None)."""
    from emgdx.clinic.settings import ClinicSettings

    return ClinicSettings.from_env(database_url=database_url, **kw)


def _database(database_url: str | None):
    from emgdx.clinic.db import Database

    return Database(settings_or_exit(database_url).database_url)


@app.command("upgrade")
def upgrade(database_url: DatabaseUrl = None) -> None:
    """Create or migrate the database schema (Alembic) to the current version."""
    db = _database(database_url)
    ui.out.print(f"database schema is current ({db.backend})")


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The clinic's name.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Register a clinic (its data is invisible to every other clinic)."""
    from emgdx.clinic.admin import create_clinic

    with ui.failing():
        clinic_id = create_clinic(_database(database_url), name)
    ui.out.print(f"created clinic {name!r} ({clinic_id})")


@app.command("token")
def token(
    name: Annotated[str, typer.Argument(help="The clinic the token is for.")],
    label: Annotated[
        str, typer.Option(help="Who or what uses it (shown in `emgdx clinic list`).")
    ] = "",
    database_url: DatabaseUrl = None,
) -> None:
    """Create an API token. It is printed once and stored only as a hash: keep it safe."""
    from emgdx.clinic.admin import create_token

    with ui.failing():
        secret = create_token(_database(database_url), name, label=label)
    ui.err.print(f"token for {name!r} (shown once; only its hash is stored):")
    print(secret)  # plain stdout, so that scripts can capture it


@app.command("revoke")
def revoke(
    prefix: Annotated[str, typer.Argument(help="The token, or its first 12 characters.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a token."""
    from emgdx.clinic.admin import revoke_token

    with ui.failing():
        n = revoke_token(_database(database_url), prefix)
    if n == 0:
        raise ui.fail(ValueError("no live token starts with that prefix"))
    ui.out.print(f"revoked {n} token(s)")


@app.command("list")
def list_(database_url: DatabaseUrl = None) -> None:
    """The clinics and their tokens (prefixes only)."""
    from emgdx.clinic.admin import list_clinics

    for clinic in list_clinics(_database(database_url)):
        ui.out.print(f"{clinic['name']}  ({clinic['id']})")
        for t in clinic["tokens"]:  # type: ignore[attr-defined]
            state = "revoked" if t["revoked"] else "live"
            ui.out.print(f"    {t['prefix']}…  {state}  {t['label']}")


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="The clinic the data belongs to.")],
    patient: Annotated[str | None, typer.Option(help="Erase this patient (id).")] = None,
    visit: Annotated[str | None, typer.Option(help="Erase this visit (id).")] = None,
    recording: Annotated[str | None, typer.Option(help="Erase this recording (id).")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Erase a patient, visit or recording with everything derived from it (an erasure
    request); the audit log records who and when, without the data."""
    import getpass

    from emgdx.clinic.admin import clinic_id_by_name
    from emgdx.clinic.erasure import erase
    from emgdx.clinic.scoped import NotFound
    from emgdx.errors import ConfigError

    chosen = [(k, v) for k, v in (("patient", patient), ("visit", visit),
                                   ("recording", recording)) if v]  # fmt: skip
    with ui.failing():
        if len(chosen) != 1:
            raise ConfigError("give exactly one of --patient, --visit or --recording")
        ((target, target_id),) = chosen
        db = _database(database_url)
        try:
            with db.session() as session:
                counts = erase(session, clinic_id_by_name(session, name), target,  # type: ignore[arg-type]
                               target_id, actor=f"cli {getpass.getuser()}")  # fmt: skip
        except NotFound:
            raise ConfigError(f"clinic {name!r} has no {target} {target_id}") from None
    gone = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
    ui.out.print(f"erased {target} {target_id}: {gone}")


@app.command("audit")
def audit(
    name: Annotated[str, typer.Argument(help="The clinic.")],
    database_url: DatabaseUrl = None,
) -> None:
    """The clinic's audit log (erasures), newest first."""
    from sqlalchemy import select

    from emgdx.clinic.admin import clinic_id_by_name
    from emgdx.clinic.models import AuditEvent

    with ui.failing(), _database(database_url).session() as session:
        clinic_id = clinic_id_by_name(session, name)
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.clinic_id == clinic_id)
            .order_by(AuditEvent.at.desc(), AuditEvent.id)
        ).all()
        for e in rows:
            ui.out.print(f"{e.at:%Y-%m-%d %H:%M:%S}Z  {e.actor}  {e.action} {e.target_id}  "
                         f"{e.details}")  # fmt: skip
