"""Benchmark: torch fp32 vs ONNX fp32 vs ONNX int8 (onnxruntime) on N2001: latency, size, parity.

Run from the project root (needs the real data and the ``onnx`` extra):

    python benchmarks/bench_onnx.py [--model-dir FOLDER] [--threads 1 2]

Without ``--model-dir`` it trains the default cnn1d pipeline (default preprocessing) on N2001
for ``--epochs`` epochs, holding out one subject per class (``--held-out``), and saves it in
``out/bench_onnx_model``; with ``--model-dir`` it uses that folder and evaluates on the N2001
subjects it was not trained on. Then ``emgdx export --onnx --int8`` (via
:func:`emgdx.deploy.export_pipeline`), and per backend and thread count: the median latency
per window of :meth:`Pipeline.predict_windows` on prepared windows (normalisation,
representation and model forward; preprocessing of the records is the same for every backend
and left out) at batch 1 and batch 256, the file size, and parity with torch on the held-out
subjects' windows. Writes the ``onnx`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from _common import machine_line, median, n2001_folder, time_runs, write_section
from emgdx.deploy import INT8_FILE, ONNX_FILE, OnnxModel, export_pipeline
from emgdx.io import read_cohort
from emgdx.pipeline import Pipeline
from emgdx.tasks import encode_labels
from emgdx.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("torch", "onnx", "onnx-int8")
FILES = {"torch": "model.safetensors", "onnx": ONNX_FILE, "onnx-int8": INT8_FILE}


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    recalls = [np.mean(pred[y == c] == c) for c in np.unique(y)]
    return float(np.mean(recalls))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="use this saved cnn model")
    parser.add_argument(
        "--held-out",
        nargs="+",
        default=["N2001A01", "N2001C01", "N2001M02"],
        help="subjects left out of training (when training here)",
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls at batch 256")
    parser.add_argument("--section", default="onnx")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    folder = n2001_folder()
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    cohort = read_cohort(folder)
    if args.model_dir is None:
        model_dir = ROOT / "out" / "bench_onnx_model"
        pipe = Pipeline(model="cnn1d", train=TrainConfig(epochs=args.epochs, seed=0), n_jobs=1)
        windows = pipe.prepare(cohort)
        subjects = windows.index["subject_id"].astype(str).to_numpy()
        test_mask = np.isin(subjects, args.held_out)
        t_fit = time.perf_counter()
        pipe.fit(windows.select(~test_mask))
        fit_s = time.perf_counter() - t_fit
        pipe.save(model_dir, overwrite=True)
        origin = (
            f"cnn1d, default `Pipeline` preprocessing, trained here for {args.epochs} epochs "
            f"({fit_s:.0f} s) on the N2001 subjects other than {', '.join(args.held_out)}"
        )
    else:
        model_dir = args.model_dir
        pipe = Pipeline.load(model_dir)
        windows = pipe.prepare(cohort)
        subjects = windows.index["subject_id"].astype(str).to_numpy()
        test_mask = ~np.isin(subjects, pipe.train_subjects_)
        origin = f"{pipe.model_name} loaded from `{model_dir}`"
    test = windows.select(test_mask)
    held = sorted(set(subjects[test_mask].tolist()))
    print(f"data + training: {time.perf_counter() - t0:.0f} s; {len(test)} held-out windows")

    export = export_pipeline(pipe, model_dir, int8=True, check_windows=test)
    sizes = {b: (model_dir / f).stat().st_size for b, f in FILES.items()}
    y, keep = encode_labels(test.index["label"].to_list(), pipe.task)

    # parity and accuracy on the held-out windows (one thread)
    probs = {b: Pipeline.load(model_dir, backend=b).predict_windows(test) for b in BACKENDS}
    ref = probs["torch"]
    quality = {}
    for b in BACKENDS:
        quality[b] = {
            "max_diff": float(np.abs(probs[b] - ref).max()),
            "agree": float(np.mean(probs[b].argmax(1) == ref.argmax(1))),
            "bacc": _balanced_accuracy(y[keep], probs[b][keep].argmax(1)),
        }

    # the int8 model run 256 windows per call (not what the backend does): activation scales
    # are then shared by the whole batch
    batched = OnnxModel(model_dir / INT8_FILE).predict_proba(pipe.model_inputs(test))
    batched_agree = float(np.mean(batched.argmax(1) == ref.argmax(1)))

    # latency per window
    one = test.select(np.arange(1))
    batch = test.select(np.arange(min(256, len(test))))
    latency: dict[tuple[int, str], dict[int, float]] = {}
    load_before = os.getloadavg()[0]
    for threads in args.threads:
        torch.set_num_threads(threads)
        for b in BACKENDS:
            loaded = Pipeline.load(model_dir, backend=b)  # sessions take torch's thread count
            t1 = median(time_runs(lambda p=loaded: p.predict_windows(one), 5 * args.repeats, 5))
            tb = median(time_runs(lambda p=loaded: p.predict_windows(batch), args.repeats, 2))
            latency[threads, b] = {1: t1 * 1e3, len(batch): tb / len(batch) * 1e3}
            print(threads, b, latency[threads, b], flush=True)
    torch.set_num_threads(1)
    load = (load_before, os.getloadavg()[0])

    threads_txt = " ".join(str(t) for t in args.threads)
    cmd = "python benchmarks/bench_onnx.py" + (
        f" --model-dir {args.model_dir}" if args.model_dir else f" --epochs {args.epochs}"
    )
    lines = [
        "## ONNX deployment: torch vs ONNX fp32 vs ONNX int8 (N2001)",
        "",
        f"Command: `{cmd} --threads {threads_txt} --repeats {args.repeats}`",
        "",
        f"Machine: {machine_line('torch', 'onnxruntime', 'onnx')}; CPU only, shared with other "
        "jobs: medians.",
        "",
        f"Model: {origin}. Held-out subjects: {', '.join(held)} ({len(test)} windows of "
        f"{pipe.preprocess.window_s:g} s at {pipe.fs_hz_:g} Hz). int8: "
        "`onnxruntime.quantization.quantize_dynamic`, per-channel unsigned 8-bit weights, the "
        "first convolution kept in float, activations quantised at run time, one window per "
        "session call (see `emgdx.deploy.quantize_int8`).",
        "",
        "Latency: median wall time of `Pipeline.predict_windows` on prepared windows "
        "(normalisation, representation and the model forward; the preprocessing of records is "
        "the same for every backend and not included), per window, after warm-up. The ONNX "
        "sessions get as many threads as torch. 1-minute load average of the machine before / "
        f"after the timings: {load[0]:.1f} / {load[1]:.1f} on {os.cpu_count()} cores (other "
        "jobs): when it exceeds the core count, the 2-thread rows measure waiting for a core "
        "more than the backends.",
        "",
        "| backend | file | size | threads | batch 1 (ms/window) | batch "
        f"{len(batch)} (ms/window) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for threads in args.threads:
        for b in BACKENDS:
            lat = latency[threads, b]
            lines.append(
                f"| {b} | `{FILES[b]}` | {sizes[b] / 1024:.0f} KiB | {threads} | "
                f"{lat[1]:.2f} | {lat[len(batch)]:.3f} |"
            )
    lines += [
        "",
        "Parity with the torch model on the held-out windows (window level):",
        "",
        "| backend | max \\|p − p_torch\\| | argmax agreement with torch | balanced accuracy |",
        "|---|---:|---:|---:|",
    ]
    for b in BACKENDS:
        q = quality[b]
        lines.append(f"| {b} | {q['max_diff']:.2e} | {100 * q['agree']:.2f} % | {q['bacc']:.3f} |")
    lines += [
        "",
        f"The same int8 model run 256 windows per call (activation scales shared by the batch, "
        f"not what the backend does): {100 * batched_agree:.2f} % agreement with torch.",
        "",
        f"Export check written to `onnx.json`: {export.parity}",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section(args.section, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
