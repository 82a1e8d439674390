"""Benchmark: complex-Morlet scalogram implementations (scipy FFT, torch FFT, PyWavelets).

Run from the project root:

    python benchmarks/bench_cwt.py [--windows 256] [--repeats 5]

Times :func:`emgdx.represent.cwt_power` with the default :class:`ScalogramRepr` geometry
(1 s windows at 6 kHz, 48 log-spaced scales 20-2500 Hz, pooled to 96 columns) for every
method, on white noise (the cost does not depend on the content), and checks on a chirp that
the implementations agree. Writes the ``cwt`` section of docs/benchmarks.md (skip with
``--no-write``). ``ScalogramRepr``'s default ``method`` is the fastest CPU method measured
here; torch is also timed on CUDA when a GPU is present.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from scipy.signal import chirp

from _common import machine_line, median, time_runs, write_section
from emgdx.represent import ScalogramRepr, cwt_power

FS_HZ = 6000.0
N_WINDOWS_N2001 = 7376  # windows of N2001 at 1 s / 0.5 s hop (docs/benchmarks.md, read-preprocess)


def _torch_devices() -> list[str]:
    try:
        import torch
    except ImportError:
        return []
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def _agreement(rep: ScalogramRepr, methods: list[tuple[str, str]]) -> dict[str, float]:
    """Correlation with the FFT image (unit-sum linear power) on a log chirp, per method."""
    t = np.arange(int(FS_HZ)) / FS_HZ
    x = (100 * chirp(t, 30, 1.0, 2400, method="logarithmic")).astype(np.float32)[None]
    freqs = rep.frequencies_hz(FS_HZ)
    ref = cwt_power(x, FS_HZ, freqs, n_time=rep.n_time, method="fft")[0]
    out = {}
    for method, device in methods:
        img = cwt_power(x, FS_HZ, freqs, n_time=rep.n_time, method=method, device=device)[0]
        a, b = ref / ref.sum(), img / img.sum()
        out[f"{method}/{device}"] = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=256, help="windows per timed call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    rep = ScalogramRepr()
    freqs = rep.frequencies_hz(FS_HZ)
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((args.windows, int(FS_HZ))) * 50).astype(np.float32)
    methods = [("fft", "cpu"), ("pywt", "cpu")] + [("torch", d) for d in _torch_devices()]

    # Interleaved (one call of every method per round): on a shared machine, load changes
    # over a run, and interleaving spreads it evenly over the methods compared.
    runs: dict[tuple[str, str], list[float]] = {key: [] for key in methods}
    for round_ in range(args.repeats):
        for method, device in methods:
            runs[method, device] += time_runs(
                lambda m=method, d=device: cwt_power(
                    data, FS_HZ, freqs, n_time=rep.n_time, method=m, device=d
                ),
                repeats=1,
                warmup=1 if round_ == 0 else 0,
            )
    rows = []
    for (method, device), times in runs.items():
        per_window_ms = median(times) / args.windows * 1e3
        rows.append((method, device, per_window_ms, min(times) / args.windows * 1e3))
        print(f"{method:6s} {device:5s} {per_window_ms:8.3f} ms/window", flush=True)
    agree = _agreement(rep, methods)
    cpu_rows = [r for r in rows if r[1] == "cpu"]
    fastest = min(cpu_rows, key=lambda r: r[2])
    print("fastest CPU method:", fastest[0], "| agreement with fft:", agree)

    default_note = (
        "the default `ScalogramRepr.method`"
        if fastest[0] == rep.method
        else f"the default `ScalogramRepr.method` is still `{rep.method}`: revisit it"
    )
    config = json.dumps({k: v for k, v in rep.to_dict().items() if k != "name"})
    table = "\n".join(
        f"| {m} | {d} | {ms:.2f} | {best:.2f} | {ms * N_WINDOWS_N2001 / 1e3:.1f} | "
        f"{agree[f'{m}/{d}']:.6f} |"
        for m, d, ms, best in rows
    )
    header = (
        "| method | device | ms / window (median) | best | "
        f"est. s for N2001 ({N_WINDOWS_N2001} windows) | corr. with fft on a chirp |\n"
        "|---|---|---|---|---|---|"
    )
    body = f"""## CWT scalogram: implementations compared

Command: `python benchmarks/bench_cwt.py --windows {args.windows} --repeats {args.repeats}`
(medians of {args.repeats} interleaved calls per method on {args.windows} white-noise windows
after one warm-up each).

Machine: {machine_line("numpy", "scipy", "PyWavelets", "torch")}

Work: `cwt_power` with the default `ScalogramRepr` geometry: 1 s windows at 6 kHz, 48
log-spaced scales 20–2500 Hz, complex Morlet `cmor1.5-1.0`, power pooled to 96 columns.
Config: `{config}`

{header}
{table}

Fastest on this CPU: **{fastest[0]}** ({fastest[2]:.2f} ms per window); {default_note}.
The agreement column is the correlation of unit-sum linear power
images on a 30–2400 Hz log chirp; PyWavelets deviates most near Nyquist, where its sampled
wavelet aliases (see `emgdx/represent/scalogram.py`).
"""
    if not args.no_write:
        write_section("cwt", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
