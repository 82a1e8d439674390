"""Shared fixtures. Real-data tests skip with a reason when the data is absent, except in CI."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest

from emgdx.datasets import n2001_dir, site_dir

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
_MISSING = (
    "real N2001 data not found: set EMGDX_DATA or place it at ../shared/data/n2001 "
    "beside the project checkout"
)


def pytest_configure(config: pytest.Config) -> None:
    # In CI the real data is always present: its absence is a broken set-up, not a reason to
    # skip half the suite quietly. Fail the whole run before any test starts.
    if IN_CI and n2001_dir() is None:
        raise pytest.UsageError(f"CI=true but {_MISSING}")
    if not hasattr(config, "workerinput"):  # the main process (with xdist: the controller)
        config.stash[_PG_WAS_RUNNING] = _postgres_listening()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave the machine as the run found it: stop the PostgreSQL server that the tests
    started (scripts/postgres.sh), never one that was already running or given by URL."""
    if hasattr(config, "workerinput") or os.environ.get("EMGDX_TEST_POSTGRES_URL"):
        return
    if config.stash.get(_PG_WAS_RUNNING, True) or not _postgres_listening():
        return
    subprocess.run(
        ["bash", str(_POSTGRES_SCRIPT), "stop"],
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


_PG_WAS_RUNNING = pytest.StashKey[bool]()


def _postgres_listening() -> bool:
    """Whether something listens on the test server's port (scripts/postgres.sh)."""
    import socket

    port = int(os.environ.get("EMGDX_PG_PORT", "54329"))
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def n2001() -> Path:
    """Path of the real N2001 folder; skip (or fail under CI=true) when it is absent."""
    path = n2001_dir()
    if path is None:
        if IN_CI:
            pytest.fail(f"CI=true but {_MISSING}")
        pytest.skip(_MISSING)
    return path


@pytest.fixture(scope="session")
def algiers() -> Path:
    """Path of the real Algiers folder (the second hospital); skip (or fail under CI=true)."""
    path = site_dir("algiers")
    if path is None:
        msg = "real Algiers data not found at ../shared/data/algiers (or $EMGDX_DATA/algiers)"
        if IN_CI:
            pytest.fail(f"CI=true but {msg}")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def muap_table() -> Path:
    """Path of the ehealthlab MUAP table; skip (or fail under CI=true) when absent."""
    path = n2001_dir()
    csv = None if path is None else path.parent / "ehealthlab_muap" / "muap.csv"
    if csv is None or not csv.is_file():
        msg = "ehealthlab MUAP table not found at ../shared/data/ehealthlab_muap/muap.csv"
        if IN_CI:
            pytest.fail(f"CI=true but {msg}")
        pytest.skip(msg)
    return csv


_POSTGRES_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres.sh"


def _admin_postgres_url() -> tuple[str | None, str]:
    """(SQLAlchemy URL of the test server, "") or (None, why it is not available)."""
    url = os.environ.get("EMGDX_TEST_POSTGRES_URL")
    if url:
        return url, ""
    try:
        # apt-get may install the server first: slow on a fresh CI machine.
        done = subprocess.run(
            ["bash", str(_POSTGRES_SCRIPT), "start"],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{_POSTGRES_SCRIPT.name} start failed: {exc}"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-20:])
        return None, f"{_POSTGRES_SCRIPT.name} start exited {done.returncode}:\n{tail}"
    return lines[-1].strip(), ""


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh database for this (xdist) worker on a real PostgreSQL.

    The server comes from $EMGDX_TEST_POSTGRES_URL or else from scripts/postgres.sh (which
    installs and starts one on loopback). The database is dropped at the end of the session.
    Skips (or fails under CI=true) when PostgreSQL cannot be had.
    """

    def unavailable(why: str) -> NoReturn:
        msg = f"PostgreSQL not available: {why}"
        if IN_CI:
            pytest.fail(f"CI=true but {msg}")
        pytest.skip(msg)

    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        unavailable("psycopg not installed (pip install 'emgdx[postgres]')")
    admin_url, why = _admin_postgres_url()
    if admin_url is None:
        unavailable(why)

    # SQLAlchemy's "postgresql+psycopg://" is psycopg's "postgresql://".
    admin = urlsplit(admin_url)
    conninfo = urlunsplit(admin._replace(scheme="postgresql"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"emgdx_test_{worker}_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=30) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        unavailable(f"cannot create a database through {admin_url}: {exc}")
    try:
        yield urlunsplit(admin._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=30) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
