"""Know when not to answer: refusals, out-of-distribution scores and calibration, measured.

Run from the project root (needs ../shared/data/n2001 and ../shared/data/algiers):

    python benchmarks/safety.py --threads 2            # everything (about 5 minutes)
    python benchmarks/safety.py --panel-only            # the generated panel only (1-2 min)

1. **Panel**: :func:`emgdx.safety_panel.make_panel` (20 inputs of each of 11 kinds: noise of
   three colours and several levels, sine mixtures, ECG-like traces, flat-with-spikes,
   surface-EMG-like noise, N2001 records time-reversed, phase-scrambled and scaled x0.01 and
   x100) through the shipped model's ``predict``: the share *refused* (not interpretable) and
   *refused or flagged* (also a needle-EMG QC flag or an out-of-distribution caution).
2. **Real records of new subjects**: pooled 5-fold cross-validation of the default
   configuration over both hospitals (subject-wise, stratified by site and class). Each record
   is refused by QC (model-independent) or by its fold's out-of-distribution score; the share
   refused is "wrongly refused" (every record here is real needle EMG). The same run gives
   the record-level expected calibration error before and after calibration, per site.
3. **The second site**: leave-one-site-out (train on one hospital, test on the other): what
   the unseen hospital's records score, and calibration there.

Figures go to ``docs/safety.md`` (generated sections) and ``docs/results/safety.json``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch

from _common import DOCS, machine_line, write_section
from emgdx.config import atomic_write, json_ready
from emgdx.datasets import site_dir
from emgdx.evaluation import cross_validate
from emgdx.io import read_cohort
from emgdx.needle import NEEDLE_FLAGS
from emgdx.pipeline import Pipeline
from emgdx.pretrained import default_model_dir, default_pipeline
from emgdx.quality import QualityReport, assess
from emgdx.recording import Cohort
from emgdx.safety_panel import DERIVED_KINDS, SYNTHETIC_KINDS, make_panel

DOC = DOCS / "safety.md"
OUT = DOCS / "results" / "safety.json"
HEADER = "# Safety: knowing when not to answer\n"


def _cohort() -> Cohort:
    folders = [site_dir(s) for s in ("n2001", "algiers")]
    if any(f is None for f in folders):
        raise SystemExit("N2001 and Algiers data are needed (EMGDX_DATA or ../shared/data)")
    return read_cohort([f for f in folders if f is not None])


def panel(cohort: Cohort, per_kind: int, seed: int) -> dict[str, Any]:
    site_of = _site_of(cohort)
    n2001 = [r for r in cohort.recordings if site_of[r.record_id] == "n2001"]
    inputs = make_panel(n2001, per_kind=per_kind, seed=seed)
    pipe = Pipeline.load(default_model_dir())
    t0 = time.perf_counter()
    dx = pipe.predict([r for _, r in inputs])
    seconds = time.perf_counter() - t0
    rows = dx.records.set_index("record_id")
    kinds = {r.record_id: k for k, r in inputs}
    table = []
    for rid, kind in kinds.items():
        row = rows.loc[rid]
        flags = [f for f in str(row.get("qc_flags") or "").split(";") if f]
        refused = row["outcome"] != "judged"
        flagged = refused or bool(row["warnings"]) or bool(set(flags) & set(NEEDLE_FLAGS))
        table.append(
            {
                "kind": kind,
                "record_id": rid,
                "refused": bool(refused),
                "flagged": bool(flagged),
                "qc_flags": ";".join(flags),
                "ood_score": float(row["ood_score"]),
                "reason": str(row["reasons"] or row["warnings"] or row["note"]),
            }
        )
    frame = pd.DataFrame(table)
    by_kind = frame.groupby("kind", sort=False)[["refused", "flagged"]].mean()
    return {
        "n": len(frame),
        "per_kind": per_kind,
        "seed": seed,
        "seconds": round(seconds, 1),
        "refused": float(frame["refused"].mean()),
        "refused_or_flagged": float(frame["flagged"].mean()),
        "by_kind": {k: {c: float(v) for c, v in r.items()} for k, r in by_kind.iterrows()},
        "typical_reason": frame.groupby("kind", sort=False)["reason"]
        .agg(lambda s: s.value_counts().index[0] if len(s) else "")
        .to_dict(),
        "ood_median": frame.groupby("kind", sort=False)["ood_score"].median().to_dict(),
        "model": pipe.identity().to_dict(),
    }


def _not_judged(report: QualityReport) -> bool:
    """QC alone keeps the record from being judged: not needle EMG, or no usable signal."""
    return bool(report.not_interpretable) or bool({"empty", "too_short"} & set(report.flags))


def _site_of(cohort: Cohort) -> dict[str, str]:
    man = cohort.manifest
    return dict(zip(man["record_id"].astype(str), man["site"].astype(str), strict=True))


def real_records(cohort: Cohort, scheme: dict[str, Any]) -> dict[str, Any]:
    """QC and out-of-distribution refusals of real records tested by models that did not see
    their subjects, and calibration before/after, per site."""
    site_of = _site_of(cohort)
    qc_refused = {r.record_id: _not_judged(assess(r)) for r in cohort.recordings}
    t0 = time.perf_counter()
    make = default_pipeline
    windows = make().prepare(cohort)
    result = cross_validate(make, windows, **scheme, n_boot=200, seed=0)
    ood = result.ood["records"]
    per_site: dict[str, dict[str, Any]] = {}
    for rid, site in site_of.items():
        entry = per_site.setdefault(
            site,
            {
                "records": 0,
                "qc": 0,
                "ood_alien": 0,
                "ood_unusual": 0,
                "refused": 0,
                "not_tested": 0,
            },
        )
        entry["records"] += 1
        verdict = ood.get(rid, {}).get("verdict")
        if verdict is None and not qc_refused[rid]:
            entry["not_tested"] += 1  # no window (e.g. too short after QC)
        entry["qc"] += qc_refused[rid]
        entry["ood_alien"] += verdict == "alien"
        entry["ood_unusual"] += verdict == "unusual"
        entry["refused"] += qc_refused[rid] or verdict == "alien"
    for entry in per_site.values():
        entry["refused_share"] = entry["refused"] / entry["records"]
    total = sum(e["refused"] for e in per_site.values()) / sum(
        e["records"] for e in per_site.values()
    )
    scores = pd.DataFrame(
        [{"site": site_of.get(r, "?"), "score": v["score"]} for r, v in ood.items()]
    )
    # Are the records the score cautions about or refuses the ones the model gets wrong?
    table = result.tables["all"]["mean"]["record"]
    right = dict(
        zip(table["record_id"].astype(str), table["predicted"] == table["true"], strict=True)
    )
    accuracy: dict[str, dict[str, Any]] = {}
    for verdict in ("typical", "unusual", "alien"):
        hits = [right[r] for r, v in ood.items() if v["verdict"] == verdict and r in right]
        accuracy[verdict] = {"n": len(hits), "accuracy": float(np.mean(hits)) if hits else None}
    return {
        "scheme": scheme,
        "seconds": round(time.perf_counter() - t0),
        "per_site": per_site,
        "refused_share": total,
        "accuracy_by_verdict": accuracy,
        "ood_score_quantiles": {
            site: np.quantile(g["score"], [0.05, 0.5, 0.95]).round(2).tolist()
            for site, g in scores.groupby("site")
        },
        "calibration": {
            k: {
                "n_records": v["n_records"],
                "ece_before": v["ece_before"],
                "ece_after": v["ece_after"],
            }
            for k, v in result.calibration.items()
        },
        "temperatures": [f["temperature"] for f in result.folds],
        "folds": [f["test_subjects"][:3] for f in result.folds],
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def render(res: dict[str, Any], command: str) -> str:
    lines = [f"Machine: {res['machine']}.", f"Command: `{command}`.", ""]
    p = res.get("panel")
    if p:
        lines += [
            "### The generated panel through the shipped model",
            "",
            f"{p['n']} inputs ({p['per_kind']} of each kind, seed {p['seed']}); the shipped model "
            f"(weights `{p['model']['weights_sha256'][:16]}…`) predicted them all in "
            f"{p['seconds']} s. **Refused or flagged: {_pct(p['refused_or_flagged'])}** "
            f"(target ≥ 95 %); refused outright (not interpretable): {_pct(p['refused'])}.",
            "",
            "| kind | refused | refused or flagged | median OOD score | typical reason |",
            "|---|---|---|---|---|",
        ]
        for kind in (*SYNTHETIC_KINDS, *DERIVED_KINDS):
            if kind not in p["by_kind"]:
                continue
            r = p["by_kind"][kind]
            reason = p["typical_reason"].get(kind, "") or "—"
            median = p["ood_median"].get(kind)
            lines.append(
                f"| {kind} | {_pct(r['refused'])} | {_pct(r['flagged'])} | "
                f"{'—' if median is None else f'{median:.1f}'} | {reason} |"
            )
        lines.append("")
    for key, title in (
        ("pooled", "Real records of new subjects (pooled 5-fold, subject-wise)"),
        ("site", "The second site (leave-one-site-out: trained on the other hospital)"),
    ):
        r = res.get(key)
        if not r:
            continue
        lines += [
            f"### {title}",
            "",
            f"Wrongly refused overall: **{_pct(r['refused_share'])}** (target ≤ 5 %). "
            f"Temperatures fitted per fold: {', '.join(f'{t:.2f}' for t in r['temperatures'])}. "
            f"{r['seconds']} s.",
            "",
            "| site | records | refused by QC | refused by OOD (alien) | refused | OOD caution "
            "(unusual) | OOD score 5 / 50 / 95 % | ECE before → after |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for site, e in r["per_site"].items():
            q = r["ood_score_quantiles"].get(site, [np.nan] * 3)
            cal = r["calibration"].get(site) or (
                r["calibration"].get("all") if len(r["per_site"]) == 1 else None
            )
            ece = f"{cal['ece_before']:.3f} → {cal['ece_after']:.3f}" if cal else "—"
            lines.append(
                f"| {site} | {e['records']} | {e['qc']} | {e['ood_alien']} | "
                f"{e['refused']} ({_pct(e['refused_share'])}) | {e['ood_unusual']} | "
                f"{q[0]:.1f} / {q[1]:.1f} / {q[2]:.1f} | {ece} |"
            )
        if "all" in r["calibration"]:
            a = r["calibration"]["all"]
            lines.append(
                f"| all | {a['n_records']} | | | | | | {a['ece_before']:.3f} → "
                f"{a['ece_after']:.3f} |"
            )
        acc = r.get("accuracy_by_verdict", {})
        if acc:
            parts = [
                f"{v} {a['accuracy']:.2f} ({a['n']} records)"
                for v, a in acc.items()
                if a["accuracy"] is not None
            ]
            lines += [
                "",
                "Record accuracy of the model by out-of-distribution verdict: "
                + "; ".join(parts)
                + ".",
            ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-kind", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--panel-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    cohort = _cohort()
    res: dict[str, Any] = {"machine": machine_line("scikit-learn", "scipy")}
    if OUT.exists():  # keep the parts not re-run
        res = {**json.loads(OUT.read_text()), **res}
    res["panel"] = panel(cohort, args.per_kind, args.seed)
    print(json.dumps(json_ready(res["panel"]["by_kind"]), indent=1))
    if not args.panel_only:
        res["pooled"] = real_records(cohort, {"cv": "pooled", "k": 5})
        print("pooled refused", res["pooled"]["refused_share"])
        res["site"] = real_records(cohort, {"cv": "site"})
        print("site refused", res["site"]["refused_share"])
    atomic_write(OUT, json.dumps(json_ready(res), indent=2, allow_nan=False))
    flags = " --panel-only" if args.panel_only else ""
    command = f"python benchmarks/safety.py --per-kind {args.per_kind} --seed {args.seed}" + flags
    write_section("safety-figures", render(json_ready(res), command), path=DOC, header=HEADER)


if __name__ == "__main__":
    main()
