"""Alembic environment: runs on the connection :func:`emgdx.clinic.db.migrate` passes in."""

from __future__ import annotations

from alembic import context

from emgdx.clinic.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via emgdx.clinic.db.migrate
    raise RuntimeError("run migrations through emgdx.clinic.db.migrate() or `emgdx clinic upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
