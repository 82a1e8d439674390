"""``emgdx predict``: the diagnosis of new files with a saved pipeline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from emgdx.cli import console as ui
from emgdx.config import json_ready
from emgdx.errors import ConfigError, EmgdxError

if TYPE_CHECKING:
    from emgdx.pipeline import Pipeline

app = typer.Typer(add_completion=False)


@app.command()
def predict(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="[MODEL_DIR] FILE...: a model folder written by `emgdx train` (left out: the "
            "shipped model, see docs/model-card.md), then the record files to classify.",
            metavar="[MODEL_DIR] FILE...",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    fs_hz: ui.FsHz = None,
    backend: ui.BackendOpt = "auto",
) -> None:
    """Class probabilities with intervals, prediction, QC and notes per record of each file.

    A record that is not needle EMG one can judge (no motor-unit activity, implausible
    amplitude, ...) or unlike anything the model was trained on is reported as NOT
    INTERPRETABLE with the reasons; that is an answer, so the exit status stays 0. A file that
    cannot be read, or a record without a usable window, exits 1.
    """
    from emgdx.io import read

    model_dir, files = ui.model_and_files(paths)
    if not files:
        raise ui.fail(ConfigError("give the record files to classify (after the model folder)"))
    if model_dir is None:
        model_dir = ui.shipped_model_dir()
    pipe = ui.load_pipeline(model_dir, backend)
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    show = not as_json
    with ui.progress_bar("predicting", enabled=show) as cb:
        cb(0, len(files))
        for i, path in enumerate(files):
            try:
                recordings = read(path, fs_hz=fs_hz)
                # per file: one bad file must not stop the others
                diagnosis = pipe.predict(recordings)
            except EmgdxError as exc:
                failed.append({"path": str(path), "problem": str(exc)})
            else:
                for row in diagnosis.records.to_dict(orient="records"):
                    row = {"file": str(path), **{k: json_ready(v) for k, v in row.items()}}
                    # The file's own diagnosis field, where it has one, is not the answer: a
                    # script that read "label" next to "predicted" would score itself perfect.
                    row["label_in_file"] = row.pop("label", None)
                    rows.append(row)
                    # "Not interpretable" is an answer (with its reasons), not a failure.
                    if row.get("outcome") == "not analysed":
                        flags = row.get("qc_flags") or "none"
                        why = row.get("note") or (
                            f"has no usable window to classify (QC flags: {flags})"
                        )
                        problem = f"{path}: record {row['record_id']}: {why}"
                        failed.append({"path": str(path), "problem": problem})
            cb(i + 1, len(files))

    if as_json:
        ui.print_json(
            {
                "model": {
                    "dir": str(model_dir),
                    **pipe.identity().to_dict(),
                    "classes": list(pipe.class_names),
                },
                "records": rows,
                "failed": failed,
            }
        )
    else:
        if rows:
            _print_predictions(pipe, rows)
            _print_outcomes(rows)
        else:
            ui.err.print(Text("no readable record", "bold red"))
        if failed:
            sys.stdout.flush()
            ui.err.print(Text(f"{len(failed)} problem(s):", "bold red"))
            for f in failed:
                ui.err.print(f"  {f['problem']}")
    if failed:
        raise typer.Exit(code=1)


def _print_predictions(pipe: Pipeline, rows: list[dict[str, Any]]) -> None:
    table = Table(
        title=f"emgdx predict — {pipe.model_name} ({pipe.backend}), task {pipe.task}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    show_label = any(r.get("label_in_file") for r in rows)
    table.add_column("record", no_wrap=True)
    if show_label:
        table.add_column("label in file")
    for name in pipe.class_names:
        table.add_column(f"P({name})", justify="right")
    for col in ("predicted", "confidence", "windows", "QC", "usable", "OOD"):
        table.add_column(col, justify="left" if col in ("predicted", "QC") else "right")
    for r in rows:
        probs = [r.get(f"p_{n}") for n in pipe.class_names]
        usable = r.get("usable_fraction")
        ood = r.get("ood_score")
        predicted = r.get("predicted") or (
            "NOT INTERPRETABLE" if r.get("outcome") == "not interpretable" else "-"
        )
        table.add_row(
            str(r["record_id"]),
            *([str(r.get("label_in_file") or "-")] if show_label else []),
            *("-" if p is None else f"{p:.3f}" for p in probs),
            predicted,
            "-" if r.get("confidence") is None else f"{r['confidence']:.3f}",
            str(r["n_windows"]),
            (r.get("qc_flags") or "ok") if "qc_flags" in r else "-",
            "-" if usable is None else f"{100 * usable:.0f}%",
            "-" if ood is None else f"{ood:.1f}" + (" !" if r.get("warnings") else ""),
        )
    ui.print_table(table)


def _print_outcomes(rows: list[dict[str, Any]]) -> None:
    """The reasons of every record that is not interpretable and the cautions of the others,
    in plain words under the table."""
    for r in rows:
        if r.get("outcome") == "not interpretable":
            ui.out.print(Text(f"{r['record_id']}: not interpretable: {r['reasons']}", "yellow"))
        elif r.get("warnings"):
            ui.out.print(f"{r['record_id']}: {r['warnings']}")
