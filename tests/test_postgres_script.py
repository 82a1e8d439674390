"""scripts/postgres.sh gives the suite a real PostgreSQL on loopback (see `postgres_url`)."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def test_postgres_server_on_loopback(postgres_url: str) -> None:
    try:
        import sqlalchemy
    except ImportError:
        if IN_CI:
            pytest.fail("CI=true but sqlalchemy is not installed (pip install 'emgdx[serve]')")
        pytest.skip("sqlalchemy not installed (pip install 'emgdx[serve]')")

    engine = sqlalchemy.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(sqlalchemy.text("select version()")).scalar_one()
            listen = conn.execute(sqlalchemy.text("show listen_addresses")).scalar_one()
            database = conn.execute(sqlalchemy.text("select current_database()")).scalar_one()
    finally:
        engine.dispose()

    assert "PostgreSQL" in version
    if "EMGDX_TEST_POSTGRES_URL" not in os.environ:  # our own server: loopback only
        assert listen == "127.0.0.1"
    # Each (xdist) worker gets a fresh database, never the admin one.
    assert database.startswith("emgdx_test_")
    assert database != "emgdx"
    assert database == sqlalchemy.make_url(postgres_url).database
