"""Live monitoring speed of this tree against an earlier commit, interleaved on one machine.

Run from the project root (needs the real data, the ``onnx`` extra and git):

    python benchmarks/bench_streaming.py          # trains and saves out/bench_streaming_model
    python benchmarks/bench_streaming_versions.py --base 2c09cc8

Checks out ``--base`` into a temporary git worktree and runs ``bench_streaming.py --model-dir
out/bench_streaming_model --no-write --threads 1`` (this tree's script, the same saved model)
alternately with the base's package and with this tree's, ``--rounds`` times each, so that both
see the same machine and load. Reports the median over rounds of each backend's hop p50 / p99
and real-time factor, and the ratio this tree / base, in the ``streaming-versions`` section of
docs/benchmarks.md. Absolute figures move with the machine; the ratio is the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from _common import DOCS, machine_line, write_section

ROOT = DOCS.parent
MODEL = ROOT / "out" / "bench_streaming_model"
KEYS = ("hop_p50_ms", "hop_p99_ms", "realtime_factor")


def one_round(src: Path) -> dict[str, dict[str, float]]:
    """``backend -> figures`` of one bench_streaming run with the package at ``src``."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_streaming.py"), "--model-dir",
           str(MODEL), "--no-write", "--threads", "1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    rows = [line.split(" ", 2) for line in out.splitlines() if line.startswith("1 ")]
    return {backend: json.loads(payload) for _, backend, payload in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="2c09cc8", help="the earlier commit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not (MODEL / "pipeline.json").is_file():
        raise SystemExit(f"{MODEL}: run benchmarks/bench_streaming.py first")
    base_rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    runs: dict[str, list[dict[str, dict[str, float]]]] = {"base": [], "this": []}
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), base_rev],
            check=True,
        )
        try:
            for _ in range(args.rounds):
                runs["base"].append(one_round(tree / "src"))
                runs["this"].append(one_round(ROOT / "src"))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])
    backends = list(runs["this"][0])
    med = {
        side: {b: {k: float(np.median([r[b][k] for r in rs])) for k in KEYS} for b in backends}
        for side, rs in runs.items()
    }
    print(json.dumps(med, indent=2))
    lines = [
        f"## Live monitoring: this tree against {base_rev}, interleaved",
        "",
        f"Command: `python benchmarks/bench_streaming_versions.py --base {args.base} "
        f"--rounds {args.rounds}`  ",
        f"Machine: {machine_line('torch', 'onnxruntime', 'scipy')}",
        "",
        f"`bench_streaming.py` (same saved model, 1 torch thread) run {args.rounds} times with "
        f"the package of commit {base_rev} and {args.rounds} times with this tree's, "
        "alternately; medians over the rounds. The ratio (this / base) is the comparison; the "
        "absolute figures depend on the machine.",
        "",
        "| backend | hop p50 base / this (ms) | hop p99 base / this (ms) "
        "| real-time factor base / this | p50 ratio |",
        "|---|---|---|---|---|",
    ]
    for b in backends:
        base, this = med["base"][b], med["this"][b]
        lines.append(
            f"| {b} | {base['hop_p50_ms']:.2f} / {this['hop_p50_ms']:.2f} | "
            f"{base['hop_p99_ms']:.2f} / {this['hop_p99_ms']:.2f} | "
            f"{base['realtime_factor']:.0f}x / {this['realtime_factor']:.0f}x | "
            f"{this['hop_p50_ms'] / base['hop_p50_ms']:.2f} |"
        )
    if not args.no_write:
        write_section("streaming-versions", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
