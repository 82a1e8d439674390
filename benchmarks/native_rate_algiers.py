"""A second hospital's files at their own sampling rate: `emgdx predict` on the Algiers records
(32,768 Hz) with a model trained on N2001 (23,437.5 Hz), against the same records resampled to
24 kHz beforehand, by hand.

Run from the project root (needs the real data, see README):

    emgdx train ../shared/data/n2001 --model cnn1d --out out/models/cnn1d-n2001
    python benchmarks/native_rate_algiers.py --model out/models/cnn1d-n2001

It runs the command a user would, twice: ``emgdx predict MODEL <algiers>/*.hea --json`` on the
files as recorded, and on NPY copies resampled to 24 kHz with scipy's ``resample_poly``
(375/512, exact) and given ``--fs-hz 24000``. It writes the agreement (same class, largest and
median probability difference) and, for context only, record-level metrics of both runs into the
``native-rates`` section of docs/robustness.md. The metrics are a zero-shot cross-site result
(a model that never saw this hospital); what the second site costs is the subject of the
multi-site work, not of this check.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import signal as sps

from _common import DOCS, machine_line, write_section
from emgdx.datasets import data_root
from emgdx.evaluation import classification_metrics
from emgdx.io import read

PAGE = DOCS / "robustness.md"


def predict(model: Path, files: list[Path], *extra: str) -> tuple[pd.DataFrame, float]:
    """``emgdx predict`` as a user runs it: records as a table, and the wall time."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "emgdx.cli", "predict", str(model), *map(str, files), "--json",
         "--backend", "torch", *extra],
        capture_output=True,
        text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1: some record had no usable window (listed)
        raise SystemExit(f"emgdx predict failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout)
    table = pd.DataFrame(out["records"]).set_index("record_id")
    table.attrs["classes"] = out["model"]["classes"]
    table.attrs["failed"] = out["failed"]
    return table, seconds


def metrics(table: pd.DataFrame, labels: pd.Series) -> dict[str, float]:
    names = list(table.attrs["classes"])
    judged = table[table["n_windows"] > 0]
    y = np.array([names.index(labels[r]) for r in judged.index])
    scores = judged[[f"p_{c}" for c in names]].to_numpy(dtype=float)
    m = classification_metrics(y, scores, names)
    return {
        "n": len(judged),
        "balanced_accuracy": float(m["balanced_accuracy"]),
        "roc_auc": float(m["roc_auc"]),
        **{
            f"recall_{c}": float(np.mean(scores[y == i].argmax(1) == i))
            for i, c in enumerate(names)
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="trained on N2001")
    parser.add_argument("--data", type=Path, default=None, help="the Algiers folder")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs alone")
    args = parser.parse_args()
    root = data_root()
    folder = args.data or (root / "algiers" if root else Path("../shared/data/algiers"))
    files = sorted(folder.glob("*.hea"))
    if not files:
        raise SystemExit(f"no Algiers records in {folder}")
    labels = pd.read_csv(folder / "manifest.csv", dtype=str).set_index("record_id")["label"]

    native, native_s = predict(args.model, files)
    with tempfile.TemporaryDirectory() as tmp:
        copies = []
        for path in files:
            (rec,) = read(path)
            assert rec.fs_hz == 32_768.0
            y = sps.resample_poly(rec.signal.astype(np.float64), 375, 512)  # 24 kHz, by hand
            copies.append(Path(tmp) / f"{rec.record_id}.npy")
            np.save(copies[-1], y.astype(np.float32))
        by_hand, by_hand_s = predict(args.model, copies, "--fs-hz", "24000")

    names = list(native.attrs["classes"])
    cols = [f"p_{c}" for c in names]
    both = native.index[(native["n_windows"] > 0) & (by_hand.loc[native.index, "n_windows"] > 0)]
    diff = np.abs(native.loc[both, cols].to_numpy(float) - by_hand.loc[both, cols].to_numpy(float))
    same = float(np.mean(native.loc[both, "predicted"] == by_hand.loc[both, "predicted"]))
    largest = both[int(diff.max(axis=1).argmax())]
    # records whose QC reading differs between the two runs (a borderline mains-hum detection
    # switches the notch on one side only); the rest went through identical steps
    qc_cols = ["qc_flags", "line_freq_hz"]
    qc_native, qc_hand = native.loc[both, qc_cols].fillna(0), by_hand.loc[both, qc_cols].fillna(0)
    qc_same = (qc_native == qc_hand).all(axis=1)
    result = {
        "records": len(files),
        "judged_both": len(both),
        "native_refused": int((native["n_windows"] == 0).sum()),
        "same_class": same,
        "max_abs_prob_diff": float(diff.max()),
        "median_abs_prob_diff": float(np.median(diff.max(axis=1))),
        "largest_diff_record": str(largest),
        "qc_differs": sorted(map(str, both[~qc_same.to_numpy()])),
        "max_abs_prob_diff_same_qc": float(diff[qc_same.to_numpy()].max()),
        "native_seconds": native_s,
        "by_hand_seconds": by_hand_s,
        "native": metrics(native, labels),
        "by_hand": metrics(by_hand, labels),
        "window_counts_equal": bool(
            (native.loc[both, "n_windows"] == by_hand.loc[both, "n_windows"]).all()
        ),
    }
    print(json.dumps(result, indent=2))
    if args.no_write:
        return 0
    n, h = result["native"], result["by_hand"]
    qc_differs = f"{len(result['qc_differs'])}: {', '.join(result['qc_differs']) or 'none'}"
    recall = ", ".join(f"{c} {n[f'recall_{c}']:.2f} / {h[f'recall_{c}']:.2f}" for c in names)
    body = f"""## Native rates at a second hospital

`emgdx predict` on the {result["records"]} Algiers records as recorded (32,768 Hz, resampled
exactly to the model's 6 kHz inside the pipeline: 375/2,048), against the same records resampled
to 24 kHz beforehand by hand (scipy `resample_poly`, 375/512) and given as NPY with
`--fs-hz 24000`. Model: cnn1d trained on all of N2001 (`{args.model}`).

| | value |
|---|---|
| records judged in both runs | {result["judged_both"]} of {result["records"]} |
| records the native run could not judge | {result["native_refused"]} |
| same class | {100 * same:.1f} % |
| largest class-probability difference | {result["max_abs_prob_diff"]:.4f} ({largest}) |
| median of the per-record largest difference | {result["median_abs_prob_diff"]:.4f} |
| records whose QC reading differs between the runs | {qc_differs} |
| largest difference where QC agrees | {result["max_abs_prob_diff_same_qc"]:.4f} |
| same window count per record | {"yes" if result["window_counts_equal"] else "no"} |
| wall time, native / by hand (200 files, one command) | {native_s:.1f} s / {by_hand_s:.1f} s |

Where QC reads a record differently (its flags or mains frequency; e.g. hum found at one rate
only, so the notch runs on one side only), that is the rate tipping a borderline detection, not
the resampler: the records otherwise go through identical steps.

For context, not a result of this check: record-level balanced accuracy
{n["balanced_accuracy"]:.2f} (native) / {h["balanced_accuracy"]:.2f} (by hand), macro AUC
{n["roc_auc"]:.2f} / {h["roc_auc"]:.2f}, recall {recall}. That is the zero-shot cost of a
new hospital (issue 14: multi-site data), which resampling neither causes nor cures.

Command: `python benchmarks/native_rate_algiers.py --model {args.model}` — {machine_line("torch")}
"""
    write_section("native-rates", body, PAGE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
