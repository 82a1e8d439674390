"""Two hospitals: leave-one-site-out for every site-robust method, written to docs/multisite.md.

Run from the project root (needs ../shared/data/n2001 and ../shared/data/algiers):

    python benchmarks/multisite.py --rows cnn1d cnn1d-adabn --threads 2
    python benchmarks/multisite.py --rows all --threads 2        # every row (about an hour)
    python benchmarks/multisite.py --rows rf-features --pooled   # pooled two-site 5-fold CV
    python benchmarks/multisite.py --shift                       # site shift of the measures
    python benchmarks/multisite.py --fewshot rf-features         # calibration curves, both ways
    python benchmarks/multisite.py --fewshot cnn1d --fine-tune   # same, fine-tuning the CNN

Each row trains on one hospital and tests on the other, both directions (``cross_validate(...,
cv="site")``, seed 0), and is stored in ``docs/results/multisite/<row>.json`` (per site:
record and subject balanced accuracy and macro AUC with subject-bootstrap 95 % CIs, per-class
recall), so that rows can be run one at a time and the table in ``docs/multisite.md`` is
regenerated from every stored row. Nothing is tuned on the test site: each row's settings are
fixed in ROWS below before it runs, and adaptation (``-adabn``, ``-aligned``) reads the test
site's records without their labels.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from _common import DOCS, machine_line
from emgdx.config import atomic_write, json_ready
from emgdx.datasets import SITES, site_dir
from emgdx.evaluation import cross_validate
from emgdx.io import read_cohort
from emgdx.pipeline import Pipeline
from emgdx.preprocess import PreprocessConfig
from emgdx.recording import Cohort
from emgdx.training import TrainConfig

OUT = DOCS / "results" / "multisite"
OUT_POOLED = DOCS / "results" / "multisite-pooled"
DOC = DOCS / "multisite.md"
KEEP_MARKER = "<!-- hand-written below: kept when the tables are regenerated -->"
QEMG_PRE = PreprocessConfig(window_s=2.5, hop_s=1.25)  # a few discharges per unit per window


def _pipe(**kwargs: Any) -> Callable[[], Pipeline]:
    return lambda: Pipeline(**kwargs)


#: Row name -> (description, pipeline factory, adapt to the test site).
ROWS: dict[str, tuple[str, Callable[[], Pipeline], bool]] = {
    "cnn1d": ("1-D CNN, default front end (zero-shot baseline)", _pipe(model="cnn1d"), False),
    "cnn1d-adabn": (
        "same, batch norm re-estimated on the new site (AdaBN)",
        _pipe(model="cnn1d"),
        True,
    ),
    "cnn1d-acquisition": (
        "1-D CNN trained with acquisition randomisation",
        _pipe(model="cnn1d", train=TrainConfig(augment=("acquisition",))),
        False,
    ),
    "cnn1d-acquisition-adabn": (
        "same, plus AdaBN on the new site",
        _pipe(model="cnn1d", train=TrainConfig(augment=("acquisition",))),
        True,
    ),
    "cnn1d-noamp": (
        "1-D CNN on the waveform's shape only (no amplitude input: nothing of the amplifier)",
        _pipe(model="cnn1d", representation_params={"aux": []}),
        False,
    ),
    "cnn1d-noamp-adabn": (
        "same, plus AdaBN on the new site",
        _pipe(model="cnn1d", representation_params={"aux": []}),
        True,
    ),
    "rf-features": ("random forest, handcrafted features", _pipe(model="random_forest"), False),
    "rf-features-aligned": (
        "same, features aligned to the new site",
        _pipe(model="random_forest"),
        True,
    ),
    "rf-subjects": (
        "random forest, handcrafted features, every subject weighs the same (not every window)",
        _pipe(model="random_forest", train=TrainConfig(balance="subjects")),
        False,
    ),
    "rf-subjects-aligned": (
        "same, features aligned to the new site",
        _pipe(model="random_forest", train=TrainConfig(balance="subjects")),
        True,
    ),
    "rf-spectral": (
        "random forest, spectral and wavelet features only (no amplitude measure)",
        _pipe(model="random_forest", representation_params={"groups": ["spectral", "wavelet"]}),
        False,
    ),
    "rf-spectral-aligned": (
        "same, features aligned to the new site",
        _pipe(model="random_forest", representation_params={"groups": ["spectral", "wavelet"]}),
        True,
    ),
    "rf-qemg": (
        "random forest, quantitative EMG (MUPs + interference pattern), 2.5 s windows",
        _pipe(
            model="random_forest",
            preprocess=QEMG_PRE,
            representation_params={"groups": ["qemg"]},
        ),
        False,
    ),
    "rf-qemg-aligned": (
        "same, QEMG features aligned to the new site",
        _pipe(
            model="random_forest",
            preprocess=QEMG_PRE,
            representation_params={"groups": ["qemg"]},
        ),
        True,
    ),
}


def read_sites() -> Cohort:
    folders = [site_dir(name) for name in SITES]
    if any(f is None for f in folders):
        raise SystemExit(f"needs ../shared/data/{{{','.join(SITES)}}} (or $EMGDX_DATA)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_cohort([f for f in folders if f is not None])


def _summary(result: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for subset in [s for s in result.evaluation if s.startswith("site=") or s == "without_hum"]:
        for level in ("record", "subject"):
            ev = result.evaluation[subset]["mean"][level]
            m = ev["metrics"]
            out[f"{subset}/{level}"] = {
                "n": m["n"],
                "n_subjects": ev["n_subjects"],
                "balanced_accuracy": m["balanced_accuracy"],
                "balanced_accuracy_ci": ev["ci"].get("balanced_accuracy"),
                "roc_auc": m["roc_auc"],
                "roc_auc_ci": ev["ci"].get("roc_auc"),
                "recall": {k: v["recall"] for k, v in m["per_class"].items()},
            }
    return out


def run_row(name: str, cohort: Cohort, threads: int, pooled: bool = False) -> dict[str, Any]:
    """Leave-one-site-out of one row, or (``pooled``) its 5-fold subject-wise cross-validation
    of both hospitals together, stratified by site and class."""
    description, make, adapt = ROWS[name]
    t0 = time.perf_counter()
    windows = make().prepare(cohort)
    scheme = {"cv": "pooled", "k": 5} if pooled else {"cv": "site"}
    result = cross_validate(make, windows, **scheme, adapt=adapt, n_boot=1000, seed=0)
    flag = " --pooled" if pooled else ""
    doc = {
        "row": name,
        "description": description,
        "adapt": adapt,
        "pipeline": make().to_config(),
        "seconds": round(time.perf_counter() - t0),
        "threads": threads,
        "machine": machine_line("torch", "scikit-learn"),
        "command": f"python benchmarks/multisite.py --rows {name} --threads {threads}{flag}",
        "cv": scheme,
        "folds": result.folds,
        "summary": _summary(result),
    }
    return json_ready(doc)


def _cell(entry: dict[str, Any], key: str) -> str:
    value, ci = entry[key], entry.get(f"{key}_ci")
    if value is None:
        return "–"
    return f"{value:.2f}" + (f" [{ci[0]:.2f}–{ci[1]:.2f}]" if ci and None not in ci else "")


def _table_rows(row: dict[str, Any], subsets: Sequence[tuple[str, str]]) -> list[str]:
    """One table line per evaluated subset of a stored row: (subset key, how it is shown)."""
    lines = []
    for subset, shown in subsets:
        rec = row["summary"].get(f"{subset}/record")
        sub = row["summary"].get(f"{subset}/subject")
        if rec is None or sub is None:
            continue
        recall = " / ".join(
            f"{sub['recall'][c]:.2f}" for c in ("healthy", "neurogenic", "myopathy")
        )
        lines.append(
            f"| `{row['row']}` | {row['description']} | {shown} | "
            f"{_cell(rec, 'balanced_accuracy')} | {_cell(rec, 'roc_auc')} | "
            f"{_cell(sub, 'balanced_accuracy')} | {recall} |"
        )
    return lines


def write_doc() -> None:
    rows = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    order = {name: i for i, name in enumerate(ROWS)}
    rows.sort(key=lambda r: order.get(r["row"], len(order)))
    lines = [
        "# Two hospitals: leave-one-site-out",
        "",
        "Train on one hospital, test on the other (both directions), subject-wise figures with",
        "subject-bootstrap 95 % intervals. *N2001 → Algiers* means trained on Copenhagen (EMGLAB",
        "N2001, 18 subjects), tested on Algiers (119 subjects), and the other way round.",
        "Regenerated by `python benchmarks/multisite.py`; each row's command and machine are in",
        "`docs/results/multisite/<row>.json`.",
        "",
        "| row | what | test site | record BA | record AUC | subject BA | recall H / N / M |",
        "|---|---|---|---|---|---|---|",
    ]
    subsets = (("site=algiers", "N2001 → Algiers"), ("site=n2001", "Algiers → N2001"))
    lines += [line for row in rows for line in _table_rows(row, subsets)]
    lines += ["", "Machines and times per row:", ""]
    lines += [f"- `{r['row']}`: {r['seconds']} s, {r['machine']}" for r in rows]
    pooled = [json.loads(p.read_text()) for p in sorted(OUT_POOLED.glob("*.json"))]
    if pooled:
        pooled.sort(key=lambda r: order.get(r["row"], len(order)))
        lines += ["", *_pooled_section(pooled)]
    shift = DOCS / "results" / "multisite-shift.json"
    if shift.is_file():
        lines += ["", *_shift_section(json.loads(shift.read_text()))]
    for path in sorted((DOCS / "results").glob("multisite-fewshot-*.json")):
        lines += ["", *_fewshot_section(json.loads(path.read_text()))]
    federated = DOCS / "results" / "federated_hospitals.json"
    if federated.is_file():
        lines += ["", *_federated_section(json.loads(federated.read_text()))]
    text = "\n".join(lines) + "\n"
    if DOC.exists() and KEEP_MARKER in (old := DOC.read_text()):
        text += "\n" + KEEP_MARKER + old.split(KEEP_MARKER, 1)[1]
    atomic_write(DOC, text)


def _pooled_section(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Pooled two-site cross-validation",
        "",
        "Both hospitals in one subject-wise 5-fold cross-validation, folds stratified by site",
        "and class (seed 0): every subject is tested once by a model trained on both hospitals'",
        "other subjects, the situation of the shipped model. Figures per hospital with",
        "subject-bootstrap 95 % intervals; `without_hum` leaves out the records QC flags for",
        "mains hum.",
        "",
        "| row | what | tested | record BA | record AUC | subject BA | recall H / N / M |",
        "|---|---|---|---|---|---|---|",
    ]
    subsets = [(s, s) for s in ("site=n2001", "site=algiers", "without_hum")]
    lines += [line for row in rows for line in _table_rows(row, subsets)]
    lines += ["", "Commands, machines and times:", ""]
    lines += [f"- `{r['command']}`: {r['seconds']} s, {r['machine']}" for r in rows]
    return lines


def measure_shift() -> dict[str, Any]:
    """How far each measure moves between the two hospitals' healthy subjects (Cohen's d of
    record medians), per feature group: physiology should move less than waveform statistics."""
    from emgdx.represent import FeatureRepr

    cohort = read_sites()
    healthy = cohort.subset(list(cohort.manifest.index[cohort.manifest["label"] == "healthy"]))
    windows = Pipeline(model="random_forest", preprocess=QEMG_PRE).prepare(healthy)
    groups = ("time", "spectral", "wavelet", "muap", "qemg")
    rep = FeatureRepr(groups=groups)
    x = rep.transform(windows.data, windows.fs_hz)["x"]
    frame = pd.DataFrame(x, columns=rep.feature_names)
    frame["record_id"] = windows.index["record_id"].to_numpy()
    frame["site"] = windows.index["site"].to_numpy()
    per_record = frame.groupby(["site", "record_id"]).median()
    a, b = (per_record.loc[s] for s in SITES)
    pooled = np.sqrt((a.var() + b.var()) / 2).replace(0, np.nan)
    d = ((a.mean() - b.mean()) / pooled).abs()
    by_group = {}
    for group in groups:
        names = FeatureRepr(groups=(group,)).feature_names
        by_group[group] = {
            "median_abs_d": float(np.nanmedian(d[list(names)])),
            "features": {n: None if np.isnan(d[n]) else float(d[n]) for n in names},
        }
    return {
        "records": {s: len(per_record.loc[s]) for s in SITES},
        "groups": by_group,
        "machine": machine_line(),
        "command": "python benchmarks/multisite.py --shift",
    }


def _shift_section(doc: dict[str, Any]) -> list[str]:
    lines = [
        "## How far the measures move between the hospitals",
        "",
        "Healthy subjects only (so disease mix plays no part): |Cohen's d| between the two",
        "hospitals of each measure's record medians (2.5 s windows), median over a group's",
        f"measures. Records: {doc['records']}. Command: `{doc['command']}` ({doc['machine']}).",
        "",
        "| feature group | median abs. d | largest |",
        "|---|---|---|",
    ]
    for group, entry in doc["groups"].items():
        feats = {k: v for k, v in entry["features"].items() if v is not None}
        top = sorted(feats.items(), key=lambda kv: -kv[1])[:3]
        lines.append(
            f"| {group} | {entry['median_abs_d']:.2f} | "
            + ", ".join(f"{k} {v:.2f}" for k, v in top)
            + " |"
        )
    return lines


def run_fewshot(row: str, cohort: Cohort, draws: int, fine_tune: bool) -> dict[str, Any]:
    """Few-shot calibration curves of one row's pipeline, each hospital in turn the new one
    (labelled subjects joined to the training data, or ``fine_tune``: used to fine-tune)."""
    from emgdx.evaluation import FEW_SHOTS, few_shot_curve, fine_tuning_config

    description, make, adapt = ROWS[row]

    def tuned() -> Pipeline:
        pipe = make()
        pipe.train = fine_tuning_config(pipe.train)
        return pipe

    windows = make().prepare(cohort)
    curves = {}
    t0 = time.perf_counter()
    for target in SITES:
        curve = few_shot_curve(
            make,
            windows,
            target=target,
            shots=FEW_SHOTS,
            draws=draws,
            adapt=adapt,
            seed=0,
            fine_tune=tuned if fine_tune else None,
        )
        curves[target] = curve.to_dict()
    flag = " --fine-tune" if fine_tune else ""
    return json_ready(
        {
            "row": row,
            "fine_tune": fine_tune,
            "description": description,
            "draws": draws,
            "curves": curves,
            "seconds": round(time.perf_counter() - t0),
            "machine": machine_line("torch", "scikit-learn"),
            "command": f"python benchmarks/multisite.py --fewshot {row} --draws {draws}{flag}",
        }
    )


def _fewshot_section(doc: dict[str, Any]) -> list[str]:
    if doc.get("fine_tune"):
        how = [
            f"## Few-shot fine-tuning: `{doc['row']}` ({doc['description']})",
            "",
            "One model is trained on the other hospital; for each draw, a copy of it is",
            "fine-tuned on k labelled subjects per class of the new hospital alone (10 epochs,",
            "pretrained layers at a tenth of the head's learning rate); the rest of the new",
            "hospital is the test set (so it shrinks as k grows).",
        ]
    else:
        how = [
            f"## Few-shot calibration: `{doc['row']}` ({doc['description']})",
            "",
            "k labelled subjects per class of the new hospital join the other hospital's",
            "training data; the rest of the new hospital is the test set (so it shrinks as k",
            "grows).",
        ]
    lines = [
        *how,
        f"Mean [min–max] over {doc['draws']} draws of the labelled subjects (k = 0: one run).",
        f"Command: `{doc['command']}` ({doc['machine']}, {doc['seconds']} s).",
        "",
        "| new hospital | k | subjects tested | record BA | subject BA | recall H / N / M |",
        "|---|---|---|---|---|---|",
    ]
    for target, curve in doc["curves"].items():
        rows = pd.DataFrame(curve["rows"])
        for k, grp in rows.groupby("k"):

            def span(col: str, g: pd.DataFrame = grp) -> str:
                return f"{g[col].mean():.2f} [{g[col].min():.2f}–{g[col].max():.2f}]"

            recall = " / ".join(
                f"{grp[f'subject_recall_{c}'].mean():.2f}"
                for c in ("healthy", "neurogenic", "myopathy")
            )
            lines.append(
                f"| {target} | {k} | {grp['n_test_subjects'].median():.0f} | "
                f"{span('record_balanced_accuracy')} | {span('subject_balanced_accuracy')} | "
                f"{recall} |"
            )
        for k, why in curve["skipped"].items():
            lines.append(f"| {target} | {k} | – | skipped: {why} | | |")
    return lines


def _federated_section(doc: dict[str, Any]) -> list[str]:
    sites = ", ".join(
        f"{s['name']} {s['train']} train / {s['test']} held out" for s in doc["sites"]
    )
    lines = [
        "## Two hospitals in Flower",
        "",
        f"Each hospital is one Flower site (subjects: {sites}); every method makes",
        f"{doc['rounds']} passes over its training data (federated: rounds x 1 local epoch).",
        f"Held-out subjects of both hospitals. Command: `{doc['command']}` ({doc['machine']}).",
        "",
        "| method | held out | record BA | subject BA | subject recall H / N / M |",
        "|---|---|---|---|---|",
    ]
    for method, res in doc["results"].items():
        for subset in [k.split("/")[0] for k in res if k.endswith("/record")]:
            rec, sub = res[f"{subset}/record"], res[f"{subset}/subject"]
            recall = " / ".join(
                f"{sub['recall'][c]:.2f}" for c in ("healthy", "neurogenic", "myopathy")
            )
            lines.append(
                f"| {method} | {subset} | {_cell(rec, 'balanced_accuracy')} | "
                f"{_cell(sub, 'balanced_accuracy')} | {recall} |"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="*", default=[], help=f"rows to run, or all: {list(ROWS)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--pooled", action="store_true", help="--rows: pooled 5-fold CV instead of site-out"
    )
    parser.add_argument("--shift", action="store_true", help="measure the site shift of features")
    parser.add_argument("--fewshot", nargs="*", default=[], help="rows to draw curves for")
    parser.add_argument("--draws", type=int, default=5, help="draws per k of --fewshot")
    parser.add_argument(
        "--fine-tune", action="store_true", help="--fewshot: fine-tune instead of joining"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    names = list(ROWS) if args.rows == ["all"] else args.rows
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {list(ROWS)}")
    out = OUT_POOLED if args.pooled else OUT
    out.mkdir(parents=True, exist_ok=True)
    if names:
        cohort = read_sites()
        for name in names:
            print(f"{name}: running", flush=True)
            doc = run_row(name, cohort, args.threads, args.pooled)
            atomic_write(out / f"{name}.json", json.dumps(doc, indent=1, allow_nan=False) + "\n")
            print(f"{name}: {doc['seconds']} s", flush=True)
    for row in args.fewshot:
        if row not in ROWS:
            parser.error(f"unknown row {row}")
        doc = run_fewshot(row, read_sites(), args.draws, args.fine_tune)
        suffix = "-finetune" if args.fine_tune else ""
        path = DOCS / "results" / f"multisite-fewshot-{row}{suffix}.json"
        atomic_write(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")
    if args.shift:
        doc = measure_shift()
        path = DOCS / "results" / "multisite-shift.json"
        atomic_write(path, json.dumps(json_ready(doc), indent=1, allow_nan=False) + "\n")
    write_doc()
    print(f"wrote {DOC}  ({shlex.join(sys.argv)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
