"""Robustness of the best model (cnn1d, default preprocessing) to acquisition variability on N2001.

Run from the project root (needs the real data, see README)::

    python benchmarks/robustness_n2001.py            # grouped 3-fold CV by subject, ~15-25 min
    python benchmarks/robustness_n2001.py --folds 6 --epochs 30

Subject-wise CV: each fold trains ``Pipeline(model="cnn1d")`` once on the original training
subjects. The held-out subjects' *raw records* are then perturbed the way another site would
deliver them (another sampling rate, mains hum, a gain error, other hardware filters) and fed
through the fitted pipeline's own QC + preprocessing (``Pipeline.predict``). One trained model
per fold judges every condition, so the drop against "original" is the cost of the perturbation
alone. Metrics (record and subject level, mean aggregation) come from
:func:`emgdx.evaluation.evaluate_predictions` with its subject-bootstrap CIs; the drop gets a
paired subject-bootstrap CI (the same subjects drawn for both conditions).

Writes ``docs/robustness.md`` (table above the marker; the discussion below it is kept) and
``docs/results/robustness.json``. One torch thread (set ``--threads`` to change).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / torch load their thread pools

import argparse
import dataclasses
import json
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
from scipy import signal as sps

from _common import DOCS, machine_line, n2001_folder, write_section
from emgdx.config import json_ready
from emgdx.errors import SamplingRateError
from emgdx.evaluation import classification_metrics, evaluate_predictions, grouped_kfold, loso
from emgdx.evaluation.aggregate import aggregate, score_columns
from emgdx.io import read_cohort
from emgdx.pipeline import Pipeline, ReducedBandWarning
from emgdx.recording import Cohort, Recording
from emgdx.tasks import class_names, encode_labels
from emgdx.training import TrainConfig

OUT_MD = DOCS / "robustness.md"
OUT_JSON = DOCS / "results" / "robustness.json"
OUT_JSON_LOSO = DOCS / "results" / "robustness_loso.json"
KEEP_MARKER = "<!-- hand-written below: kept when the table is regenerated -->"

Perturb = Callable[[Recording, np.random.Generator], Recording]


# ---- perturbations of one raw record --------------------------------------------------------


def resample_to(fs_new: float) -> Perturb:
    """Resample with scipy's polyphase FIR (anti-aliased, as a system sampling at ``fs_new``)."""

    def f(rec: Recording, rng: np.random.Generator) -> Recording:
        ratio = Fraction(fs_new).limit_denominator(1000) / Fraction(rec.fs_hz).limit_denominator(
            1000
        )
        x = sps.resample_poly(rec.signal.astype(np.float64), ratio.numerator, ratio.denominator)
        out = rec.with_signal(x.astype(np.float32), fs_hz=float(fs_new))
        return out

    return f


def line_noise(freq_hz: float, amp_uv: float) -> Perturb:
    """Mains hum: fundamental of peak amplitude ``amp_uv`` + 2nd (A/10) and 3rd (A/3) harmonics,
    random phases. Odd harmonics dominate real hum (rectifier loads)."""

    def f(rec: Recording, rng: np.random.Generator) -> Recording:
        t = np.arange(rec.n_samples) / rec.fs_hz
        hum = np.zeros(rec.n_samples)
        for k, rel in ((1, 1.0), (2, 0.1), (3, 1 / 3)):
            hum += rel * amp_uv * np.sin(2 * np.pi * k * freq_hz * t + rng.uniform(0, 2 * np.pi))
        return rec.with_signal((rec.signal + hum).astype(np.float32))

    return f


def scale(gain: float) -> Perturb:
    """Gain calibration error: the µV values, and the ADC range in µV, off by ``gain``."""

    def f(rec: Recording, rng: np.random.Generator) -> Recording:
        out = rec.with_signal((rec.signal * gain).astype(np.float32))
        rng_uv = rec.meta.get("digital_range_uv")
        if rng_uv is not None:
            out.meta["digital_range_uv"] = [float(v) * gain for v in rng_uv]
        return out

    return f


def hardware_filter(kind: str, cutoff_hz: float, order: int = 2) -> Perturb:
    """A causal (analogue-like, not zero-phase) Butterworth filter in the acquisition chain."""

    def f(rec: Recording, rng: np.random.Generator) -> Recording:
        sos = sps.butter(order, cutoff_hz, kind, fs=rec.fs_hz, output="sos")
        return rec.with_signal(sps.sosfilt(sos, rec.signal.astype(np.float64)).astype(np.float32))

    return f


def identity(rec: Recording, rng: np.random.Generator) -> Recording:
    return rec


@dataclass(frozen=True)
class Condition:
    name: str
    group: str
    perturb: Perturb
    notch_off: bool = False  # predict with the pipeline's notch disabled (ablation)


CONDITIONS: tuple[Condition, ...] = (
    Condition("original (23.4 kHz)", "original", identity),
    Condition("resampled to 48 kHz", "sampling rate", resample_to(48000.0)),
    Condition("resampled to 10 kHz", "sampling rate", resample_to(10000.0)),
    Condition("resampled to 8 kHz", "sampling rate", resample_to(8000.0)),
    Condition("resampled to 4 kHz", "sampling rate", resample_to(4000.0)),
    Condition("resampled to 3 kHz", "sampling rate", resample_to(3000.0)),
    Condition("resampled to 2 kHz", "sampling rate", resample_to(2000.0)),
    Condition("50 Hz hum, 20 µV", "line noise", line_noise(50.0, 20.0)),
    Condition("50 Hz hum, 100 µV", "line noise", line_noise(50.0, 100.0)),
    Condition("50 Hz hum, 500 µV", "line noise", line_noise(50.0, 500.0)),
    Condition("60 Hz hum, 20 µV", "line noise", line_noise(60.0, 20.0)),
    Condition("60 Hz hum, 100 µV", "line noise", line_noise(60.0, 100.0)),
    Condition("50 Hz hum, 100 µV, notch off", "line noise", line_noise(50.0, 100.0), True),
    Condition("gain x0.5", "amplitude", scale(0.5)),
    Condition("gain x0.8", "amplitude", scale(0.8)),
    Condition("gain x1.25", "amplitude", scale(1.25)),
    Condition("gain x2", "amplitude", scale(2.0)),
    Condition("high-pass 100 Hz (2nd order)", "filters", hardware_filter("highpass", 100.0)),
    Condition("high-pass 500 Hz (2nd order)", "filters", hardware_filter("highpass", 500.0)),
    Condition("low-pass 2 kHz (2nd order)", "filters", hardware_filter("lowpass", 2000.0)),
    Condition("low-pass 1 kHz (2nd order)", "filters", hardware_filter("lowpass", 1000.0)),
)


# ---- one fold --------------------------------------------------------------------------------


def predict_condition(
    pipe: Pipeline, records: list[Recording], cond: Condition, seed: int
) -> dict[str, Any]:
    """Window probabilities of the perturbed records and what the rate check / QC said."""
    from emgdx.quality import assess

    rng = np.random.default_rng(seed)
    perturbed = [cond.perturb(r, rng) for r in records]
    original_pre = pipe.preprocess
    if cond.notch_off:
        pipe.preprocess = dataclasses.replace(original_pre, notch=None)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ReducedBandWarning)
            try:
                windows = pipe.prepare(Cohort.from_recordings(perturbed))
            except SamplingRateError as exc:
                return {"refused": str(exc), "n_records": len(records)}
    finally:
        pipe.preprocess = original_pre
    probs = pipe.predict_windows(windows)
    reports = [assess(r) for r in perturbed]
    return {
        "windows": windows,
        "probs": probs,
        "n_records": len(records),
        "n_records_windowed": int(windows.index["record_id"].nunique()) if len(windows) else 0,
        "reduced_band_warnings": sum(issubclass(w.category, ReducedBandWarning) for w in caught),
        "mains_detected": sum(q.line_freq_hz is not None for q in reports),
        "line_noise_flagged": sum("line_noise" in q.flags for q in reports),
    }


# ---- metrics ---------------------------------------------------------------------------------


def record_table(probs: np.ndarray, index: pd.DataFrame, task: str, level: str) -> pd.DataFrame:
    return aggregate(probs, index, level=level, method="mean", task=task)


def paired_drop_ci(
    base: pd.DataFrame,
    other: pd.DataFrame,
    names: tuple[str, ...],
    *,
    n_boot: int,
    seed: int,
) -> dict[str, list[float]]:
    """Subject-bootstrap CI of ``metric(other) - metric(base)``, same subjects in both."""
    cols = score_columns(names)

    def arrays(t: pd.DataFrame) -> tuple[np.ndarray, ...]:
        return (
            t["y_true"].to_numpy(np.int64),
            t[cols].to_numpy(np.float64),
            t["y_pred"].to_numpy(np.int64),
            t["subject_id"].astype(str).to_numpy(),
        )

    yb, sb, pb, gb = arrays(base)
    yo, so, po, go = arrays(other)
    subjects = np.unique(gb)
    rows_b = {s: np.flatnonzero(gb == s) for s in subjects}
    rows_o = {s: np.flatnonzero(go == s) for s in subjects}
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {"balanced_accuracy": [], "roc_auc": []}
    for _ in range(n_boot):
        pick = subjects[rng.integers(0, subjects.size, subjects.size)]
        ib = np.concatenate([rows_b[s] for s in pick])
        io = np.concatenate([rows_o[s] for s in pick])
        if io.size == 0:
            continue
        mb = classification_metrics(yb[ib], sb[ib], names, y_pred=pb[ib])
        mo = classification_metrics(yo[io], so[io], names, y_pred=po[io])
        for key in out:
            d = float(mo[key]) - float(mb[key])
            if np.isfinite(d):
                out[key].append(d)
    return {
        k: [float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))] if len(v) else [np.nan] * 2
        for k, v in out.items()
    }


# ---- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=3, help="grouped k-fold by subject")
    parser.add_argument("--loso", action="store_true", help="leave-one-subject-out instead")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="run only conditions whose name contains these")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    folder = n2001_folder()
    task = "3class"
    names = class_names(task)
    conditions = [c for c in CONDITIONS if not args.only or any(s in c.name for s in args.only)]
    command = " ".join(
        ["python benchmarks/robustness_n2001.py", *(shlex.quote(a) for a in sys.argv[1:])]
    )
    t_start = time.perf_counter()
    cohort = read_cohort(folder)
    train_cfg = TrainConfig(seed=args.seed, epochs=args.epochs, patience=args.patience)

    def make() -> Pipeline:
        return Pipeline(model="cnn1d", task=task, train=train_cfg)

    windows = make().prepare(cohort)
    y, keep = encode_labels(windows.index["label"].to_list(), task)
    windows = windows.select(keep)
    groups = windows.index["subject_id"].astype(str).to_numpy()
    splits = loso(groups) if args.loso else grouped_kfold(groups, y[keep], args.folds, args.seed)
    cv_name = "loso" if args.loso else f"grouped {args.folds}-fold"
    print(f"prepared {len(windows)} windows, {len(splits)} folds ({cv_name})", flush=True)

    per_cond: dict[str, dict[str, Any]] = {
        c.name: {
            "probs": [],
            "index": [],
            "refused": 0,
            "reduced": 0,
            "mains": 0,
            "n_records": 0,
            "n_windowed": 0,
            "flagged": 0,
        }
        for c in conditions
    }
    folds: list[dict[str, Any]] = []
    for i, (tr, te) in enumerate(splits):
        t0 = time.perf_counter()
        pipe = make().fit(windows.select(tr))
        fit_s = time.perf_counter() - t0
        test_subjects = sorted(set(groups[te].tolist()))
        records = [r for r in cohort.recordings if r.subject_id in test_subjects]
        for j, cond in enumerate(conditions):
            seed = 1000 * args.seed + 100 * i + j
            res = predict_condition(pipe, records, cond, seed)
            acc = per_cond[cond.name]
            acc["n_records"] += res["n_records"]
            if "refused" in res:
                acc["refused"] += res["n_records"]
                acc["refusal"] = res["refused"]
                continue
            acc["probs"].append(res["probs"])
            acc["index"].append(res["windows"].index.assign(fold=i))
            acc["reduced"] += res["reduced_band_warnings"]
            acc["n_windowed"] += res["n_records_windowed"]
            acc["flagged"] += res["line_noise_flagged"]
            acc["mains"] += res["mains_detected"]
        folds.append(
            {
                "fold": i,
                "test_subjects": test_subjects,
                "n_test_records": len(records),
                "fit_s": round(fit_s, 1),
                "conditions_s": round(time.perf_counter() - t0 - fit_s, 1),
                "best_epoch": getattr(pipe.train_result_, "best_epoch", None),
            }
        )
        print(f"fold {i + 1}/{len(splits)}: {folds[-1]}", flush=True)

    rows: list[dict[str, Any]] = []
    base_tables: dict[str, pd.DataFrame] = {}
    for cond in conditions:
        acc = per_cond[cond.name]
        row: dict[str, Any] = {
            "condition": cond.name,
            "group": cond.group,
            "n_records": acc["n_records"],
            "n_records_judged": acc["n_windowed"],
            "refused_records": acc["refused"],
            "reduced_band_warnings": acc["reduced"],
            "line_noise_flagged": acc["flagged"],
        }
        row["mains_detected"] = acc["mains"]
        if not acc["probs"]:
            row["refusal"] = acc.get("refusal")
            rows.append(row)
            continue
        probs = np.concatenate(acc["probs"])
        index = pd.concat(acc["index"], ignore_index=True)
        _, ev = evaluate_predictions(
            probs, index, task=task, methods=("mean",), n_boot=args.n_boot, seed=args.seed
        )
        for level in ("window", "record", "subject"):
            e = ev["all"]["mean"][level]
            row[f"{level}_ba"] = float(e["metrics"]["balanced_accuracy"])
            row[f"{level}_auc"] = float(e["metrics"]["roc_auc"])
            row[f"{level}_ba_ci"] = e["ci"].get("balanced_accuracy")
            row[f"{level}_auc_ci"] = e["ci"].get("roc_auc")
        rec = record_table(probs, index, task, "record")
        subj = record_table(probs, index, task, "subject")
        row["subjects_correct"] = int((subj["y_pred"] == subj["y_true"]).sum())
        row["subjects_total"] = len(subj)
        if cond.group == "original":
            base_tables = {"record": rec}
        else:
            base = rows[0]
            row["record_ba_drop"] = row["record_ba"] - base["record_ba"]
            row["record_auc_drop"] = row["record_auc"] - base["record_auc"]
            row["subject_ba_drop"] = row["subject_ba"] - base["subject_ba"]
            ci = paired_drop_ci(
                base_tables["record"], rec, names, n_boot=args.n_boot, seed=args.seed
            )
            row["record_ba_drop_ci"] = ci["balanced_accuracy"]
            row["record_auc_drop_ci"] = ci["roc_auc"]
            cols = [*score_columns(names), "y_pred"]
            both = rec[["record_id", *cols]].merge(
                base_tables["record"][["record_id", *cols]],
                on="record_id",
                suffixes=("", "_base"),
            )
            diff = np.abs(
                both[score_columns(names)].to_numpy()
                - both[[f"{c}_base" for c in score_columns(names)]].to_numpy()
            ).max(axis=1)
            row["median_abs_prob_change"] = float(np.median(diff))
            row["p90_abs_prob_change"] = float(np.quantile(diff, 0.9))
            row["record_decisions_changed"] = int((both["y_pred"] != both["y_pred_base"]).sum())
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.endswith("_ci")}), flush=True)

    total_s = time.perf_counter() - t_start
    machine = machine_line("torch", "scikit-learn", "scipy")
    doc = {
        "command": command,
        "machine": machine,
        "torch_threads": torch.get_num_threads(),
        "cv": cv_name,
        "seed": args.seed,
        "train": train_cfg.to_dict(),
        "preprocess": make().preprocess.to_dict(),
        "total_s": round(total_s, 1),
        "folds": folds,
        "conditions": rows,
    }
    out_json = OUT_JSON_LOSO if args.loso else OUT_JSON
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(json_ready(doc), indent=1) + "\n")
    if args.loso:
        write_loso_section(doc)  # beside the main (3-fold) table, which stays
    else:
        write_markdown(doc)
    print(f"done in {total_s:.0f} s: {OUT_MD}, {out_json}", flush=True)
    return 0


def _f(v: Any, digits: int = 2, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _ci(v: Any, signed: bool = False) -> str:
    if not v or v[0] is None or not np.isfinite(v[0]):
        return ""
    return f" [{_f(v[0], signed=signed)}, {_f(v[1], signed=signed)}]"


def write_markdown(doc: dict[str, Any]) -> None:
    lines = [
        "# Robustness to acquisition variability",
        "",
        'How much the best model (`cnn1d`, default `Pipeline(model="cnn1d")` preprocessing: '
        "QC, resampling to 6 kHz, 20-2500 Hz band-pass, auto mains notch, 1 s windows, per-window "
        "z-score with log-RMS side input) loses when the held-out subjects' raw records arrive "
        "as another site would deliver them. Generated by `benchmarks/robustness_n2001.py` "
        f"({doc['cv']} subject-wise CV, seed {doc['seed']}; each fold's model is trained once "
        "on the original training subjects and judges every condition). BA = balanced "
        "accuracy, AUC = macro one-vs-rest ROC-AUC, mean aggregation; [95 % subject-bootstrap "
        "CI]; drop = condition − original, with a paired subject-bootstrap CI. *Δp*: median "
        "(90th percentile) over records of the largest change of a class probability against "
        "the original; *changed*: records whose predicted class changed.",
        "",
        *table_lines(doc),
    ]
    kept = ""
    if OUT_MD.exists() and KEEP_MARKER in (text := OUT_MD.read_text()):
        kept = text[text.index(KEEP_MARKER) :]
    OUT_MD.write_text("\n".join(lines) + "\n" + ("\n" + kept if kept else f"\n{KEEP_MARKER}\n"))


def write_loso_section(doc: dict[str, Any]) -> None:
    """The LOSO table as its own section at the end of docs/robustness.md (kept part)."""
    body = "\n".join(
        [
            "## The same under leave-one-subject-out",
            "",
            "Every fold's model is trained on 17 subjects and judges the 18th under every "
            "condition (generated; see *What the figures say* for how to read it).",
            "",
            *table_lines(doc),
        ]
    )
    write_section("robustness_loso", body, OUT_MD, header=f"{KEEP_MARKER}\n")


def table_lines(doc: dict[str, Any]) -> list[str]:
    lines = [
        f"- Command: `{doc['command']}`",
        f"- Machine: {doc['machine']}; torch threads {doc['torch_threads']}; "
        f"total {doc['total_s'] / 60:.1f} min",
        "",
        "| condition | records judged | record BA | drop | record AUC | drop | subject BA "
        "(right) | Δp median (p90) | changed | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["conditions"]:
        notes = []
        if r.get("refused_records"):
            notes.append(f"{r['refused_records']} refused (rate too low)")
        if r.get("reduced_band_warnings"):
            notes.append(f"ReducedBandWarning on {r['reduced_band_warnings']}")
        if r.get("mains_detected"):
            notes.append(f"QC found mains in {r['mains_detected']}/{r['n_records']}")
        if r.get("line_noise_flagged"):
            notes.append(f"`line_noise` flag on {r['line_noise_flagged']}")
        if "record_ba" not in r:
            lines.append(
                f"| {r['condition']} | 0/{r['n_records']} | – | – | – | – | – | – | – | "
                f"{'; '.join(notes)} |"
            )
            continue
        if r["group"] == "original":
            drops = ["", "", "", ""]
        else:
            drops = [
                _f(r["record_ba_drop"], signed=True) + _ci(r["record_ba_drop_ci"], True),
                _f(r["record_auc_drop"], signed=True) + _ci(r["record_auc_drop_ci"], True),
                f"{_f(r['median_abs_prob_change'], 3)} ({_f(r['p90_abs_prob_change'])})",
                str(r["record_decisions_changed"]),
            ]
        lines.append(
            f"| {r['condition']} | {r['n_records_judged']}/{r['n_records']} | "
            f"{_f(r['record_ba'])}{_ci(r['record_ba_ci'])} | {drops[0]} | "
            f"{_f(r['record_auc'])}{_ci(r['record_auc_ci'])} | {drops[1]} | "
            f"{_f(r['subject_ba'])} ({r['subjects_correct']}/{r['subjects_total']}) | "
            f"{drops[2]} | {drops[3]} | {'; '.join(notes)} |"
        )
    lines += [
        "",
        "Folds: "
        + "; ".join(
            f"{f['fold']}: {', '.join(f['test_subjects'])} (fit {f['fit_s']:.0f} s)"
            for f in doc["folds"]
        )
        + ".",
    ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
