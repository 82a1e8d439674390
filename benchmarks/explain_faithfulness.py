"""How faithful are the explanations? Deletion/insertion on N2001, signature share on simulation.

Run from the project root (needs the real data, see README):

    python benchmarks/explain_faithfulness.py

Real data: a 1-D CNN and a 2-D CNN on the STFT are trained on 15 N2001 subjects; one subject
per class is held out (the alphabetically first: N2001A01, N2001C01, N2001M02, fixed before
looking at any explanation). On 20 evenly spaced windows of each held-out subject, every
attribution method ranks the input elements; deletion removes the most attributed first,
insertion restores them first, against 3 random orders (:func:`emgdx.explain.deletion_insertion`).

Simulation: a 1-D CNN trained on a simulated cohort (default preprocessing) explains held-out
simulated subjects, whose ground truth marks the samples that carry the disease signature
(reinnervated or myopathic motor units, spontaneous activity); the share of positive evidence on
those samples is compared with their share of the window (:func:`emgdx.explain.signature_share`).

Writes the generated part of docs/explainability.md (between markers) and figures into
docs/figures/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _common import DOCS, machine_line, n2001_folder, write_section
from emgdx import explain
from emgdx.explain import figures
from emgdx.io import read_cohort
from emgdx.pipeline import Pipeline
from emgdx.recording import Windows
from emgdx.simulate import simulate_cohort
from emgdx.training import TrainConfig

DOC = DOCS / "explainability.md"
FIGURES = DOCS / "figures"
HELD_OUT = ("N2001A01", "N2001C01", "N2001M02")
SIM_HELD_OUT = ("SIM-H04", "SIM-N04", "SIM-M04")
METHODS = tuple(explain.METHODS)


def _evenly(windows: Windows, per_subject: int) -> Windows:
    keep: list[int] = []
    for _, rows in windows.index.reset_index(drop=True).groupby("subject_id").indices.items():
        rows = np.asarray(rows)
        pick = np.linspace(0, rows.size - 1, min(per_subject, rows.size)).round().astype(int)
        keep += rows[pick].tolist()
    return windows.select(np.sort(np.asarray(keep)))


def _save(fig: Any, name: str) -> str:
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / name, dpi=110, bbox_inches="tight")
    return f"figures/{name}"


def _faithfulness(
    pipe: Pipeline, windows: Windows, steps: int, n_random: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows, curves = [], {}
    for method in METHODS:
        t0 = time.perf_counter()
        attr = explain.attribute_windows(pipe, windows, method)  # type: ignore[arg-type]
        seconds = time.perf_counter() - t0
        result = explain.deletion_insertion(pipe, windows, attr, steps=steps, n_random=n_random)
        curves[method] = result
        auc = result["auc"]
        rows.append(
            {
                "model": pipe.model_name,
                "method": method,
                "deletion": auc["deletion_attribution"],
                "deletion (random)": auc["deletion_random"],
                "insertion": auc["insertion_attribution"],
                "insertion (random)": auc["insertion_random"],
                "ms / window": 1e3 * seconds / len(windows),
            }
        )
        print(rows[-1], flush=True)
    return rows, curves


def _markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, sep, *body])


def example_report(pipe: Pipeline, cohort: Any) -> list[str]:
    """A visit report for 3 records of a held-out subject: PDF in out/, pages as PNG in docs."""
    import pypdfium2 as pdfium

    from emgdx.report import build_report, write_report

    subject = HELD_OUT[0]
    records = [r for r in cohort.recordings if r.subject_id == subject][:3]
    report = build_report(
        pipe, records, patient={"id": subject}, visit={"date": "2001 (EMGLAB N2001)"}
    )
    out = DOCS.parent / "out" / "report_example.pdf"
    write_report(report, out)
    write_report(report, out.with_suffix(".html"))
    pdf = pdfium.PdfDocument(str(out))
    names = []
    try:
        FIGURES.mkdir(parents=True, exist_ok=True)
        for i in range(min(2, len(pdf))):
            name = f"report_example_page{i + 1}.png"
            pdf[i].render(scale=1.2).to_pil().save(FIGURES / name)
            names.append(f"figures/{name}")
    finally:
        pdf.close()
    print(f"example report: {out} ({report.summary_line})", flush=True)
    return names


def real_data(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    folder = n2001_folder()
    cohort = read_cohort(folder)
    windows = Pipeline(model="cnn1d", n_jobs=2).prepare(cohort)
    test_mask = windows.index["subject_id"].isin(HELD_OUT).to_numpy()
    train, test = windows.select(~test_mask), windows.select(test_mask)
    probe = _evenly(test, args.per_subject)
    lines, figs = [], []
    all_rows: list[dict[str, Any]] = []
    for model in ("cnn1d", "cnn2d_stft"):
        t0 = time.perf_counter()
        pipe = Pipeline(model=model, train=TrainConfig(seed=0)).fit(train)
        print(f"{model}: trained in {time.perf_counter() - t0:.0f} s", flush=True)
        if model == "cnn1d":
            figs += example_report(pipe, cohort)
        rows, curves = _faithfulness(pipe, probe, args.steps, args.n_random)
        all_rows += rows
        figs.append(_save(figures.figure_deletion_insertion(curves), f"faithfulness_{model}.png"))
        record = probe.index["record_id"].iloc[0]
        rec_windows = test.select(test.index["record_id"].eq(record).to_numpy())
        expl = explain.attribute_record(pipe, rec_windows, "integrated_gradients")
        figs.append(_save(figures.figure_record_evidence(expl), f"evidence_{model}_{record}.png"))
        if model == "cnn2d_stft":
            cam = explain.attribute_windows(pipe, rec_windows, "gradcam", target=expl.target)
            best = int(np.argmax(expl.windows.evidence().sum(axis=1)))
            figs.append(
                _save(
                    figures.figure_image_evidence(expl.windows, best, heat=cam),
                    f"gradcam_{model}_{record}.png",
                )
            )
    frame = pd.DataFrame(all_rows)
    lines += [
        "### Deletion and insertion on real N2001 windows",
        "",
        f"Held-out subjects {', '.join(HELD_OUT)}; {len(probe)} windows ({args.per_subject} per "
        f"subject), explained class = predicted class, {args.steps} steps, {args.n_random} "
        "random orders. Areas under the target-probability curves: deletion lower than random "
        "and insertion higher than random mean the attribution found what the model uses.",
        "",
        _markdown_table(frame),
        "",
    ]
    return lines, figs


def simulated(args: argparse.Namespace) -> list[str]:
    sim = simulate_cohort(4, 3, fs_hz=10_000.0, duration_s=6.0, seed=args.seed)
    pipe = Pipeline(model="cnn1d", train=TrainConfig(seed=0))
    windows = pipe.prepare(sim.cohort)
    test_mask = windows.index["subject_id"].isin(SIM_HELD_OUT).to_numpy()
    pipe.fit(windows.select(~test_mask))
    test = windows.select(test_mask)
    masks = {rid: (truth.signature_mask(), truth.fs_hz) for rid, truth in sim.truth.items()}
    rows = []
    for label in ("neurogenic", "myopathy"):
        sub = test.select(test.index["label"].eq(label).to_numpy())
        wm = explain.window_masks(sub, masks)
        for method in METHODS:
            attr = explain.attribute_windows(pipe, sub, method, target=label)  # type: ignore[arg-type]
            share = explain.signature_share(attr, wm)
            rows.append(
                {
                    "class": label,
                    "method": method,
                    "windows": len(share),
                    "evidence on signature": float(share["share"].mean()),
                    "chance (signature share of samples)": float(share["chance"].mean()),
                    "ratio (median over windows)": float(share["ratio"].median()),
                    "windows above chance": float((share["ratio"] > 1).mean()),
                }
            )
            print(rows[-1], flush=True)
    probs = pipe.predict_windows(test)
    y = test.index["label"].map({n: i for i, n in enumerate(pipe.class_names)}).to_numpy()
    acc = float((probs.argmax(axis=1) == y).mean())
    return [
        "### Evidence on the simulated disease signature",
        "",
        f"Simulated cohort: 4 subjects per class, 3 records of 6 s at 10 kHz (seed {args.seed}), "
        "default preprocessing; 1-D CNN trained on subjects 01–03 of each class, explaining "
        f"{', '.join(SIM_HELD_OUT)} (held-out window accuracy {acc:.2f}). Explained class = the "
        "true class.",
        "",
        _markdown_table(pd.DataFrame(rows)),
        "",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-subject", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--n-random", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--report-only", action="store_true", help="only the example report (docs/figures)"
    )
    args = parser.parse_args()
    if args.report_only:
        folder = n2001_folder()
        cohort = read_cohort(folder)
        windows = Pipeline(model="cnn1d", n_jobs=2).prepare(cohort)
        train = ~windows.index["subject_id"].isin(HELD_OUT).to_numpy()
        pipe = Pipeline(model="cnn1d", train=TrainConfig(seed=0)).fit(windows.select(train))
        example_report(pipe, cohort)
        return 0
    t0 = time.perf_counter()
    real_lines, figs = real_data(args)
    sim_lines = simulated(args)
    cmd = "python benchmarks/explain_faithfulness.py " + " ".join(sys.argv[1:])
    body = [
        f"Command: `{cmd.strip()}` ({time.perf_counter() - t0:.0f} s)",
        "",
        f"Machine: {machine_line('torch', 'captum')}",
        "",
        *real_lines,
        *sim_lines,
        "### Figures",
        "",
        *(f"![{Path(f).stem}]({f})" for f in figs),
    ]
    write_section("generated", "\n".join(body), DOC, header="# Explainability\n")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
