"""``emgdx demo``: the main job on the embedded default (simulated) cohort."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from emgdx.cli import console as ui
from emgdx.config import json_ready

app = typer.Typer(add_completion=False)


@app.command()
def demo(
    seed: int = 0,
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out", help="Folder for the report (report.html, results.json) and the records."
        ),
    ] = Path("emgdx-demo"),
    model: ui.ModelName = "",
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", min=1, help="Maximum training epochs per fold (default 20)."),
    ] = None,
    cv: Annotated[
        str, typer.Option("--cv", help="loso or kfold (subject-wise; the demo is never leaky).")
    ] = "",
    evaluate: Annotated[
        bool, typer.Option("--evaluate/--no-evaluate", help="Train and evaluate a model.")
    ] = True,
    as_json: ui.AsJson = False,
) -> None:
    """Simulate a cohort (no download), run QC, train and evaluate a model, write the report."""
    from emgdx.demo import DEMO_CV, DEMO_EPOCHS, DEMO_MODEL, run_demo

    show = not as_json
    steps = ("simulate", "prepare", "folds", "epochs")
    with ui.progress_bars(*steps, enabled=show) as hooks, ui.failing():
        result = run_demo(
            seed=seed,
            out_dir=out_dir / "records",
            report_dir=out_dir,
            evaluate=evaluate,
            model=model or DEMO_MODEL,
            epochs=epochs or DEMO_EPOCHS,
            cv=cv or DEMO_CV,
            on_progress=hooks,
        )

    summary = result.to_dict()
    if as_json:
        ui.print_json(summary)
        return
    table = Table(title="emgdx demo — simulated cohort")
    columns = ("label", "subjects", "records", "duration_s", "qc_flagged", "windows")
    for col in columns:
        table.add_column(col, justify="left" if col == "label" else "right")
    for row in summary["classes"]:
        table.add_row(*(str(row[c]) for c in columns))
    ui.out.print(table)
    flags = ", ".join(f"{k}: {v}" for k, v in summary["qc_flag_counts"].items() if v) or "none"
    ui.out.print(f"QC flags: {flags}")
    score = summary["qc_score"]
    if score["faults_injected"]:
        ui.out.print(
            f"QC caught {score['faults_caught']} of {score['faults_injected']} injected faults "
            f"({', '.join(sorted(set(summary['injected_faults'].values())))}); "
            f"flagged {len(score['clean_flagged'])} of {score['clean_records']} clean records"
        )
    ui.out.print(
        f"windows: {summary['n_windows']} x {summary['window_samples']} samples "
        f"at {summary['window_fs_hz']:g} Hz"
    )
    ui.out.print("preprocessing: " + json.dumps(json_ready(summary["preprocess"])))
    if result.evaluation is not None:
        ev = summary["evaluation"]
        ui.print_table(
            ui.evaluation_table(
                result.evaluation,
                f"{ev['model']} ({ev['epochs']} epochs), {ev['cv']} cross-validation: "
                f"{ev['n_folds']} folds, {ev['n_windows']} windows",
            )
        )
        ui.out.print(f"subjects right: {ev['subjects_correct']} of {ev['subjects_total']}")
    timing = ", ".join(f"{k} {v:.2f} s" for k, v in summary["seconds"].items())
    ui.out.print(f"time: {timing}")
    ui.out.print(f"records written to {out_dir / 'records'}")
    if result.report is not None:
        ui.out.print(
            f"report: {result.report['html']}  (results: {result.report['json']})",
            soft_wrap=True,
        )
