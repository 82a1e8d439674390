"""`emgdx clinic …` administration and `emgdx serve` as a real process; the installed package
carries the web page and the migrations."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emgdx.cli import app
from emgdx.clinic.app import web_dir
from emgdx.clinic.db import migrations_dir


def test_clinic_admin_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'c.db'}"
    env = {"EMGDX_DATABASE_URL": url}
    r = runner.invoke(app, ["clinic", "create", "Ward A"], env=env)
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["clinic", "create", "Ward A"], env=env).exit_code == 2  # taken
    r = runner.invoke(app, ["clinic", "token", "Ward A", "--label", "pc-1"], env=env)
    assert r.exit_code == 0
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("emgdx_") and len(token) > 40
    listing = runner.invoke(app, ["clinic", "list"], env=env).stdout
    assert "Ward A" in listing and token[:12] in listing and token[14:] not in listing
    assert runner.invoke(app, ["clinic", "token", "Nowhere"], env=env).exit_code == 2
    assert runner.invoke(app, ["clinic", "revoke", token[:12]], env=env).exit_code == 0
    assert "revoked" in runner.invoke(app, ["clinic", "list"], env=env).stdout
    assert runner.invoke(app, ["clinic", "revoke", token[:12]], env=env).exit_code == 2  # none live
    assert runner.invoke(app, ["clinic", "upgrade", "--database-url", "mysql://x/y"]).exit_code != 0


def test_clinic_delete_and_audit_commands(tmp_path: Path) -> None:
    import datetime as dt

    from sqlalchemy import select

    from emgdx.clinic.db import Database
    from emgdx.clinic.models import Clinic, Patient, Visit

    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'c.db'}"
    env = {"EMGDX_DATABASE_URL": url}
    assert runner.invoke(app, ["clinic", "create", "Ward B"], env=env).exit_code == 0
    db = Database(url)
    with db.session() as session:
        clinic_id = session.execute(select(Clinic.id)).scalar_one()  # the one clinic
        patient = Patient(clinic_id=clinic_id, external_id="MRN-9", name="Zed Erased")
        patient.visits = [
            Visit(visit_date=dt.date(2026, 5, 1)),
            Visit(visit_date=dt.date(2026, 6, 1)),
        ]
        session.add(patient)
        session.flush()
        pid = patient.id
    db.dispose()
    both = runner.invoke(app, ["clinic", "delete", "Ward B", "--patient", pid, "--visit", "x"],
                         env=env)  # fmt: skip
    assert both.exit_code == 2 and "exactly one" in both.output
    missing = runner.invoke(app, ["clinic", "delete", "Ward B", "--visit", "nope"], env=env)
    assert missing.exit_code == 2 and "no visit nope" in missing.output
    done = runner.invoke(app, ["clinic", "delete", "Ward B", "--patient", pid], env=env)
    assert done.exit_code == 0, done.output
    assert f"erased patient {pid}: 1 patients, 2 visits" in done.output
    log = runner.invoke(app, ["clinic", "audit", "Ward B"], env=env)
    assert log.exit_code == 0 and "delete patient" in log.output and "cli " in log.output
    assert "Zed" not in log.output and "MRN-9" not in log.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_starts_a_real_server(tmp_path: Path) -> None:
    """`emgdx serve` as a clinic would start it: SQLite in EMGDX_HOME, no model named (the
    shipped one)."""
    port = _free_port()
    env = {**os.environ, "EMGDX_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emgdx.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/v1/health", timeout=2
                ) as r:
                    health = json.load(r)
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"server did not start: {proc.stdout.read() if proc.stdout else ''}"
                    )
                time.sleep(0.3)
        from emgdx.pretrained import DEFAULT_MODEL

        assert health["status"] == "ok" and health["model"]["name"] == DEFAULT_MODEL
        assert (tmp_path / "clinic.db").is_file()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            page = r.read().decode()
        assert "<script" in page and "http://" not in page.replace(f"127.0.0.1:{port}", "")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=5) as r:
            paths = json.load(r)["paths"]
        assert "/api/v1/visits/{visit_id}/analysis" in paths
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert "Traceback" not in out and "shipped model" in out


def test_web_page_uses_no_external_resource() -> None:
    for path in web_dir().iterdir():
        text = path.read_text(encoding="utf-8")
        for bad in ("http://", "https://", "//cdn", "@import url("):
            assert bad not in text.replace("http://www.w3.org/2000/svg", ""), (path.name, bad)


def test_wheel_carries_web_page_and_migrations(tmp_path: Path) -> None:
    import shutil

    root = Path(__file__).resolve().parents[1]
    # Build from a copy: setuptools writes build/ and egg-info beside the sources.
    src = tmp_path / "src-copy"
    shutil.copytree(
        root / "src", src / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    import zipfile

    (wheel,) = tmp_path.glob("emgdx-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in web_dir().iterdir():
        assert f"emgdx/clinic/web/{f.name}" in names
    for f in ("env.py", "script.py.mako", "versions/0001_initial.py"):
        assert f"emgdx/clinic/migrations/{f}" in names
    assert (migrations_dir() / "env.py").is_file()
