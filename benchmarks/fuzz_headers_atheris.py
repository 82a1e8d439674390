"""Coverage-guided fuzzing (atheris, libFuzzer) of the header parsers; figures to
docs/results/fuzz_headers_atheris.json.

    pip install atheris                     # in the `fuzz` extra
    python benchmarks/fuzz_headers_atheris.py --target wfdb-header --runs 100000
    python benchmarks/fuzz_headers_atheris.py --all --runs 50000

A target is one file of a seed record (tests/fuzz_support.py) whose bytes libFuzzer mutates,
guided by the branches it reaches in emgdx's readers (instrumented at import), while the
record's other files stay valid: ``wfdb-header`` and ``emglab-header`` (the text headers, the
sample file kept), ``edf``, ``npy``, ``wav`` and ``npz`` (whole files; their headers come
first). Each input is read with ``emgdx.io.read``; an exception outside ``emgdx.errors`` is
recorded with the input that raised it (saved under ``--crash-dir``) and fuzzing goes on.
The coverage libFuzzer reached (edges, features, corpus size) is recorded with each target.
Each target runs in its own process (libFuzzer owns the process) for ``--runs`` inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DOCS, machine_line  # noqa: E402

OUT = DOCS / "results" / "fuzz_headers_atheris.json"
#: target -> (seed format, file the fuzzer writes: a suffix of the seed's file names)
TARGETS = {
    "wfdb-header": ("wfdb", ".hea"),
    "emglab-header": ("emglab", ".hea"),
    "edf": ("edf", ".edf"),
    "npy": ("npy", ".npy"),
    "npz": ("npz", ".npz"),
    "wav": ("wav", ".wav"),
}


def run_target(target: str, runs: int, crash_dir: Path, out: Path) -> None:
    """In this process: fuzz one target for ``runs`` inputs, then write ``out`` and exit."""
    import atheris

    with atheris.instrument_imports(include=["emgdx"]):
        from emgdx.errors import EmgdxError
        from emgdx.io import read
    from fuzz_support import FORMATS, entry_name

    fmt, suffix = TARGETS[target]
    folder = Path(tempfile.mkdtemp(prefix=f"atheris-{target}-"))
    seeds = FORMATS[fmt](folder)
    for name, data in seeds.items():
        (folder / name).write_bytes(data)
    fuzzed = folder / next(n for n in seeds if n.endswith(suffix))
    entry = folder / entry_name(sorted(seeds))
    corpus = folder / "corpus"
    corpus.mkdir()
    (corpus / "seed").write_bytes(fuzzed.read_bytes())
    crash_dir.mkdir(parents=True, exist_ok=True)
    counts = {"inputs": 0, "read": 0, "emgdx_error": 0, "other_exception": 0}
    others: dict[str, int] = {}
    slowest = 0.0
    t_start = time.perf_counter()

    def finish() -> None:
        doc = {
            "target": target,
            **counts,
            "other_exceptions": others,
            "slowest_s": round(slowest, 4),
            "seconds": round(time.perf_counter() - t_start, 1),
        }
        out.write_text(json.dumps(doc) + "\n")
        os._exit(0)  # libFuzzer owns the process: leave now, with the figures written

    def one_input(data: bytes) -> None:
        nonlocal slowest
        fuzzed.write_bytes(data)
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                read(entry, fs_hz=2000.0 if fmt == "npy" else None)
            counts["read"] += 1
        except EmgdxError:
            counts["emgdx_error"] += 1
        except Exception as exc:  # the finding: recorded with its input, not raised
            counts["other_exception"] += 1
            kind = type(exc).__name__
            if kind not in others:
                (crash_dir / f"{target}-{kind}").write_bytes(data)
            others[kind] = others.get(kind, 0) + 1
        slowest = max(slowest, time.perf_counter() - t0)
        counts["inputs"] += 1
        if counts["inputs"] >= runs:
            finish()

    atheris.Setup(
        [sys.argv[0], str(corpus), "-max_len=65536", "-timeout=10", "-rss_limit_mb=2048"],
        one_input,
    )
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=sorted(TARGETS))
    parser.add_argument("--all", action="store_true", help="every target, one after the other")
    parser.add_argument("--runs", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--crash-dir", type=Path, default=ROOT / "out" / "atheris-findings")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_out is not None:  # one target, in the process libFuzzer takes over
        run_target(args.target, args.runs, args.crash_dir, args.child_out)
        return 0
    targets = sorted(TARGETS) if args.all else [args.target]
    if targets == [None]:
        parser.error("give --target or --all")
    rows: list[dict[str, Any]] = []
    for target in targets:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            child_out = Path(tmp.name)
        cmd = [sys.executable, __file__, "--target", target, "--runs", str(args.runs)]
        cmd += ["--crash-dir", str(args.crash_dir), "--child-out", str(child_out)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if not child_out.stat().st_size:
            # libFuzzer stopped before the last input: a crash, a timeout or the memory cap
            row = {"target": target, "stopped": done.returncode, "log": done.stderr[-2000:]}
        else:
            row = json.loads(child_out.read_text())
            # libFuzzer's last status line: the coverage it reached ("cov": edges, "ft": features)
            status = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", done.stderr)
            if status:
                row.update(zip(("edges", "features", "corpus"), map(int, status[-1]), strict=True))
        child_out.unlink()
        print(json.dumps(row), flush=True)
        rows.append(row)
    doc = {
        "command": "python benchmarks/fuzz_headers_atheris.py " + " ".join(sys.argv[1:]),
        "machine": machine_line(),
        "targets": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
