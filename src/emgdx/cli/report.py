"""``emgdx report``: the clinical report (HTML or PDF) of a record or a visit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emgdx.cli import console as ui
from emgdx.errors import ConfigError

app = typer.Typer(add_completion=False)


@app.command()
def report(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="[MODEL_DIR] FILE...: a model folder written by `emgdx train` (left out: the "
            "shipped model, see docs/model-card.md), then the recordings of one record or visit.",
            metavar="[MODEL_DIR] FILE...",
        ),
    ],
    out_file: Annotated[
        Path, typer.Option("--out", help="report.html or report.pdf (chosen by the suffix).")
    ] = Path("report.html"),
    patient: Annotated[
        str | None, typer.Option("--patient", help="Patient identifier shown on the report.")
    ] = None,
    visit: Annotated[str | None, typer.Option("--visit", help="Visit date or identifier.")] = None,
    method: ui.ExplainMethod = "integrated_gradients",
    figures: Annotated[
        int, typer.Option("--figures", min=0, max=3, help="Evidence figures per record (0-3).")
    ] = 3,
    fs_hz: ui.FsHz = None,
) -> None:
    """The clinical report (HTML or PDF) of one record or of a patient visit."""
    from emgdx.report import build_report, write_report

    if out_file.suffix.lower() not in (".html", ".htm", ".pdf"):
        raise ui.fail(ConfigError(f"{out_file}: --out must end in .html or .pdf"))
    model_dir, files = ui.model_and_files(paths)
    if not files:
        raise ui.fail(ConfigError("give the recordings to report on (after the model folder)"))
    pipe = ui.load_pipeline(model_dir if model_dir is not None else ui.shipped_model_dir())
    records, problems = ui.read_records(files, fs_hz)
    for problem in problems:
        ui.err.print(ui.labelled("skipped:", "bold red", str(problem)))
    if not records:
        # as info and predict: inputs that could not be read end with exit status 1
        ui.err.print(ui.labelled("error:", "bold red", "no readable record to report on"))
        raise typer.Exit(code=1)
    with ui.failing(), ui.progress_bars("analysing", "writing") as hooks:
        rep = build_report(
            pipe,
            records,
            patient={"id": patient} if patient else None,
            visit={"id": visit} if visit else None,
            explain_method=method,
            n_figures=figures,
            unreadable=problems,
            on_progress=hooks["analysing"],
        )
        hooks["writing"](0, 1)
        path = write_report(rep, out_file)
        hooks["writing"](1, 1)
    ui.out.print(f"{rep.summary_line}\nreport: {path}")
    if problems:
        raise typer.Exit(code=1)
