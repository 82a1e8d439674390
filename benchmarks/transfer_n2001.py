"""Transfer learning to a "new site" with 1-3 labelled subjects per class (N2001, subject-wise).

Run from the project root (1 torch thread, ~20 min on the 2-core development machine):

    OMP_NUM_THREADS=1 python benchmarks/transfer_n2001.py

The "new site" is N2001. For every draw (seed) the N2001 subjects of each class are shuffled;
4 per class form the new site and the rest (1 healthy, 2 myopathy, 3 neurogenic) form the
N2001 pretraining pool, which never meets the new site's subjects. Of the new site's 4
subjects per class, k (= 1, 2, 3) are labelled (fine-tuning / from-scratch training) and the
other 4 - k are the test subjects. Methods, all cnn1d on raw 1-s windows at 6 kHz:

- ``scratch``: trained from random weights on the k labelled subjects per class;
- ``pooled`` (with ``--pooled``): trained from random weights on the N2001 pretraining pool
  plus the k labelled subjects (a reference: sharing the data instead of a model);
- ``<src>_only``: the pretrained model, no fine-tuning;
- ``<src>_ft_head``: fine-tuned with the features frozen (``freeze="features"``);
- ``<src>_ft_all``: all layers fine-tuned (features at 0.1 x the head's learning rate);

with ``<src>`` = ``sim`` (pretrained once on a simulated cohort at N2001's 23.4 kHz) or
``n2001`` (pretrained per draw on that draw's N2001 pretraining pool). Scores: balanced
accuracy and macro one-vs-rest AUC of the records of the test subjects (mean window
probability per record). Writes docs/results/transfer.json and docs/transfer.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from _common import DOCS, machine_line, n2001_folder, write_section
from emgdx.io import read_cohort
from emgdx.pipeline import Pipeline
from emgdx.recording import Windows
from emgdx.simulate import simulate_cohort
from emgdx.training import TrainConfig

CLASSES = ("healthy", "neurogenic", "myopathy")
N2001_FS = 23437.5
NEW_SITE_PER_CLASS = 4
KS = (1, 2, 3)


def _subset(windows: Windows, subjects: set[str]) -> Windows:
    return windows.select(windows.index["subject_id"].astype(str).isin(subjects).to_numpy())


def _scores(pipe: Pipeline, test: Windows) -> dict[str, float]:
    table = pipe.predict(test).records
    y = table["label"].map({c: i for i, c in enumerate(pipe.class_names)}).to_numpy()
    p = table[[f"p_{c}" for c in pipe.class_names]].to_numpy(np.float64)
    present = np.unique(y)
    auc = float("nan")
    if present.size == len(pipe.class_names):
        auc = float(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    return {
        "balanced_accuracy": float(balanced_accuracy_score(y, p.argmax(axis=1))),
        "macro_auc": auc,
        "n_records": len(table),
    }


def _pipe(train: TrainConfig) -> Pipeline:
    return Pipeline(model="cnn1d", train=train, n_jobs=1)


def _summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    df = pd.DataFrame(rows)
    out = []
    for (k, method), grp in df.groupby(["k", "method"], sort=True):
        entry: dict[str, Any] = {"k": int(k), "method": method, "n_draws": len(grp)}
        for metric in ("balanced_accuracy", "macro_auc"):
            entry[f"{metric}_mean"] = round(float(grp[metric].mean()), 4)
            entry[f"{metric}_sd"] = round(float(grp[metric].std(ddof=1)), 4)
        out.append(entry)
    return out


def _markdown(doc: dict[str, Any]) -> str:
    methods = doc["methods"]
    summ = {(r["k"], r["method"]): r for r in doc["summary"]}
    lines = [
        "| method | "
        + " | ".join(f"k={k} bal. acc." for k in KS)
        + " | "
        + " | ".join(f"k={k} macro AUC" for k in KS)
        + " |",
        "|---|" + "---|" * (2 * len(KS)),
    ]
    for m in methods:
        cells = []
        for metric in ("balanced_accuracy", "macro_auc"):
            for k in KS:
                r = summ.get((k, m))
                cells.append(
                    "n/a" if r is None else f"{r[f'{metric}_mean']:.2f} ± {r[f'{metric}_sd']:.2f}"
                )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _paired(doc: dict[str, Any]) -> str:
    """Per-draw differences from ``scratch`` (same test subjects): mean ± sd and wins."""
    df = pd.DataFrame(doc["rows"])
    lines = [
        "| method − scratch | "
        + " | ".join(f"k={k} bal. acc." for k in KS)
        + " | "
        + " | ".join(f"k={k} macro AUC" for k in KS)
        + " |",
        "|---|" + "---|" * (2 * len(KS)),
    ]
    for m in doc["methods"]:
        if m == "scratch":
            continue
        cells = []
        for metric in ("balanced_accuracy", "macro_auc"):
            piv = df.pivot_table(index=["draw", "k"], columns="method", values=metric)
            diff = piv[m] - piv["scratch"]
            for k in KS:
                d = diff.xs(k, level="k")
                cells.append(
                    f"{d.mean():+.2f} ± {d.std(ddof=1):.2f} ({int((d > 0).sum())}/{len(d)})"
                )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_doc(doc: dict[str, Any], path: Path = DOCS / "transfer.md") -> None:
    """The generated block of docs/transfer.md (the discussion around it is kept)."""
    body = (
        f"Command: `{doc['command']}`  \n"
        f"Machine: {doc['machine']}  \n"
        f"Run time: {doc['seconds'] / 60:.1f} min; JSON: `docs/results/transfer.json`.\n\n"
        f"Record-level scores of the test subjects, mean ± sd over {doc['settings']['draws']} "
        "draws:\n\n"
        + _markdown(doc)
        + "\n\nPaired difference from `scratch` in the same draw (mean ± sd; in how many draws "
        "the method was better):\n\n" + _paired(doc)
    )
    if not path.exists():
        path.write_text("# Transfer learning to a new site\n")
    write_section("transfer_n2001", body, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--sim-per-class", type=int, default=10)
    parser.add_argument("--sim-records", type=int, default=5)
    parser.add_argument("--sim-duration", type=float, default=11.0)
    parser.add_argument("--pre-epochs", type=int, default=8)
    parser.add_argument("--ft-epochs", type=int, default=8)
    parser.add_argument("--windows-per-epoch", type=int, default=384)
    parser.add_argument("--pooled", action="store_true", help="add the pooled reference")
    parser.add_argument("--out", type=Path, default=DOCS / "results" / "transfer.json")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite docs/transfer.md from --out"
    )
    args = parser.parse_args()
    if args.render_only:
        write_doc(json.loads(args.out.read_text()))
        return 0
    torch.set_num_threads(1)
    folder = n2001_folder()
    t_all = time.perf_counter()
    base = TrainConfig(
        epochs=args.pre_epochs, windows_per_epoch=1024, val_fraction=0.0, patience=None
    )

    t0 = time.perf_counter()
    n2001 = _pipe(base).prepare(read_cohort(folder))
    print(f"N2001: {len(n2001)} windows prepared in {time.perf_counter() - t0:.0f} s", flush=True)
    t0 = time.perf_counter()
    levels = {"healthy": ["low", "moderate"], "neurogenic": ["low"], "myopathy": ["low"]}
    sim = simulate_cohort(
        args.sim_per_class,
        args.sim_records,
        fs_hz=N2001_FS,
        duration_s=args.sim_duration,
        levels=levels,
        seed=2026,
    )
    sim_windows = _pipe(base).prepare(sim.cohort)
    sim_s = time.perf_counter() - t0
    print(f"simulated: {len(sim_windows)} windows in {sim_s:.0f} s", flush=True)
    t0 = time.perf_counter()
    pre_sim = _pipe(base).fit(sim_windows)
    pre_sim_s = time.perf_counter() - t0
    print(f"pretrained on the simulated cohort in {pre_sim_s:.0f} s", flush=True)

    subjects = n2001.index[["subject_id", "label"]].astype(str).drop_duplicates()
    by_class = {c: sorted(subjects.loc[subjects["label"] == c, "subject_id"]) for c in CLASSES}
    rows: list[dict[str, Any]] = []
    draws: list[dict[str, Any]] = []
    for draw in range(args.draws):
        rng = np.random.default_rng(draw)
        order = {c: list(rng.permutation(s)) for c, s in by_class.items()}
        site = {c: [str(s) for s in o[:NEW_SITE_PER_CLASS]] for c, o in order.items()}
        pool = {str(s) for o in order.values() for s in o[NEW_SITE_PER_CLASS:]}
        t0 = time.perf_counter()
        pre_n2001 = _pipe(TrainConfig(**{**base.to_dict(), "seed": draw})).fit(_subset(n2001, pool))
        print(f"draw {draw}: pretrained on {sorted(pool)} in {time.perf_counter() - t0:.0f} s")
        draws.append({"draw": draw, "new_site": site, "n2001_pretraining_pool": sorted(pool)})
        pretrained = {"sim": pre_sim, "n2001": pre_n2001}
        for k in KS:
            labelled = {s for c in CLASSES for s in site[c][:k]}
            test_subjects = {s for c in CLASSES for s in site[c][k:]}
            assert not (labelled & test_subjects) and not (pool & (labelled | test_subjects))
            train_w, test_w = _subset(n2001, labelled), _subset(n2001, test_subjects)
            # Test on non-overlapping windows (every other 0.5-s hop): half the cost, the same
            # signal in every record.
            test_w = test_w.select(np.isclose(test_w.index["start_s"].to_numpy() % 1.0, 0.0))
            ft = {
                "epochs": args.ft_epochs,
                "windows_per_epoch": args.windows_per_epoch,
                "val_fraction": 0.0,
                "patience": None,
                "seed": 100 * draw + k,
            }
            runs: dict[str, Pipeline] = {}
            t0 = time.perf_counter()
            runs["scratch"] = _pipe(TrainConfig(**ft)).fit(train_w)
            # Reference: the N2001 pool and the k labelled subjects pooled, trained from scratch
            # with the pretraining budget (what sharing the data, not a model, would give).
            if args.pooled:
                pooled = TrainConfig(**{**base.to_dict(), "seed": 100 * draw + k})
                runs["pooled"] = _pipe(pooled).fit(_subset(n2001, pool | labelled))
            for src, pre in pretrained.items():
                runs[f"{src}_only"] = pre
                runs[f"{src}_ft_head"] = _pipe(TrainConfig(**ft, freeze="features")).fit(
                    train_w, init_from=pre
                )
                runs[f"{src}_ft_all"] = _pipe(TrainConfig(**ft, features_lr_scale=0.1)).fit(
                    train_w, init_from=pre
                )
            for method, pipe in runs.items():
                row = {"draw": draw, "k": k, "method": method, **_scores(pipe, test_w)}
                row["n_test_subjects"] = len(test_subjects)
                rows.append(row)
            print(
                f"draw {draw} k={k}: "
                + ", ".join(
                    f"{r['method']} {r['balanced_accuracy']:.2f}/{r['macro_auc']:.2f}"
                    for r in rows[-len(runs) :]
                )
                + f" ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    total_s = time.perf_counter() - t_all
    command = "OMP_NUM_THREADS=1 python benchmarks/transfer_n2001.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )
    doc: dict[str, Any] = {
        "command": command.strip(),
        "machine": machine_line("torch", "numpy", "scikit-learn"),
        "host": platform.node(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "seconds": round(total_s, 1),
        "model": "cnn1d",
        "level": "record (mean probability of non-overlapping 1-s windows), test subjects only",
        "methods": list(runs),
        "settings": {
            "new_site_subjects_per_class": NEW_SITE_PER_CLASS,
            "ks": list(KS),
            "draws": args.draws,
            "pretrain": {**base.to_dict(), "device": "cpu"},
            "finetune": {
                "epochs": args.ft_epochs,
                "windows_per_epoch": args.windows_per_epoch,
                "val_fraction": 0.0,
                "ft_head": {"freeze": "features"},
                "ft_all": {"freeze": "none", "features_lr_scale": 0.1},
            },
            "simulated_cohort": {
                "subjects_per_class": args.sim_per_class,
                "records_per_subject": args.sim_records,
                "fs_hz": N2001_FS,
                "duration_s": args.sim_duration,
                "levels": levels,
                "seed": 2026,
                "windows": len(sim_windows),
            },
        },
        "draws": draws,
        "summary": _summary(rows),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, allow_nan=True) + "\n")
    write_doc(doc)
    print(_markdown(doc))
    print(f"total {total_s:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
