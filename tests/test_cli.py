"""The `emgdx` command: info (record, folder, JSON), simulate, demo, and clear errors."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emgdx.cli import app
from emgdx.demo import run_demo
from emgdx.errors import ConfigError
from emgdx.recording import LABELS

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.realdata
def test_info_json_on_real_record(n2001: Path) -> None:
    code, stdout, _ = _invoke("info", str(n2001 / "N2001A01BB01.hea"), "--json")
    assert code == 0, stdout
    payload = json.loads(stdout)
    (row,) = payload["records"]
    assert row["record_id"] == "N2001A01BB01"
    assert row["subject_id"] == "N2001A01"
    assert row["label"] == "neurogenic"
    assert row["level"] == "low"
    assert row["fs_hz"] == pytest.approx(23437.5)
    assert row["duration_s"] == pytest.approx(262124 / 23437.5)
    assert row["qc_flags"] == ""
    assert payload["unreadable"] == []


@pytest.mark.realdata
def test_info_folder_reports_bad_files_and_flags(n2001: Path, tmp_path: Path) -> None:
    for name in ("N2001A06BB08", "N2001C01BB51"):  # an empty record and a clean one
        for ext in (".hea", ".bin"):
            shutil.copy(n2001 / f"{name}{ext}", tmp_path / f"{name}{ext}")
    (tmp_path / "broken.csv").write_text("time,emg\n0.0,1.0\n0.001,abc\n")
    code, stdout, _ = _invoke("info", str(tmp_path), "--json")
    assert code == 1  # as predict: a file could not be read (the others are shown)
    payload = json.loads(stdout)
    flags = {r["record_id"]: r["qc_flags"] for r in payload["records"]}
    assert flags["N2001C01BB51"] == ""
    assert "empty" in flags["N2001A06BB08"]
    (bad,) = payload["unreadable"]
    assert bad["path"].endswith("broken.csv") and "broken.csv" in bad["problem"]

    code, stdout, stderr = _invoke("info", str(tmp_path))  # the human table
    assert code == 1 and "N2001C01BB51" in stdout
    # Not a terminal (a log, CI): progress as plain lines, ending at 100 %, never silence.
    assert "reading: 100 % (3/3)" in stderr, stderr


def test_progress_lines_without_a_terminal_say_how_far_and_how_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rich.console import Console

    from emgdx.cli import console as ui

    ticks = iter([0.0, 1.0, 2.0, 7.0, 8.0, 20.0])
    monkeypatch.setattr(ui.time, "monotonic", lambda: next(ticks))
    buffer = Console(file=io.StringIO(), width=200)
    step = ui._log_lines("training", buffer)
    for done in (0, 1, 2, 3, 4, 10):
        step(done, 10)
    lines = buffer.file.getvalue().splitlines()
    # the start, then no more than one line every 5 s, and the end
    assert lines == [
        "training: 0 % (0/10), 0 s elapsed",
        "training: 30 % (3/10), 7 s elapsed, about 16 s left",
        "training: 100 % (10/10), 20 s elapsed",
    ]


def test_info_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.hea"
    code, _, stderr = _invoke("info", str(missing))
    assert code == 1 and "nope.hea" in stderr and "no readable record" in stderr
    junk = tmp_path / "junk.xyz"
    junk.write_bytes(b"\x00\x01garbage")
    code, _, stderr = _invoke("info", str(junk))
    assert code == 1 and "junk.xyz" in stderr


def test_simulate_then_info_roundtrip(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    code, stdout, stderr = _invoke(
        "simulate",
        str(out),
        "--subjects-per-class",
        "1",
        "--records-per-subject",
        "2",
        "--duration-s",
        "2",
        "--fs-hz",
        "10000",
        "--seed",
        "3",
    )
    assert code == 0, stdout + stderr
    code, stdout, _ = _invoke("info", str(out), "--json")
    assert code == 0
    rows = json.loads(stdout)["records"]
    assert len(rows) == 6
    assert sorted({r["label"] for r in rows}) == sorted(LABELS)
    assert {r["fs_hz"] for r in rows} == {10000.0}
    assert len({r["subject_id"] for r in rows}) == 3


def test_run_demo_small_and_deterministic() -> None:
    kwargs = dict(
        seed=5,
        subjects_per_class=1,
        records_per_subject=2,
        duration_s=3.0,
        fs_hz=10_000.0,
        evaluate=False,  # training + evaluation: tests/test_cli_diagnose.py
    )
    a = run_demo(**kwargs)
    b = run_demo(**kwargs)
    table = a.class_table()
    assert list(table["label"]) == list(LABELS)
    assert (table["records"] == 2).all() and (table["windows"] > 0).all()
    assert table["qc_flagged"].sum() == 4
    assert len(a.windows) == table["windows"].sum()
    assert a.windows.fs_hz == pytest.approx(a.config.target_fs_hz)
    score = a.qc_score()
    assert score["faults_injected"] == 4 and score["faults_caught"] == 4, score
    assert score["clean_flagged"] == [], score
    # the dropout record yields no windows at all; the clipped one loses its burst
    dropout = next(rid for rid, kind in a.faults.items() if kind == "dropout")
    assert dropout not in set(a.windows.index["record_id"])
    np.testing.assert_array_equal(a.windows.data, b.windows.data)
    # every window maps back to a simulated record of the right class
    man = a.cohort.manifest.set_index("record_id")
    assert (
        man.loc[a.windows.index["record_id"], "label"].to_numpy()
        == a.windows.index["label"].to_numpy()
    ).all()


@pytest.mark.slow
def test_demo_command_prints_summary(tmp_path: Path) -> None:
    # the default cohort, with a short subject-wise evaluation (the default run is ~1 min)
    out = tmp_path / "demo"
    code, stdout, stderr = _invoke(
        "demo", "--json", "--out", str(out), "--epochs", "1", "--cv", "kfold"
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert {row["label"] for row in summary["classes"]} == set(LABELS)
    assert summary["n_windows"] > 0
    assert summary["seconds"]["prepare"] > 0
    ev = summary["evaluation"]
    assert ev["cv"] == "kfold" and ev["n_folds"] == 3 and ev["subjects_total"] == 9
    assert Path(ev["report"]["html"]) == out / "report.html" and (out / "report.html").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["cv"] == "kfold"
    # the pipeline evaluated runs exactly the preprocessing the summary prints
    assert results["config"]["preprocess"] == summary["preprocess"]
    assert len(list((out / "records").glob("*.hea"))) == 27


def test_demo_runs_again_in_its_own_folder_but_never_over_other_data(tmp_path: Path) -> None:
    kwargs = dict(
        seed=2, subjects_per_class=1, records_per_subject=1, duration_s=2.0, evaluate=False
    )
    records = tmp_path / "records"
    run_demo(out_dir=records, **kwargs)
    first = sorted(p.name for p in records.iterdir())
    run_demo(out_dir=records, **kwargs)  # a second run replaces the first one's records
    assert sorted(p.name for p in records.iterdir()) == first
    # Anything that is not the demo's own output stops it, and stays untouched.
    (records / "my-notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        run_demo(out_dir=records, **kwargs)
    assert (records / "my-notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in records.iterdir()) == sorted([*first, "my-notes.txt"])
    # A real (not simulated) record listed in a manifest is not the demo's either.
    other = tmp_path / "other"
    shutil.copytree(records, other)
    (other / "my-notes.txt").unlink()
    hea = next(other.glob("*.hea"))
    hea.write_text(hea.read_text().replace("simulated: true", "clinic: A"))
    with pytest.raises(ConfigError, match="not empty"):
        run_demo(out_dir=other, **kwargs)
    assert "clinic: A" in hea.read_text()


def test_user_text_with_brackets_is_printed_as_given(tmp_path: Path) -> None:
    # rich would take "[bold]" and "[ml]" for markup tags and drop them.
    bad = tmp_path / "rec[bold][ml].csv"
    bad.write_text("time,emg\n0.0,1.0\n0.001,abc\n")
    code, _, stderr = _invoke("info", str(bad))
    assert code == 1 and "rec[bold][ml].csv" in stderr
    _, _, stderr = _invoke("info", str(tmp_path))
    assert "rec[bold][ml].csv" in stderr, stderr


def test_missing_optional_package_names_the_extra(tmp_path: Path) -> None:
    """`emgdx demo` without torch: a one-line install hint, exit 2, and nothing written."""
    script = f"""
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, NoTorch())
sys.argv = ["emgdx", "demo", "--out", {str(tmp_path / "demo")!r}]
from emgdx.cli import main
main()
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'emgdx[ml]'" in proc.stderr and "'torch'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "demo").exists()


def _base_closure() -> set[str]:
    """Distributions the base install brings (emgdx's plain dependencies, transitively)."""
    import re
    from importlib import metadata

    def name(req: str) -> str:
        return re.split(r"[\s\[<>=!~;(]", req, maxsplit=1)[0].lower().replace("_", "-")

    seen: set[str] = set()
    todo = [name(r) for r in metadata.requires("emgdx") or [] if "extra ==" not in r]
    while todo:
        dist = todo.pop()
        if dist in seen:
            continue
        seen.add(dist)
        try:
            reqs = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [name(r) for r in reqs if "extra ==" not in r]
    return seen


ROOT = Path(__file__).resolve().parents[1]


def _readme_main_command() -> tuple[str, set[str]]:
    """The README's fresh-machine command and every extra it installs (nested ones too)."""
    import re
    import tomllib

    readme = (ROOT / "README.md").read_text()
    (command,) = [line for line in readme.splitlines() if line.rstrip().endswith("emgdx demo")]
    match = re.search(r"pip install -e \"?\.(?:\[([a-z,]+)\])?\"?", command)
    assert match, command
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    installed: set[str] = set()
    todo = list(filter(None, (match.group(1) or "").split(",")))
    while todo:  # nested extras: "explain" brings "emgdx[ml,plots]"
        extra = todo.pop()
        if extra not in installed:
            installed.add(extra)
            for req in groups[extra]:
                nested = re.match(r"emgdx\[([a-z,]+)\]", req)
                todo += nested.group(1).split(",") if nested else []
    return command, installed


def _not_installed_by(installed: set[str], loaded: set[str]) -> dict[str, str]:
    """Optional modules in ``loaded`` whose extra ``installed`` lacks (and that no base
    dependency brings)."""
    from importlib import metadata

    from emgdx.cli.console import EXTRA_OF_MODULE

    base = _base_closure()
    dists = metadata.packages_distributions()
    return {
        module: extra
        for module, extra in EXTRA_OF_MODULE.items()
        if module in loaded
        and extra not in installed
        and not {d.lower() for d in dists.get(module, [])} & base
    }


def _modules_after(script: str, *args: str, timeout: int = 300) -> set[str]:
    """Top-level modules loaded by ``script`` in a fresh interpreter (it prints them last)."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_readme_main_command_installs_what_the_demo_imports(tmp_path: Path) -> None:
    """The README's fresh-machine command must install every optional package the demo uses."""
    command, installed = _readme_main_command()
    # A small demo run, with training, in a fresh interpreter: which optional modules load?
    script = f"""
import json, sys
from emgdx.demo import run_demo
run_demo(seed=1, subjects_per_class=2, records_per_subject=1, duration_s=3.0,
         epochs=1, cv="kfold", k=2, n_boot=10, report_dir={str(tmp_path)!r})
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""
    loaded = _modules_after(script)
    assert "torch" in loaded  # the demo trains a CNN
    missing = _not_installed_by(installed, loaded)
    assert not missing, f"README's demo command lacks extras for {missing}: {command}"


#: Every command of the README's "Using it", each run once on a small simulated cohort.
USING_IT = """
import json, pathlib, sys
from typer.testing import CliRunner
from emgdx.cli import app

tmp = pathlib.Path(sys.argv[1])
ran = []

def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exit_code != 0:
        raise SystemExit(f"emgdx {args}: exit {result.exit_code}\\n{result.output}")
    ran.append(str(args[0]))

sim = tmp / "sim"
run("simulate", sim, "--subjects-per-class", 2, "--records-per-subject", 1,
    "--duration-s", 3, "--fs-hz", 8000, "--seed", 1)
files = sorted(sim.glob("*.hea"))
run("info", files[0])
run("info", sim, "--json")
run("predict", *files[:2])
run("train", sim, "--model", "random_forest", "--out", tmp / "rf")
run("train", sim, "--model", "cnn1d", "--epochs", 1, "--out", tmp / "cnn1d")
run("evaluate", sim, "--model", "random_forest", "--cv", "kfold", "--k", 2, "--n-boot", 10,
    "--out", tmp / "reports")
run("adapt", tmp / "cnn1d", sim, "--out", tmp / "cnn1d-adapted")
run("predict", tmp / "cnn1d", *files[:2], "--json")
run("export", tmp / "cnn1d", "--onnx", "--int8")
run("explain", tmp / "cnn1d", files[0], "--out", tmp / "why")
run("report", tmp / "cnn1d", *files[:2], "--figures", 1, "--out", tmp / "visit.pdf")
run("monitor", tmp / "cnn1d", "--source", f"file:{files[0]}", "--speed", 0, "--no-live")
import pylsl  # what `monitor --source lsl:NAME` reads through
print(json.dumps(sorted(set(ran))))
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_readme_main_command_installs_what_every_using_it_command_imports(
    tmp_path: Path,
) -> None:
    """Every command the README's "Using it" shows runs with the first command's install."""
    import re

    command, installed = _readme_main_command()
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Using it", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    shown = set(re.findall(r"^emgdx (\w+)", block, flags=re.M))
    proc = subprocess.run(
        [sys.executable, "-c", USING_IT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran_line, loaded_line = proc.stdout.strip().splitlines()[-2:]
    ran, loaded = set(json.loads(ran_line)), set(json.loads(loaded_line))
    # the demo has its own test above; every other command shown was run here
    assert shown - {"demo"} <= ran, shown - ran
    missing = _not_installed_by(installed, loaded)
    assert not missing, f"README's main command lacks extras for {missing}: {command}"


def test_commands_that_catch_import_errors_also_name_the_extra(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from emgdx.cli.console import fail

    result = fail(ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime"))
    assert result.exit_code == 2
    assert "pip install 'emgdx[onnx]'" in capsys.readouterr().err
    fail(ModuleNotFoundError("No module named 'leftpad'", name="leftpad"))  # not ours
    assert "No module named 'leftpad'" in capsys.readouterr().err


def test_default_threads_follow_physical_cores_and_load(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from emgdx import threads

    real_cores = threads.physical_cores()
    busy_cores = threads.busy_cores  # before it is replaced below
    assert 1 <= real_cores <= (os.cpu_count() or 1)
    monkeypatch.setattr(threads, "physical_cores", lambda: 4)
    for busy, expected in ((0.0, 4), (1.4, 3), (2.6, 1), (9.0, 1)):
        monkeypatch.setattr(threads, "busy_cores", lambda busy=busy: busy)
        assert threads.default_threads() == expected
    # busy cores: the CPU use between two /proc/stat readings (no minute-long lag) ...
    readings = iter([(100, 1000), (250, 1200)])  # 150 of 200 jiffies busy: 3/4 of the CPUs
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(readings))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    assert busy_cores(0.0) == pytest.approx(3.0)
    # ... and the load average only where there is no /proc/stat
    monkeypatch.setattr(threads, "_cpu_times", lambda: None)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.5, 1.0, 0.5))
    assert busy_cores(0.0) == 1.5
    monkeypatch.undo()
    assert threads._cpu_times() is None or 0 <= busy_cores(0.05) <= (os.cpu_count() or 1)
    before = torch.get_num_threads()
    try:
        assert threads.configure_torch_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_demo_help_states_the_epochs_the_demo_trains() -> None:
    from emgdx.demo import DEMO_EPOCHS

    result = runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert f"default {DEMO_EPOCHS})" in result.stdout
