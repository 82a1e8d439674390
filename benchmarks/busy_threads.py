"""Training on a busy machine: emgdx's default threads against torch's (all cores).

Run from the project root on an otherwise quiet machine (needs ../shared/data):

    python benchmarks/busy_threads.py

Another job keeps one core busy (a spinning process, started 70 s before the first timing so
that the load average sees it); then ``emgdx train N2001 --model cnn1d --epochs 3`` runs with
the default threads (``emgdx.threads``: one per free physical core) and with ``--threads N``
for every core, alternately, twice each. Writes the "busy-threads" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine_line, write_section

DATA = Path(os.environ.get("EMGDX_DATA", "../shared/data"))


def main() -> None:
    cores = os.cpu_count() or 1
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("OMP_NUM_THREADS", None)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    times: dict[str, list[float]] = {"default": [], f"--threads {cores}": []}
    loads: list[float] = []
    try:
        time.sleep(70)
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(2):
                for name in times:
                    extra = [] if name == "default" else name.split()
                    argv = [
                        "emgdx",
                        "train",
                        str(DATA / "n2001"),
                        "--model",
                        "cnn1d",
                        "--epochs",
                        "3",
                        "--out",
                        f"{tmp}/m{i}{len(extra)}",
                        *extra,
                    ]
                    loads.append(os.getloadavg()[0])
                    t0 = time.perf_counter()
                    subprocess.run(argv, env=env, capture_output=True, check=True)
                    times[name].append(time.perf_counter() - t0)
                    print(name, f"{times[name][-1]:.0f} s", flush=True)
    finally:
        hog.kill()
    rows = [
        f"| {name} | {statistics.median(t):.0f} s | {', '.join(f'{x:.0f}' for x in t)} |"
        for name, t in times.items()
    ]
    default, full = (statistics.median(t) for t in times.values())
    body = "\n".join(
        [
            "## Training on a busy machine (threads)",
            "",
            f"Machine: {machine_line('torch')}.",
            "Command: `python benchmarks/busy_threads.py`: one other process spins on one core; "
            "`emgdx train ../shared/data/n2001 --model cnn1d --epochs 3` runs alternately with "
            "emgdx's default threads and with one thread per logical core (torch's own "
            f"default), twice each; load average before the runs {min(loads):.2f}-"
            f"{max(loads):.2f}.",
            "",
            "| threads | median wall time | runs |",
            "|---|---|---|",
            *rows,
            "",
            f"All cores against the default: {full / default:.2f}x the time.",
        ]
    )
    write_section("busy-threads", body)


if __name__ == "__main__":
    main()
