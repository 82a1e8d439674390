"""Soft-vote ensemble of finished subject-wise runs on N2001 (equal weights, no fitting).

Run from the project root after the member runs (benchmarks/evaluate_n2001.py), e.g.:

    python benchmarks/ensemble_n2001.py            # the four CNNs, seed 0, LOSO

The members' out-of-fold probabilities are averaged with equal weights. Every member was
cross-validated on the same windows (checked through the data hash) with the same
deterministic folds (checked through the test subjects of each fold), so for each held-out
subject the average uses only models that never saw it: the ensemble is itself a subject-wise
result, with nothing chosen on the test subjects. The default members were fixed before any of
the 2-D CNN or CNN-LSTM results were known (docs/results.md says so).

When every member saved its window probabilities (``oof.csv.gz``), the ensemble is evaluated
from window to subject; otherwise from the members' record tables (mean aggregation is linear,
so records and subjects come out exactly as from windows) and the window level is left out.
Writes like evaluate_n2001.py: out/results/<name>/, docs/results/<name>.json, a row in
docs/results/runs.json and the regenerated docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

import numpy as np
import pandas as pd

from emgdx.evaluation import CVResult, evaluate_predictions, package_versions
from emgdx.tasks import class_names as task_class_names
from evaluate_n2001 import FULL, RUNS, record_run, save_row

DEFAULT_MEMBERS = (
    "cnn1d-loso-3class-s0",
    "cnn2d_stft-loso-3class-s0",
    "cnn2d_cwt-loso-3class-s0",
    "cnn_lstm-loso-3class-s0",
)
KEY_WINDOW = ["record_id", "start_s"]


def _member(name: str) -> tuple[dict[str, Any], pd.DataFrame | None]:
    folder = FULL / name
    path = folder / "results.json"
    if not path.exists():
        raise SystemExit(f"{path}: missing; run benchmarks/evaluate_n2001.py for {name} first")
    results = json.loads(path.read_text())
    oof = folder / "oof.csv.gz"
    return results, (pd.read_csv(oof) if oof.exists() else None)


def _record_rows(results: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(results["tables"]["all"]["mean"]["record"])


def _combine(
    members: list[tuple[dict[str, Any], pd.DataFrame | None]], names: tuple[str, ...]
) -> tuple[np.ndarray, pd.DataFrame, str]:
    cols = [f"p_{n}" for n in names]
    if all(oof is not None for _, oof in members):
        frames = [
            oof.sort_values(KEY_WINDOW).reset_index(drop=True)
            for _, oof in members
            if oof is not None
        ]
        unit, key = "window", KEY_WINDOW
    else:
        frames = [
            _record_rows(r).sort_values("record_id").reset_index(drop=True) for r, _ in members
        ]
        unit, key = "record", ["record_id"]
    first = frames[0]
    for frame in frames[1:]:
        if len(frame) != len(first) or not frame[key].equals(first[key]):
            raise SystemExit("members were evaluated on different windows or records")
    probs = np.mean([f[cols].to_numpy(np.float64) for f in frames], axis=0)
    index = first[[c for c in ("record_id", "subject_id", "label", "level") if c in first]]
    return probs, index.reset_index(drop=True), unit


def _folds(member_results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    folds = [dict(f) for f in member_results[0]["folds"]]
    for other in member_results[1:]:
        if [f["test_subjects"] for f in other["folds"]] != [f["test_subjects"] for f in folds]:
            raise SystemExit("members used different folds")
        for mine, theirs in zip(folds, other["folds"], strict=True):
            mine["fit_s"] += theirs["fit_s"]
            mine["predict_s"] += theirs["predict_s"]
    return folds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", nargs="+", default=list(DEFAULT_MEMBERS))
    parser.add_argument("--name", default="cnn_ensemble")
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()

    members = [_member(m) for m in args.members]
    member_results = [r for r, _ in members]
    for field in ("data_hash", "cv", "task"):
        values = {r[field] for r in member_results}
        if len(values) != 1:
            raise SystemExit(f"members differ in {field}: {sorted(values)}")
    first = member_results[0]
    task, cv = first["task"], first["cv"]
    names = task_class_names(task)
    probs, index, unit = _combine(members, names)
    tables, evaluation = evaluate_predictions(probs, index, task=task, n_boot=args.n_boot)
    if unit == "record":
        # Rows are records here: the "window" level would be a mislabelled record level.
        for subset in tables:
            for method in tables[subset]:
                tables[subset][method].pop("window", None)
                evaluation[subset][method].pop("window", None)
    index = index.assign(fold=-1)
    command = "python benchmarks/ensemble_n2001.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )
    rows = {r["name"]: r for r in json.loads(RUNS.read_text())} if RUNS.exists() else {}
    seconds = sum(rows[m]["cv_seconds"] for m in args.members if m in rows)
    prep = max((rows[m]["prepare_seconds"] for m in args.members if m in rows), default=0.0)
    result = CVResult(
        task=task,
        cv=cv,
        class_names=names,
        probs=probs,
        index=index,
        folds=_folds(member_results),
        tables=tables,
        evaluation=evaluation,
        config={
            "model": args.name,
            "members": args.members,
            "combination": "equal-weight mean of out-of-fold probabilities",
            "unit": unit,
            "command": command.strip(),
        },
        data_hash=first["data_hash"],
        versions=package_versions(),
    )
    seeds = {r["config"].get("seed") for r in member_results}
    name = f"{args.name}-{cv}-{task}-s{seeds.pop() if len(seeds) == 1 else 'mix'}"
    row = record_run(
        result,
        name=name,
        model=args.name,
        seed=int(first["config"].get("seed", 0)),
        epochs=None,
        command=command.strip(),
        seconds=seconds,
        prep_s=prep,
    )
    row["members"] = args.members
    save_row(row)
    print(json.dumps({k: v for k, v in row.items() if "/" not in k or "record" in k}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
