"""docs/tutorial.md runs as written: every ``$ command`` of its ``console`` blocks is executed in
order in one fresh folder, and every output line it shows (``...`` elides) must appear in what
the command printed (whitespace-normalised: tables and wrapped lines compare equal)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"


def _steps(text: str) -> list[tuple[str, list[str]]]:
    """``(command, expected output lines)`` of every ``$`` line in the console blocks."""
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps and line.strip():
                steps[-1][1].append(line)
    return steps


def _normal(text: str) -> str:
    return " ".join(text.split())


def test_the_tutorial_parses_into_commands_with_expected_output() -> None:
    steps = _steps(TUTORIAL.read_text())
    commands = [c.split()[1] for c, _ in steps if c.startswith("emgdx ")]
    assert commands == ["simulate", "info", "predict", "predict", "report"]
    assert all(expected for c, expected in steps if c.startswith("emgdx "))


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    for command, expected in _steps(TUTORIAL.read_text()):
        run = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, f"$ {command}\n{run.stdout}\n{run.stderr}"
        printed = _normal(run.stdout + "\n" + run.stderr)
        for line in expected:
            for piece in line.split("..."):  # "..." elides, also inside a line
                assert _normal(piece) in printed, f"$ {command}\nmissing: {piece}\n{printed}"
    assert (tmp_path / "visit.html").read_text().count("MYOPATHY") >= 1
