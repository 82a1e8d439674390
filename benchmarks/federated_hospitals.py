"""Two real hospitals in Flower: FedAvg, FedProx, FedBN vs pooled central training vs each
hospital alone, on both hospitals' held-out subjects.

Run from the project root (needs ../shared/data/{n2001,algiers} and the ``federated`` extra):

    OMP_NUM_THREADS=1 python benchmarks/federated_hospitals.py --rounds 6

Design: each hospital is one Flower site (``emgdx.federated.core.hospital_sites``): about a third
of its subjects of every class are held out (seeded), the rest train. Every method trains the
same cnn1d pipeline for the same number of passes over its data (federated: ``--rounds`` rounds
x 1 local epoch; central and hospital-alone: ``--rounds`` epochs), constant learning rate, no
inner validation split. Held-out window probabilities are evaluated per hospital and pooled, at
record and subject level (mean aggregation, subject-bootstrap 95 % CIs). Writes
``docs/results/federated_hospitals.json``; ``benchmarks/multisite.py`` puts the table into
docs/multisite.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import torch

from _common import DOCS, machine_line
from emgdx.config import atomic_write, json_ready
from emgdx.datasets import SITES, site_dir
from emgdx.evaluation.cv import evaluate_predictions
from emgdx.federated import FedSettings
from emgdx.federated.core import hospital_sites, read_predictions
from emgdx.federated.run import simulate
from emgdx.io import read_cohort
from emgdx.pipeline import Pipeline
from emgdx.training import TrainConfig

OUT = DOCS.parent / "out" / "federated_hospitals"
RESULT = DOCS / "results" / "federated_hospitals.json"
METHODS = ("fedavg", "fedprox", "fedbn", "central", *(f"alone_{s}" for s in SITES))


def make_pipe(epochs: int, seed: int) -> Pipeline:
    train = TrainConfig(epochs=epochs, val_fraction=0.0, schedule="none", seed=seed)
    return Pipeline(model="cnn1d", train=train)


def evaluate(probs: np.ndarray, index: pd.DataFrame) -> dict[str, Any]:
    _, ev = evaluate_predictions(probs, index, methods=("mean",), n_boot=1000)
    out: dict[str, Any] = {}
    for subset in [s for s in ev if s == "all" or s.startswith("site=")]:
        for level in ("record", "subject"):
            res = ev[subset]["mean"][level]
            m = res["metrics"]
            out[f"{subset}/{level}"] = {
                "balanced_accuracy": m["balanced_accuracy"],
                "balanced_accuracy_ci": res["ci"].get("balanced_accuracy"),
                "roc_auc": m["roc_auc"],
                "recall": {k: v["recall"] for k, v in m["per_class"].items()},
                "n_subjects": res["n_subjects"],
            }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--mu", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    folders = [site_dir(s) for s in SITES]
    if any(f is None for f in folders):
        raise SystemExit("needs ../shared/data/n2001 and ../shared/data/algiers")
    sites = hospital_sites([str(f) for f in folders], seed=args.seed)
    cohort = read_cohort([f for f in folders if f is not None])
    windows = make_pipe(1, args.seed).prepare(cohort)
    subj = windows.index["subject_id"].astype(str)
    test = subj.isin({s for site in sites for s in site.test_subjects}).to_numpy()
    results: dict[str, Any] = {}
    for method in args.methods:
        t0 = time.perf_counter()
        if method == "central" or method.startswith("alone_"):
            chosen = [s for s in sites if method == "central" or method == f"alone_{s.name}"]
            train = subj.isin({t for s in chosen for t in s.train_subjects}).to_numpy()
            pipe = make_pipe(args.rounds, args.seed).fit(windows.select(train))
            probs, index = pipe.predict_windows(windows.select(test)), windows.index[test]
        else:
            out = OUT / method
            settings = FedSettings(
                pipeline=make_pipe(1, args.seed).to_config(),
                strategy=method,  # type: ignore[arg-type]
                rounds=args.rounds,
                local_epochs=1,
                proximal_mu=args.mu,
                out_dir=str(out),
                seed=args.seed,
                sites=sites,
            )
            simulate(settings)
            probs, index = read_predictions(out, [s.name for s in sites])
            sites_of = dict(zip(windows.index["record_id"], windows.index["site"], strict=True))
            index = index.assign(site=index["record_id"].map(sites_of))
        seconds = time.perf_counter() - t0
        results[method] = {**evaluate(probs, index.reset_index(drop=True)), "seconds": seconds}
        print(f"{method}: {seconds:.0f} s", flush=True)
    doc = {
        "rounds": args.rounds,
        "mu": args.mu,
        "seed": args.seed,
        "sites": [
            {"name": s.name, "train": len(s.train_subjects), "test": len(s.test_subjects)}
            for s in sites
        ],
        "results": results,
        "machine": machine_line("torch", "flwr"),
        "command": shlex.join(["python", *sys.argv]),
    }
    atomic_write(RESULT, json.dumps(json_ready(doc), indent=1, allow_nan=False) + "\n")
    print(f"wrote {RESULT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
