"""Live monitoring speed: per-hop compute latency and real-time factor at 23.4 kHz.

Run from the project root (needs the real data and the ``onnx`` extra):

    python benchmarks/bench_streaming.py

N2001 records (23,437.5 Hz) are pushed through :class:`emgdx.streaming.LiveMonitor` in 20 ms
chunks (what an LSL outlet sends) as fast as it takes them, with the default monitor settings
(0.25 s hop, 0.3 s filter context, 2 s QC span) and a cnn1d pipeline (default preprocessing:
6 kHz, 1 s windows), once per backend (torch, ONNX fp32, ONNX int8) and torch thread count.
Per window (= per hop): QC of the last 2 s, resampling and filtering of the 1.6 s segment,
the model. Reported: median and 99th percentile of that compute time, the 99th percentile of
the time to take one chunk (what a sample waits at most before its window's result), and the
real-time factor = stream duration / total processing time. The records are repeated
``--repeats`` times; the figures pool all windows. Writes the "streaming" section of
docs/benchmarks.md and docs/results/streaming.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from _common import DOCS, machine_line, n2001_folder, write_section
from emgdx.io import read_cohort
from emgdx.pipeline import Pipeline
from emgdx.streaming import LiveMonitor, MonitorConfig
from emgdx.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("torch", "onnx", "onnx-int8")
TARGET_RTF = 50.0
TARGET_P99_MS = 20.0


def run_stream(pipe: Pipeline, signals: list[np.ndarray], fs: float, chunk: int) -> dict:
    """Push every signal through a fresh monitor; latencies of windows and chunks."""
    window_ms: list[float] = []
    chunk_ms: list[float] = []
    busy = 0.0
    stream_s = 0.0
    for x in signals:
        mon = LiveMonitor(pipe, fs, MonitorConfig())
        for i in range(0, x.size, chunk):
            t0 = time.perf_counter()
            mon.push(x[i : i + chunk])
            dt = time.perf_counter() - t0
            chunk_ms.append(dt * 1e3)
            busy += dt
        window_ms += mon.latencies_ms
        stream_s += x.size / fs
    w, c = np.asarray(window_ms), np.asarray(chunk_ms)
    return {
        "windows": int(w.size),
        "stream_s": stream_s,
        "busy_s": busy,
        "hop_p50_ms": float(np.percentile(w, 50)),
        "hop_p99_ms": float(np.percentile(w, 99)),
        "hop_max_ms": float(w.max()),
        "chunk_p99_ms": float(np.percentile(c, 99)),
        "realtime_factor": stream_s / busy,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--records", type=int, default=6, help="N2001 records streamed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    folder = n2001_folder()
    import torch

    torch.set_num_threads(1)
    cohort = read_cohort(folder)
    man = cohort.manifest.reset_index(drop=True)
    # records of held-out subjects (one per class), spread over the record list
    held = ["N2001A01", "N2001C01", "N2001M02"]
    test_idx = [i for i, s in enumerate(man["subject_id"].astype(str)) if s in held]
    pick = [test_idx[round(k)] for k in np.linspace(0, len(test_idx) - 1, args.records)]
    records = [cohort.recordings[i] for i in pick]
    fs = records[0].fs_hz
    if args.model_dir is None:
        model_dir = ROOT / "out" / "bench_streaming_model"
        pipe = Pipeline(model="cnn1d", train=TrainConfig(epochs=args.epochs, seed=0), n_jobs=1)
        train = [r for r in cohort.recordings if str(r.subject_id) not in held]
        pipe.fit(pipe.prepare(train))
        pipe.save(model_dir, overwrite=True)
        origin = f"cnn1d trained here ({args.epochs} epochs, N2001 minus {', '.join(held)})"
    else:
        model_dir = args.model_dir
        origin = f"model loaded from `{model_dir}`"
    from emgdx.deploy import export_pipeline

    export_pipeline(Pipeline.load(model_dir), model_dir, int8=True)
    signals = [r.signal for r in records] * args.repeats
    chunk = round(0.02 * fs)
    results: dict[str, dict] = {}
    load_before = os.getloadavg()[0]
    for threads in args.threads:
        torch.set_num_threads(threads)
        for backend in BACKENDS:
            pipe = Pipeline.load(model_dir, backend=backend)
            run_stream(pipe, signals[:1], fs, chunk)  # warm-up
            res = run_stream(pipe, signals, fs, chunk)
            results[f"{backend}/{threads}"] = res
            print(threads, backend, json.dumps(res), flush=True)
    torch.set_num_threads(1)
    load = (load_before, os.getloadavg()[0])
    cmd = "python benchmarks/bench_streaming.py" + (
        f" --model-dir {args.model_dir}" if args.model_dir else ""
    )
    machine = machine_line("torch", "onnxruntime", "scipy")
    payload = {
        "command": cmd,
        "machine": machine,
        "model": origin,
        "records": [r.record_id for r in records],
        "fs_hz": fs,
        "chunk_samples": chunk,
        "monitor": MonitorConfig().__dict__,
        "load_average": load,
        "results": results,
    }
    lines = [
        "## Live monitoring: per-hop latency and real-time factor (23.4 kHz)",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {machine}  ",
        f"Load average (1 min) before / after: {load[0]:.2f} / {load[1]:.2f}",
        "",
        f"{len(records)} N2001 records at {fs:g} Hz ({', '.join(payload['records'])}), "
        f"{args.repeats} times each, pushed in 20 ms chunks ({chunk} samples) through "
        "`LiveMonitor` with the default settings (hop 0.25 s, context 0.3 s, QC span 2 s); "
        f"{origin}, default preprocessing (6 kHz, 1 s windows). Per hop: QC of the last 2 s, "
        "resampling + filtering of the 1.6 s segment, the model. Target: real-time factor "
        f">= {TARGET_RTF:g} and hop p99 <= {TARGET_P99_MS:g} ms.",
        "",
        "| backend | torch threads | windows | hop p50 (ms) | hop p99 (ms) | hop max (ms) "
        "| chunk p99 (ms) | real-time factor | target met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        backend, threads = key.split("/")
        met = r["realtime_factor"] >= TARGET_RTF and r["hop_p99_ms"] <= TARGET_P99_MS
        lines.append(
            f"| {backend} | {threads} | {r['windows']} | {r['hop_p50_ms']:.2f} | "
            f"{r['hop_p99_ms']:.2f} | {r['hop_max_ms']:.1f} | {r['chunk_p99_ms']:.2f} | "
            f"{r['realtime_factor']:.0f}x | {'yes' if met else 'no'} |"
        )
    if not args.no_write:
        (DOCS / "results").mkdir(exist_ok=True)
        (DOCS / "results" / "streaming.json").write_text(json.dumps(payload, indent=2))
        write_section("streaming", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
