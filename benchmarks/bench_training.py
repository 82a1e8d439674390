"""Benchmark: training one LOSO fold on N2001 and batched inference per window, per model.

Run from the project root (needs the real data, see README):

    python benchmarks/bench_training.py [--models cnn1d cnn2d_stft cnn2d_cwt cnn_lstm]

Targets (issue #3): training the best CNN on one LOSO fold ≤ 2 min on the 2-core CPU; batched
inference ≤ 1 ms per window on CPU; the same on a CUDA GPU whenever one is available (the
script uses CUDA automatically when torch sees one, and says so). Writes the ``training``
section of docs/benchmarks.md (``--section`` to name another, e.g. for a GPU run).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import machine_line, median, n2001_folder, time_runs, write_section
from emgdx.io import read_cohort
from emgdx.pipeline import Pipeline
from emgdx.training import TrainConfig, resolve_device


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["cnn1d", "cnn2d_stft", "cnn2d_cwt", "cnn_lstm"]
    )
    parser.add_argument("--held-out", default="N2001A01", help="subject left out of training")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=512, help="windows per inference call")
    parser.add_argument("--section", default="training")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    folder = n2001_folder()
    import torch

    device = resolve_device("auto")
    cohort = read_cohort(folder)
    windows = Pipeline(model=args.models[0], n_jobs=2).prepare(cohort)
    test_mask = windows.index["subject_id"].to_numpy() == args.held_out
    train, test = windows.select(~test_mask), windows.select(test_mask)
    probe = train.select(np.arange(min(args.batch, len(train))))

    lines = [
        "## Training one LOSO fold and batched inference (N2001)",
        "",
        f"Command: `python benchmarks/bench_training.py --models {' '.join(args.models)} "
        f"--epochs {args.epochs} --batch {args.batch}`",
        "",
        f"Machine: {machine_line('torch')}; device **{device}**"
        + (f" ({torch.cuda.get_device_name(0)})" if device.type == "cuda" else "")
        + f"; torch threads {torch.get_num_threads()}",
        "",
        f"Fold: held-out subject {args.held_out}; {len(train)} training windows of "
        f"{train.n_samples} samples at {train.fs_hz:g} Hz (incl. the subject-wise inner "
        f"validation split), default TrainConfig with at most {args.epochs} epochs and early "
        f"stopping. Inference: `predict_windows` on {len(probe)} windows per call (median of "
        "5 calls after a warm-up; includes the representation).",
        "",
        "| model | parameters | fit (s) | epochs run | best epoch | s / epoch | "
        "inference (ms / window) | held-out subject: mean p(true class) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in args.models:
        pipe = Pipeline(model=name, train=TrainConfig(seed=0, epochs=args.epochs))
        t0 = time.perf_counter()
        pipe.fit(train)
        fit_s = time.perf_counter() - t0
        result = pipe.train_result_
        epochs_run = len(result.history) if result is not None else 0
        best = result.best_epoch if result is not None else 0
        per_window = median(time_runs(lambda p=pipe: p.predict_windows(probe), repeats=5))
        ms = 1e3 * per_window / len(probe)
        probs = pipe.predict_windows(test)
        true = test.index["label"].iloc[0]
        p_true = float(probs[:, pipe.class_names.index(true)].mean())
        n_params = pipe.model_.n_parameters
        lines.append(
            f"| {name} | {n_params:,} | {fit_s:.0f} | {epochs_run} | {best} | "
            f"{fit_s / max(epochs_run, 1):.1f} | {ms:.2f} | {p_true:.2f} |"
        )
        print(lines[-1], flush=True)
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section(args.section, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
