"""Fuzz every reader with many mutated files; figures to docs/results/fuzz_readers.json.

    python benchmarks/fuzz_readers.py --n 100000            # per format (hours on 2 cores)
    python benchmarks/fuzz_readers.py --n 2000 --formats csv wav
    python benchmarks/fuzz_readers.py --table docs/results/fuzz_readers_100k.json  # markdown

Each input is one seed file of a format (tests/fuzz_support.py: WFDB, EMGLAB, EDF, CSV, NPY,
NPZ, WAV) with 1-4 random edits, half of them byte edits (flips, nasty bytes, cuts,
insertions, long digit runs), half structured (a hostile value in a header field, an EDF
field, a WAV chunk value, the .npy header dict, an NPZ member before compression, a CSV
export's encoding, separator or shape),
read by ``emgdx.io.read`` in a worker process whose address space is capped
(``--mem-cap-mb``). The parent gives each input ``--timeout-s``: a worker that takes longer
is killed (a *timeout*), one that dies is a *crash*, and both are replaced. Per input it
records the outcome (read / emgdx error / any other exception), the time and the peak of
traced allocations (tracemalloc: Python and numpy memory). The targets (issue 15): no
exception outside ``emgdx.errors``, no input over 10 s, and peak memory at most 4 × the
decoded signal + 200 MB.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from emgdx.config import atomic_write

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import DOCS, machine_line
from fuzz_support import FORMATS, KINDS, entry_name, mutate

OUT = DOCS / "results" / "fuzz_readers.json"
KIND_WEIGHTS = [0.5 / (len(KINDS) - 1) if k != "field" else 0.5 for k in KINDS]


def _worker(conn: Any, fmt: str, folder: str, mem_cap_mb: int) -> None:
    import tracemalloc

    from emgdx.errors import EmgdxError
    from emgdx.io import read

    cap = mem_cap_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    root = Path(folder)
    originals = {p.name: p.read_bytes() for p in root.iterdir()}
    entry = entry_name(sorted(originals))
    tracemalloc.start()
    while True:
        job = conn.recv()
        if job is None:
            return
        which, edits = job
        try:
            for name, content in originals.items():
                edited = mutate(name, content, edits) if name == which else content
                (root / name).write_bytes(edited)
        except Exception as exc:  # a bug of the mutators, reported apart from the readers'
            conn.send(("mutator_error", repr(exc)[:300], 0.0, 0, 0))
            continue
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        decoded = 0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                recs = read(root / entry, fs_hz=2000.0 if fmt == "npy" else None)
            decoded = sum(r.signal.nbytes for r in recs)
            outcome, detail = "read", ""
        except EmgdxError as exc:
            outcome, detail = "emgdx_error", type(exc).__name__
        except MemoryError:
            outcome, detail = "memory_error", ""
        except Exception as exc:  # what the target forbids: recorded, not raised
            outcome = "other_exception"
            detail = f"{type(exc).__name__}: {exc}"[:300] + " | " + traceback.format_exc()[-300:]
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        conn.send((outcome, detail, seconds, peak, decoded))


def fuzz_format(fmt: str, n: int, seed: int, timeout_s: float, mem_cap_mb: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, sorted(FORMATS).index(fmt)])
    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{fmt}-") as tmp:
        seeds = FORMATS[fmt](Path(tmp))
        work = Path(tmp) / "work"
        work.mkdir()
        for name, data in seeds.items():
            (work / name).write_bytes(data)
        names = sorted(seeds)

        def start() -> tuple[Any, Any]:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, fmt, str(work), mem_cap_mb))
            proc.start()
            return proc, parent

        proc, conn = start()
        outcomes: Counter[str] = Counter()
        others: Counter[str] = Counter()
        examples: dict[str, Any] = {}
        slowest, worst_ratio, worst_peak = 0.0, 0.0, 0
        over_memory = 0
        t_start = time.perf_counter()
        for _ in range(n):
            which = names[int(rng.integers(len(names)))]
            size = len(seeds[which])
            # half the edits structured (a hostile value in a field), half byte edits
            edits = [
                (KINDS[int(rng.choice(len(KINDS), p=KIND_WEIGHTS))],
                 int(rng.integers(max(size, 1))), int(rng.integers(256)))
                for _ in range(int(rng.integers(1, 5)))
            ]  # fmt: skip
            conn.send((which, edits))
            if not conn.poll(timeout_s):
                proc.kill()
                proc.join()
                outcomes["timeout"] += 1
                examples.setdefault("timeout", {"file": which, "edits": edits})
                proc, conn = start()
                continue
            try:
                outcome, detail, seconds, peak, decoded = conn.recv()
            except EOFError:  # the worker died: a native crash
                proc.join()
                outcomes["crash"] += 1
                examples.setdefault("crash", {"file": which, "edits": edits,
                                              "exitcode": proc.exitcode})  # fmt: skip
                proc, conn = start()
                continue
            outcomes[outcome] += 1
            if outcome == "other_exception":
                others[detail.split(":")[0]] += 1
                examples.setdefault(detail.split(":")[0], {"file": which, "edits": edits,
                                                           "detail": detail})  # fmt: skip
            if seconds > slowest:
                examples["slowest"] = {"file": which, "edits": edits, "seconds": seconds}
            if peak > worst_peak:
                examples["largest_peak"] = {"file": which, "edits": edits, "peak_bytes": peak}
            slowest = max(slowest, seconds)
            worst_peak = max(worst_peak, peak)
            allowed = 4 * decoded + 200 * 2**20
            over_memory += int(peak > allowed)
            worst_ratio = max(worst_ratio, peak / max(decoded, 1) if decoded else 0.0)
        conn.send(None)
        proc.join(timeout=10)
    return {
        "format": fmt,
        "inputs": n,
        "outcomes": dict(outcomes),
        "other_exceptions": dict(others),
        "examples": examples,
        "slowest_s": round(slowest, 4),
        "peak_traced_mb": round(worst_peak / 2**20, 1),
        "over_memory_target": over_memory,
        "seconds": round(time.perf_counter() - t_start, 1),
    }


def table(paths: list[Path]) -> str:
    """The docs' markdown table of one or more result files."""
    lines = [
        "| format | inputs | read | emgdx error | other exception | crash | timeout | slowest "
        "| peak (traced) | over the memory target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        for row in json.loads(path.read_text())["formats"]:
            o = row["outcomes"]
            cells = [row["format"], f"{row['inputs']:,}",
                     *(f"{o.get(k, 0):,}" for k in ("read", "emgdx_error", "other_exception",
                                                    "crash", "timeout")),
                     f"{1000 * row['slowest_s']:.0f} ms", f"{row['peak_traced_mb']:.1f} MB",
                     str(row["over_memory_target"])]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="inputs per format")
    parser.add_argument("--formats", nargs="*", default=sorted(FORMATS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=10.0)
    parser.add_argument("--mem-cap-mb", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON goes")
    parser.add_argument("--table", nargs="+", type=Path, help="print the table of result files")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return 0
    rows = []
    for fmt in args.formats:
        row = fuzz_format(fmt, args.n, args.seed, args.timeout_s, args.mem_cap_mb)
        shown = ("format", "inputs", "outcomes", "slowest_s", "peak_traced_mb", "seconds")
        print(json.dumps({k: row[k] for k in shown}), flush=True)
        rows.append(row)
    doc = {
        "command": "python benchmarks/fuzz_readers.py " + " ".join(sys.argv[1:]),
        "machine": machine_line(),
        "timeout_s": args.timeout_s,
        "mem_cap_mb": args.mem_cap_mb,
        "formats": rows,
    }
    atomic_write(args.out, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
