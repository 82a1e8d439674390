"""Federated learning (Flower): simulation, deployment on loopback, FedBN, FedProx.

Simulated cohort, tiny cnn1d; each run is a few rounds on a few subjects.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")
torch = pytest.importorskip("torch")

from emgdx.federated import FedSettings, SiteSpec  # noqa: E402
from emgdx.federated.core import (  # noqa: E402
    fit_local,
    initial_state,
    local_pipeline,
    site_windows,
)
from emgdx.pipeline import Pipeline  # noqa: E402
from emgdx.preprocess import PreprocessConfig  # noqa: E402
from emgdx.simulate import simulate_cohort, write_cohort  # noqa: E402
from emgdx.training import TrainConfig  # noqa: E402

FS = 4000.0
PRE = PreprocessConfig(target_fs_hz=FS, band_hz=(20.0, 1800.0), window_s=0.5, hop_s=0.5)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fed") / "cohort"
    write_cohort(simulate_cohort(3, 3, fs_hz=FS, duration_s=4.0, seed=1), folder)
    return folder


def _pipe_config() -> dict[str, object]:
    pipe = Pipeline(
        preprocess=PRE,
        model="cnn1d",
        model_params={"n_filters": (8, 8)},
        train=TrainConfig(batch_size=16, lr=3e-3, seed=0),
    )
    return pipe.to_config()


def _sites(data: Path) -> list[SiteSpec]:
    # Non-IID: site C holds no myopathy subject; every site holds out one subject.
    d = str(data)
    return [
        SiteSpec("A", d, ("SIM-H01", "SIM-N01", "SIM-M01"), ("SIM-H03",)),
        SiteSpec("B", d, ("SIM-H02", "SIM-N02", "SIM-M02"), ("SIM-M03",)),
        SiteSpec("C", d, ("SIM-H01", "SIM-N01"), ("SIM-N03",)),
    ]


def _settings(data: Path, out: Path, strategy: str, rounds: int, epochs: int) -> FedSettings:
    return FedSettings(
        pipeline=_pipe_config(),
        strategy=strategy,  # type: ignore[arg-type]
        rounds=rounds,
        local_epochs=epochs,
        out_dir=str(out),
        sites=_sites(data),
    )


def test_settings_round_trip_and_checks(data: Path) -> None:
    s = _settings(data, data.parent / "x", "fedprox", 2, 1)
    assert FedSettings.from_json(s.to_json()) == s
    with pytest.raises(Exception, match="strategy"):
        FedSettings(pipeline={}, strategy="fedsgd")  # type: ignore[arg-type]
    site = s.sites[0]
    text = site.to_node_config()
    from flwr.common.config import parse_config_args

    assert SiteSpec.from_node_config(parse_config_args([text])) == site


def test_simulation_learns(data: Path, tmp_path: Path) -> None:
    from emgdx.federated import simulate

    settings = _settings(data, tmp_path, "fedavg", rounds=2, epochs=3)
    result = simulate(settings)
    assert set(result["train"]) == {"1", "2"} and set(result["evaluate"]) == {"1", "2"}
    # The global model moved away from the common seeded initialisation ...
    init = initial_state(local_pipeline(settings.pipeline, 1, 0))
    final = dict(np.load(tmp_path / "global.npz"))
    assert set(final) == set(init)
    moved = [k for k in init if init[k].dtype.kind == "f" and not np.allclose(init[k], final[k])]
    assert len(moved) > len(init) // 2
    # ... the sites' training loss fell ...
    assert result["train"]["2"]["train-loss"] < result["train"]["1"]["train-loss"]
    # ... and it ranks held-out subjects' records better than a constant score (AUC 0.5).
    # (At this size, 2 rounds, balanced accuracy is not reliably above chance; AUC is.)
    held = result["held_out"]["record"]
    assert held["n"] == 9  # 3 held-out subjects x 3 records
    assert held["roc_auc"] > 0.75, held


def test_fedbn_keeps_batch_norm_local(data: Path) -> None:
    from emgdx.federated.apps import train_round

    site = _sites(data)[0]
    cfg = {"pipeline": json.dumps(_pipe_config()), "local-epochs": 1, "strategy": "fedbn"}
    model = local_pipeline(_pipe_config(), 1, 0).new_model()
    bn = model.local_state_keys()
    assert bn and {k.rsplit(".", 1)[1] for k in bn} >= {"weight", "running_var"}
    state1, local1, m1 = train_round(site, {**cfg, "server-round": 1}, model.get_state(), None)
    assert local1 is not None and set(local1) == set(bn) and m1["num-examples"] > 0
    # Round 2: the server's batch-norm values (here absurd) must not reach the site's model.
    poisoned = {k: (np.full_like(v, 1e3) if k in bn else v) for k, v in state1.items()}
    state2, local2, _ = train_round(site, {**cfg, "server-round": 2}, poisoned, local1)
    assert local2 is not None
    for k in bn:
        if k.endswith(("weight", "running_var")):
            assert np.abs(state2[k]).max() < 100, k  # trained on from the local values
    assert any(not np.allclose(local1[k], local2[k]) for k in bn)  # and trained locally
    # FedAvg, for contrast, takes the server's batch norm.
    fedavg = {**cfg, "strategy": "fedavg", "server-round": 2}
    state3, local3, _ = train_round(site, fedavg, poisoned, local1)
    assert local3 is None
    assert max(np.abs(state3[k]).max() for k in bn if k.endswith("running_var")) > 100


def test_fedprox_stays_closer_to_global(data: Path) -> None:
    site = _sites(data)[0]
    cfg = _pipe_config()
    start = initial_state(local_pipeline(cfg, 1, 0))

    def distance(mu: float) -> float:
        pipe = local_pipeline(cfg, 3, 5)
        windows, _ = site_windows(pipe, site)
        end, _ = fit_local(pipe, windows, start, proximal_mu=mu)
        # Trainable parameters (the proximal term's domain; BN running statistics excluded).
        params = [name for name, _ in pipe.model_.module.named_parameters()]
        return float(sum(((end[k] - start[k]) ** 2).sum() for k in params))

    d0, d1 = distance(0.0), distance(10.0)
    assert d0 > 0 and d1 < 0.5 * d0, (d0, d1)


def _our_processes(home: Path) -> list[int]:
    """Processes whose environment names this run's FLWR_HOME (every child inherits it)."""
    found = []
    needle = f"FLWR_HOME={home}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:200].decode()
    except OSError:
        return "(gone)"


def test_stray_flower_processes_are_stopped(tmp_path: Path) -> None:
    """A detached process of this run (new session, like flwr-serverapp) is found and stopped."""
    import subprocess
    import sys
    import time

    from emgdx.federated.run import _processes_of, _stop_strays

    home = tmp_path / "flwr-home"
    other = tmp_path / "other-home"
    # One child ignores SIGTERM, so the kill path is exercised too.
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    ours = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=dict(os.environ, FLWR_HOME=str(home)),
            start_new_session=True,
        )
        for _ in range(2)
    ]
    theirs = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env=dict(os.environ, FLWR_HOME=str(other)),
        start_new_session=True,
    )
    try:
        for _ in range(50):  # until both have set their SIGTERM handler
            if len(_processes_of(home)) == 2:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        assert {p.pid for p in _processes_of(home)} == {p.pid for p in ours}
        stopped = _stop_strays(home, grace=1.0)
        assert len(stopped) == 2
        for p in ours:  # SIGTERM is ignored, so only the kill can have ended them
            p.wait(timeout=5)
        assert not _processes_of(home)
        assert theirs.poll() is None, "a process of another run was touched"
    finally:
        for p in [*ours, theirs]:
            p.kill()
            p.wait()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").exists(), reason="process check reads /proc")
def test_deploy_runs_real_processes_on_loopback(data: Path, tmp_path: Path) -> None:
    from emgdx.federated import deploy

    settings = _settings(data, tmp_path / "out", "fedprox", rounds=1, epochs=1)
    work = tmp_path / "work"
    result = deploy(settings, workdir=work, timeout_s=400)
    assert result["strategy"] == "fedprox" and set(result["train"]) == {"1"}
    assert result["deployment"]["superlink"].startswith("127.0.0.1:")
    assert result["held_out"]["record"]["n"] == 9
    logs = {p.name for p in (work / "logs").iterdir()}
    assert {"superlink.log", "supernode-A.log", "supernode-B.log", "supernode-C.log"} <= logs
    assert (tmp_path / "out" / "global.npz").exists()
    left = {pid: _cmdline(pid) for pid in _our_processes(work / "flwr-home")}
    assert not left, f"processes left running: {left}"
    assert os.environ.get("FLWR_HOME") != str(work / "flwr-home")


def test_cli_reports_bad_settings_clearly(data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from emgdx.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app, ["federated", "simulate", str(data), "--out", str(tmp_path), "--strategy", "fedsgd"]
    )
    assert res.exit_code != 0 and "strategy must be one of" in res.output
    res = runner.invoke(
        app,
        [
            "federated",
            "deploy",
            str(data),
            "--out",
            str(tmp_path),
            "--exclude",
            "A:healthy",
            "--exclude",
            "B:healthy",
            "--exclude",
            "C:healthy",
        ],
    )
    assert res.exit_code != 0 and "every site excludes 'healthy'" in res.output


def test_cli_without_held_out_subjects_trains_and_logs_progress(data: Path, tmp_path: Path) -> None:
    """`--holdout 0`: nothing to evaluate, which is not an error (Flower divided by zero
    examples); every round ends with a plain progress line, without colour codes in a log."""
    import subprocess
    import sys

    args = ["federated", "simulate", str(data), "--out", str(tmp_path), "--n-sites", "2"]
    args += ["--holdout", "0", "--rounds", "2", "--fs", str(FS), "--batch-size", "16"]
    run = subprocess.run(
        [sys.executable, "-m", "emgdx.cli", *args], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no subject held out, so no evaluation" in " ".join(run.stdout.split())
    assert "round 1/2 done (50%)" in run.stderr and "round 2/2 done (100%)" in run.stderr
    assert "\x1b[" not in run.stderr
