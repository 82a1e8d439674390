"""The `emgdx` command: info (record, folder, JSON), simulate, demo, and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emgdx.cli import app
from emgdx.demo import run_demo
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
    assert code == 0
    payload = json.loads(stdout)
    flags = {r["record_id"]: r["qc_flags"] for r in payload["records"]}
    assert flags["N2001C01BB51"] == ""
    assert "empty" in flags["N2001A06BB08"]
    (bad,) = payload["unreadable"]
    assert bad["path"].endswith("broken.csv") and "broken.csv" in bad["problem"]

    code, stdout, _ = _invoke("info", str(tmp_path))  # the human table
    assert code == 0 and "N2001C01BB51" in stdout


def test_info_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.hea"
    code, _, stderr = _invoke("info", str(missing))
    assert code == 2 and "nope.hea" in stderr
    junk = tmp_path / "junk.xyz"
    junk.write_bytes(b"\x00\x01garbage")
    code, _, stderr = _invoke("info", str(junk))
    assert code == 2 and "junk.xyz" in stderr


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
    assert summary["seconds"]["preprocess"] > 0
    ev = summary["evaluation"]
    assert ev["cv"] == "kfold" and ev["n_folds"] == 3 and ev["subjects_total"] == 9
    assert Path(ev["report"]["html"]) == out / "report.html" and (out / "report.html").is_file()
    assert json.loads((out / "results.json").read_text())["cv"] == "kfold"
    assert len(list((out / "records").glob("*.hea"))) == 27
