"""Wall-clock time of the README's long commands, as a new user runs them (default threads).

Run from the project root on a quiet machine (needs ../shared/data):

    python benchmarks/cli_times.py

Each command runs once, in a fresh process, one after the other; the machine's load average
before each is recorded (a busy machine is slower: emgdx then uses fewer threads). Figures go
to the "cli-times" section of docs/benchmarks.md; the README quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DOCS, machine_line, write_section
from emgdx.config import atomic_write

DATA = Path(os.environ.get("EMGDX_DATA", "../shared/data"))
OUT = DOCS / "results" / "cli_times.json"


def commands(out: Path) -> list[tuple[str, list[str]]]:
    n2001, algiers = str(DATA / "n2001"), str(DATA / "algiers")
    return [
        ("demo", ["emgdx", "demo", "--out", str(out / "demo")]),
        (
            "train the shipped model's configuration (both hospitals)",
            ["emgdx", "train", n2001, algiers, "--out", str(out / "mine")],
        ),
        (
            "train a 1-D CNN (N2001)",
            ["emgdx", "train", n2001, "--model", "cnn1d", "--out", str(out / "cnn1d")],
        ),
        (
            "evaluate a random forest, leave one subject out (N2001)",
            [
                "emgdx",
                "evaluate",
                n2001,
                "--model",
                "random_forest",
                "--cv",
                "loso",
                "--out",
                str(out / "rf"),
            ],
        ),
        (
            "predict all 355 N2001 records (shipped model)",
            ["emgdx", "predict", *sorted(str(p) for p in (DATA / "n2001").glob("*.hea"))],
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="re-run the commands whose name has this")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    stored = json.loads(OUT.read_text()) if OUT.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in commands(Path(tmp)):
            if args.only and not any(word in name for word in args.only):
                continue
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            run = subprocess.run(argv, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            shown = shlex.join(argv[:2] + [a.replace(tmp, "OUT") for a in argv[2:6]])
            if len(argv) > 6:
                shown += " ..."
            stored[name] = {
                "command": shown,
                "seconds": round(seconds, 1),
                "load_before": round(load, 2),
                "exit": run.returncode,
                "machine": machine_line("torch", "scikit-learn"),
            }
            print(f"{name}: {seconds:.0f} s (load {load:.2f}, exit {run.returncode})", flush=True)
    atomic_write(OUT, json.dumps(stored, indent=2))
    lines = [
        "## Command times (README)",
        "",
        "Command: `python benchmarks/cli_times.py [--only NAME ...]` (each command once, in "
        "turn, default threads: one per free physical core). Machine of each row in "
        "`docs/results/cli_times.json`; all on: "
        + "; ".join(sorted({row["machine"].split(";")[0] for row in stored.values()}))
        + ".",
        "",
        "| command | what | wall time | load before | exit |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| `{r['command']}` | {name} | {r['seconds']:.0f} s | {r['load_before']:.2f} | "
        f"{r['exit']} |"
        for name, r in stored.items()
    ]
    write_section("cli-times", "\n".join(lines))


if __name__ == "__main__":
    main()
