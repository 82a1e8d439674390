"""Federated (FedAvg, FedProx, FedBN) vs central vs each site alone on N2001, 3 non-IID sites.

Run from the project root (needs the real data and the ``federated`` extra):

    OMP_NUM_THREADS=1 python benchmarks/federated_n2001.py --rounds 4

Design: the 18 subjects are dealt to sites A, B, C per label (round robin, seeded); site C
holds no myopathy subject (non-IID). Subject-wise cross-validation with ``--folds`` grouped
folds, each holding out about 1/folds of *every* site's subjects (per site, per label round
robin), so every fold tests on subjects of all sites. Every method trains the same cnn1d
Pipeline for the same number of passes over its data (federated: ``--rounds`` rounds x 1
local epoch; central and site-alone: ``--rounds`` epochs), constant learning rate, no inner
validation split. Out-of-fold window probabilities of each method are pooled over folds and
evaluated at record and subject level (mean aggregation). Writes ``docs/results/federated.json``
and the table in docs/federated.md between markers. One thread.
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

from _common import DOCS, machine_line, n2001_folder, write_section
from emgdx.evaluation.cv import evaluate_predictions
from emgdx.federated import FedSettings, SiteSpec
from emgdx.federated.core import read_predictions
from emgdx.federated.run import simulate
from emgdx.io import read_cohort
from emgdx.pipeline import Pipeline
from emgdx.preprocess import PreprocessConfig
from emgdx.training import TrainConfig

SITES = ("A", "B", "C")
EXCLUDE = {"C": {"myopathy"}}
OUT = DOCS.parent / "out" / "federated_n2001"
DOC = DOCS / "federated.md"


def assign(manifest: pd.DataFrame, folds: int, seed: int) -> pd.DataFrame:
    """One row per subject: label, site, fold."""
    rng = np.random.default_rng(seed)
    subj = manifest.groupby("subject_id")["label"].first().reset_index()
    rows = []
    turn = 0
    for label, grp in subj.groupby("label"):
        ids = sorted(grp["subject_id"].astype(str))
        rng.shuffle(ids)
        allowed = [s for s in SITES if label not in EXCLUDE.get(s, set())]
        for sid in ids:
            rows.append({"subject_id": sid, "label": label, "site": allowed[turn % len(allowed)]})
            turn += 1
    table = pd.DataFrame(rows)
    table["fold"] = -1
    for site, grp in table.groupby("site"):
        order = grp.sort_values("label").index.to_list()
        for i, idx in enumerate(order):
            table.loc[idx, "fold"] = (i + SITES.index(str(site))) % folds
    return table


def make_pipe(epochs: int, seed: int) -> Pipeline:
    train = TrainConfig(epochs=epochs, val_fraction=0.0, schedule="none", seed=seed)
    return Pipeline(preprocess=PreprocessConfig(target_fs_hz=6000.0), model="cnn1d", train=train)


METRICS = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1")


def evaluate(probs: np.ndarray, index: pd.DataFrame, n_boot: int = 1000) -> dict[str, Any]:
    """The diagnosis issue's metrics at window, record and subject level, with 95 %
    subject-bootstrap CIs for record balanced accuracy and AUC."""
    _, ev = evaluate_predictions(probs, index, methods=("mean",), n_boot=n_boot)
    out: dict[str, Any] = {}
    for level in ("window", "record", "subject"):
        res = ev["all"]["mean"][level]
        m = res["metrics"]
        out[f"{level}_macro_auc"] = float(m["roc_auc"])
        for name in METRICS:
            out[f"{level}_{name}"] = float(m[name])
        if level == "record":
            ci = res.get("ci") or {}
            for name in ("balanced_accuracy", "roc_auc"):
                if name in ci:
                    out[f"record_{name}_ci"] = [float(v) for v in ci[name]]
    return out


def run_once(
    args: argparse.Namespace, seed: int, cohort: Any, windows: Any, data: Any
) -> tuple[dict[str, Any], pd.DataFrame]:
    """One full experiment (site/fold assignment and training seeded by ``seed``)."""
    table = assign(cohort.manifest.astype({"subject_id": str}), args.folds, seed)
    print(table.sort_values(["site", "fold"]).to_string(), flush=True)
    subj = windows.index["subject_id"].astype(str)
    oof: dict[str, list[tuple[np.ndarray, pd.DataFrame]]] = {m: [] for m in args.methods}
    seconds: dict[str, float] = {m: 0.0 for m in args.methods}
    for fold in range(args.folds):
        test_subj = set(table.loc[table["fold"] == fold, "subject_id"])
        test_w = windows.select((subj.isin(test_subj)).to_numpy())
        for method in args.methods:
            t0 = time.perf_counter()
            if method == "central" or method.startswith("site_"):
                train_set = table[table["fold"] != fold]
                if method.startswith("site_"):
                    train_set = train_set[train_set["site"] == method[-1]]
                mask = subj.isin(set(train_set["subject_id"])).to_numpy()
                pipe = make_pipe(args.rounds, seed).fit(windows.select(mask))
                probs, index = pipe.predict_windows(test_w), test_w.index
            else:
                sites = []
                for s in SITES:
                    st = table[table["site"] == s]
                    sites.append(
                        SiteSpec(
                            s,
                            str(data),
                            tuple(sorted(st.loc[st["fold"] != fold, "subject_id"])),
                            tuple(sorted(st.loc[st["fold"] == fold, "subject_id"])),
                        )
                    )
                out = OUT / f"seed{seed}" / f"fold{fold}" / method
                settings = FedSettings(
                    pipeline=make_pipe(1, seed).to_config(),
                    strategy=method,  # type: ignore[arg-type]
                    rounds=args.rounds,
                    local_epochs=1,
                    proximal_mu=args.mu,
                    out_dir=str(out),
                    seed=seed,
                    sites=sites,
                )
                simulate(settings)
                probs, index = read_predictions(out, [s.name for s in sites if s.test_subjects])
            seconds[method] += time.perf_counter() - t0
            oof[method].append((probs, index))
            print(f"seed {seed} fold {fold} {method}: {time.perf_counter() - t0:.0f} s", flush=True)
    results = {}
    for method, parts in oof.items():
        probs = np.concatenate([p for p, _ in parts])
        index = pd.concat([i for _, i in parts], ignore_index=True)
        results[method] = {**evaluate(probs, index), "seconds": seconds[method]}
    return results, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--mu", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="repeat the whole experiment once per seed (new site/fold assignment and "
        "training seed each time) and report the spread of the method differences "
        "(docs/results/federated_seeds.json, second table in docs/federated.md)",
    )
    ap.add_argument(
        "--methods",
        nargs="+",
        default=["central", "site_A", "site_B", "site_C", "fedavg", "fedprox", "fedbn"],
    )
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    data = n2001_folder()
    t_all = time.perf_counter()
    cohort = read_cohort(data)
    windows = make_pipe(1, 0).prepare(cohort)
    cmd = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')} python " + shlex.join(sys.argv)
    (DOCS / "results").mkdir(exist_ok=True)
    if args.seeds:
        per_seed = {}
        for seed in args.seeds:
            results, table = run_once(args, seed, cohort, windows, data)
            per_seed[str(seed)] = {"results": results, "sites": table.to_dict(orient="records")}
        payload = {
            "command": cmd,
            "machine": machine_line("torch", "flwr"),
            "total_seconds": time.perf_counter() - t_all,
            "design": {"rounds": args.rounds, "folds": args.folds, "mu": args.mu},
            "per_seed": per_seed,
        }
        (DOCS / "results" / "federated_seeds.json").write_text(json.dumps(payload, indent=2))
        write_seeds_doc(payload)
        return
    results, table = run_once(args, args.seed, cohort, windows, data)
    payload = {
        "command": cmd,
        "machine": machine_line("torch", "flwr"),
        "total_seconds": time.perf_counter() - t_all,
        "design": {
            "rounds": args.rounds,
            "folds": args.folds,
            "mu": args.mu,
            "sites": table.to_dict(orient="records"),
        },
        "results": results,
    }
    (DOCS / "results" / "federated.json").write_text(json.dumps(payload, indent=2))
    write_doc(payload)
    print(json.dumps(results, indent=2))


COMPARISONS = (
    ("fedavg", "central"),
    ("fedavg", "best_site_alone"),
    ("fedavg", "mean_site_alone"),
    ("fedprox", "fedavg"),
    ("fedbn", "fedavg"),
)


def write_seeds_doc(payload: dict[str, Any]) -> None:
    """Mean and spread over seeds of each method, and of paired differences per seed."""

    def score(res: dict[str, Any], method: str, key: str) -> float:
        if method in res:
            return float(res[method][key])
        sites = [float(res[m][key]) for m in res if m.startswith("site_")]
        return max(sites) if method == "best_site_alone" else float(np.mean(sites))

    seeds = list(payload["per_seed"])
    keys = ("record_balanced_accuracy", "record_macro_auc", "record_macro_f1")
    first = payload["per_seed"][seeds[0]]["results"]
    lines = [
        f"Command: `{payload['command']}`  ",
        f"Machine: {payload['machine']}  ",
        f"Total wall time: {payload['total_seconds'] / 60:.1f} min; seeds {', '.join(seeds)} "
        "(each: new site and fold assignment, new training seed).",
        "",
        "Per method, mean ± sd over seeds (record level, out-of-fold over all 18 subjects):",
        "",
        "| method | record bal. acc. | record macro AUC | record macro F1 |",
        "|---|---|---|---|",
    ]
    for m in first:
        cells = []
        for k in keys:
            v = np.array([score(payload["per_seed"][s]["results"], m, k) for s in seeds])
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Paired differences (same seed, same folds), record balanced accuracy and macro AUC: "
        "mean ± sd over seeds, min..max, and in how many seeds the first method was ahead:",
        "",
        "| comparison | Δ bal. acc. | range | ahead | Δ AUC | range | ahead |",
        "|---|---|---|---|---|---|---|",
    ]
    for a, b in COMPARISONS:
        if a not in first or (b in ("central", "fedavg") and b not in first):
            continue
        row = [f"{a} − {b.replace('_', ' ')}"]
        for k in keys[:2]:
            d = np.array(
                [
                    score(payload["per_seed"][s]["results"], a, k)
                    - score(payload["per_seed"][s]["results"], b, k)
                    for s in seeds
                ]
            )
            sd = d.std(ddof=1) if len(d) > 1 else 0.0
            row += [
                f"{d.mean():+.3f} ± {sd:.3f}",
                f"{d.min():+.2f}..{d.max():+.2f}",
                f"{int((d > 0).sum())}/{len(d)}",
            ]
        lines.append("| " + " | ".join(row) + " |")
    write_section("federated_seeds", "\n".join(lines), DOC, header="")


def write_doc(payload: dict[str, Any]) -> None:
    lines = [
        f"Command: `{payload['command']}`  ",
        f"Machine: {payload['machine']}  ",
        f"Total wall time: {payload['total_seconds'] / 60:.1f} min "
        f"({os.environ.get('OMP_NUM_THREADS', 'all')} torch thread(s)).",
        "",
        "Record level (mean of window probabilities per record), out-of-fold over all 18 "
        "subjects; [95 % subject-bootstrap CI]:",
        "",
        "| method | record bal. acc. | record macro AUC | accuracy | macro precision | "
        "macro recall | macro F1 | subject bal. acc. | subject macro AUC | window bal. acc. "
        "| train+eval time (s, all folds) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def with_ci(r: dict[str, Any], key: str, ci_key: str) -> str:
        ci = r.get(ci_key)
        return f"{r[key]:.3f}" + (f" [{ci[0]:.2f}–{ci[1]:.2f}]" if ci else "")

    for m, r in payload["results"].items():
        lines.append(
            f"| {m} | {with_ci(r, 'record_balanced_accuracy', 'record_balanced_accuracy_ci')} | "
            f"{with_ci(r, 'record_macro_auc', 'record_roc_auc_ci')} | "
            f"{r.get('record_accuracy', float('nan')):.3f} | "
            f"{r.get('record_macro_precision', float('nan')):.3f} | "
            f"{r.get('record_macro_recall', float('nan')):.3f} | "
            f"{r.get('record_macro_f1', float('nan')):.3f} | "
            f"{r['subject_balanced_accuracy']:.3f} | {r['subject_macro_auc']:.3f} | "
            f"{r['window_balanced_accuracy']:.3f} | {r['seconds']:.0f} |"
        )
    sites = pd.DataFrame(payload["design"]["sites"])
    lines += ["", "Sites and folds (subject: label, site, fold):", ""]
    for site, grp in sites.groupby("site"):
        items = ", ".join(
            f"{r.subject_id} ({r.label[0]}, f{r.fold})" for r in grp.itertuples(index=False)
        )
        lines.append(f"- site {site}: {items}")
    write_section("federated_n2001", "\n".join(lines), DOC, header="")


if __name__ == "__main__":
    main()
