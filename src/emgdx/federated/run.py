"""Run a federation: Flower's simulation engine, or real Flower processes on loopback.

:func:`simulate` runs the ServerApp and one ClientApp per site in Flower's simulation engine
(Ray backend). :func:`deploy` starts a real ``flower-superlink``, one ``flower-supernode``
per site (each told where its data lie through ``--node-config``) and ``flwr run``, waits for
the run to finish, collects ``result.json`` and stops every process it started. Loopback runs
are ``--insecure``; docs/federated.md gives the TLS and authentication flags a real
deployment uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emgdx.errors import ConfigError, EmgdxError
from emgdx.federated.core import FedSettings, pooled_metrics

CONNECTION = "emgdx-loopback"

_APP_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "emgdx-federated"
version = "0.1.0"
description = "emgdx federated EMG diagnosis (the code is the installed emgdx package)"
license = "BSD-3-Clause"
dependencies = []

[tool.flwr.app]
publisher = "emgdx"

[tool.flwr.app.components]
serverapp = "emgdx.federated.apps:server_app"
clientapp = "emgdx.federated.apps:client_app"

[tool.flwr.app.config]
settings-file = ""
"""


class FederatedRunError(EmgdxError):
    """A federated run did not complete (a process failed or it timed out)."""


def _read_result(out_dir: Path, settings: FedSettings) -> dict[str, Any]:
    path = out_dir / "result.json"
    if not path.exists():
        raise FederatedRunError(f"the run wrote no {path}")
    result: dict[str, Any] = json.loads(path.read_text())
    task = str(settings.pipeline.get("task", "3class"))
    result["held_out"] = pooled_metrics(out_dir, settings.sites, task)
    result["held_out_by_site"] = {
        site.name: pooled_metrics(out_dir, [site], task)
        for site in settings.sites
        if site.test_subjects
    }
    return result


def _clear_out(settings: FedSettings, what: str) -> Path:
    """``settings.out_dir`` cleared of an earlier run's results (sites and folder checked)."""
    if not settings.sites:
        raise ConfigError(f"{what} needs settings.sites (one SiteSpec per site)")
    if not settings.out_dir:
        raise ConfigError("set settings.out_dir (the run writes result.json there)")
    out = Path(settings.out_dir)
    (out / "result.json").unlink(missing_ok=True)
    shutil.rmtree(out / "predictions", ignore_errors=True)
    return out


def simulate(settings: FedSettings, *, verbose: bool = False) -> dict[str, Any]:
    """Run the federation in Flower's simulation engine; returns the ``result.json`` summary.

    One virtual SuperNode per site (``settings.sites``); ClientApps run one at a time on
    ``settings.threads`` CPU(s).
    """
    out = _clear_out(settings, "simulation")
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.threads))
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    from flwr.simulation import run_simulation

    from emgdx.federated.apps import make_client_app, make_server_app

    backend: dict[str, Any] = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": max(1, settings.threads),
            "include_dashboard": False,
            "log_to_driver": verbose,
        },
    }
    run_simulation(
        server_app=make_server_app(settings),
        client_app=make_client_app(settings.sites),
        num_supernodes=len(settings.sites),
        backend_config=backend,
        verbose_logging=verbose,
    )
    return _read_result(out, settings)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise FederatedRunError(f"{proc.args!r} exited with {proc.returncode} at start")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise FederatedRunError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def _stop(procs: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """SIGTERM each process group we started, then SIGKILL what is left after ``grace``."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    end = time.monotonic() + grace
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.1, end - time.monotonic()))
    for p in procs:
        # Children of the process (flwr-serverapp / flwr-clientapp) share its group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        if p.poll() is None:
            p.wait(timeout=5)


def _processes_of(home: Path) -> list[Any]:
    """Every live process whose environment carries ``FLWR_HOME=home``.

    The SuperLink starts its SuperExec detached (a new session), and that starts
    ``flwr-serverapp`` / ``flwr-clientapp``; neither is in a process group we started, and
    one may outlive its parent by a moment. They all inherit our ``FLWR_HOME``, which is
    unique to this run, so it names them exactly.
    """
    import psutil

    marker = str(home)
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if proc.environ().get("FLWR_HOME") == marker:
                found.append(proc)
    return found


def _stop_strays(home: Path, grace: float = 10.0) -> list[str]:
    """Terminate (then kill) what is left of this run; returns what had to be stopped."""
    import psutil

    names: list[str] = []
    # Again while any is found: a SuperExec could start an app between listing and stopping.
    for _ in range(3):
        strays = _processes_of(home)
        if not strays:
            break
        for proc in strays:
            with contextlib.suppress(psutil.Error):
                names.append(" ".join(proc.cmdline()[:2]))
                proc.terminate()
        _gone, alive = psutil.wait_procs(strays, timeout=grace)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
    return names


def write_app(folder: Path) -> Path:
    """The Flower app folder ``flwr run`` packages (its code is the installed emgdx)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(_APP_PYPROJECT)
    return folder


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise ConfigError(f"{name!r} not found: install the extra, pip install 'emgdx[federated]'")
    return found


def deploy(
    settings: FedSettings,
    *,
    workdir: str | os.PathLike[str] | None = None,
    timeout_s: float = 600.0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the federation as real Flower processes on loopback (insecure; a demo).

    Starts ``flower-superlink``, one ``flower-supernode`` per site and ``flwr run``; waits for
    the run to end; stops all of them (also on error). Logs of every process are kept in
    ``<workdir>/logs``. Returns the ``result.json`` summary.

    Raises
    ------
    FederatedRunError
        A process failed, or the run did not finish within ``timeout_s``.
    """
    out = _clear_out(settings, "deployment").resolve()
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _msg: None)
    # Absolute paths: the Flower processes run in other working directories.
    settings = dataclasses.replace(
        settings,
        out_dir=str(out),
        sites=[
            dataclasses.replace(site, data_dir=str(Path(site.data_dir).resolve()))
            for site in settings.sites
        ],
    )
    work = Path(workdir).resolve() if workdir else Path(tempfile.mkdtemp(prefix="emgdx-fl-"))
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    app = write_app(work / "app")
    settings_file = work / "settings.json"
    settings_file.write_text(settings.to_json())
    home = work / "flwr-home"
    home.mkdir(exist_ok=True)
    port = _free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    env = dict(os.environ, FLWR_HOME=str(home), OMP_NUM_THREADS=str(settings.threads))
    procs: list[subprocess.Popen[bytes]] = []
    names: dict[int, str] = {}

    def start(name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        # The child writes to its own copy of the log's file descriptor; ours can close.
        with open(logs / f"{name}.log", "wb") as fh:
            p = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True
            )
        procs.append(p)
        names[p.pid] = name
        return p

    try:
        link = start(
            "superlink",
            [
                _bin("flower-superlink"),
                "--insecure",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--disable-runtime-dependency-installation",
            ],
        )
        _wait_port(port, link, 60)
        say(f"SuperLink on 127.0.0.1:{port}")
        for site in settings.sites:
            start(
                f"supernode-{site.name}",
                [
                    _bin("flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{port}",
                    "--port",
                    str(_free_port()),
                    "--node-config",
                    site.to_node_config(),
                ],
            )
        say(f"{len(settings.sites)} SuperNodes started")
        runner = start(
            "flwr-run",
            [
                _bin("flwr"),
                "run",
                str(app),
                CONNECTION,
                "--run-config",
                f"settings-file='{settings_file}'",
                "--stream",
            ],
        )
        end = time.monotonic() + timeout_s
        while runner.poll() is None:
            for p in procs:
                if p is not runner and p.poll() is not None:
                    raise FederatedRunError(
                        f"{names[p.pid]} exited with {p.returncode}; see {logs}"
                    )
            if time.monotonic() > end:
                raise FederatedRunError(f"the run did not finish in {timeout_s:.0f} s; see {logs}")
            time.sleep(0.5)
        if runner.returncode != 0:
            raise FederatedRunError(f"flwr run exited with {runner.returncode}; see {logs}")
        # `flwr run --stream` returns when the run ends; result.json is written just before.
        for _ in range(40):
            if (out / "result.json").exists():
                break
            time.sleep(0.25)
        result = _read_result(out, settings)
        result["deployment"] = {"superlink": f"127.0.0.1:{port}", "logs": str(logs)}
        say(f"run finished; result in {out}")
        return result
    finally:
        _stop(procs)
        strays = _stop_strays(home)
        if strays:
            say(f"stopped {len(strays)} Flower process(es) left behind: {strays}")
