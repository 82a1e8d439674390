"""The suite's contract about the real data: skip with a reason locally, fail under CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest(env_extra: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"CI", "EMGDX_DATA"}}
    env.update(env_extra)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-rs",
            "tests/test_cli.py::test_info_json_on_real_record",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_data_skips_with_reason_locally(tmp_path: Path) -> None:
    result = _pytest({"EMGDX_DATA": str(tmp_path / "nowhere")}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout and "real N2001 data not found" in result.stdout


def test_missing_data_fails_under_ci(tmp_path: Path) -> None:
    result = _pytest({"EMGDX_DATA": str(tmp_path / "nowhere"), "CI": "true"}, tmp_path)
    assert result.returncode != 0
    assert "CI=true but real N2001 data not found" in result.stdout + result.stderr
