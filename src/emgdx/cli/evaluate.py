"""``emgdx evaluate``: subject-wise cross-validation, with a JSON + HTML report."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from emgdx.cli import console as ui
from emgdx.errors import ConfigError

if TYPE_CHECKING:
    from emgdx.pipeline import Pipeline

app = typer.Typer(add_completion=False)


@app.command()
def evaluate(
    data: ui.DataFolders,
    model: ui.ModelName = "cnn1d",
    cv: Annotated[
        str,
        typer.Option(
            "--cv",
            help="loso (leave one subject out), kfold (subject-wise) or leaky (window-wise: "
            "a demonstration of the leak, never a result).",
        ),
    ] = "loso",
    k: Annotated[int, typer.Option("--k", min=2, help="Folds for kfold / leaky.")] = 5,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for results.json and report.html.")
    ] = Path("emgdx-report"),
    task: ui.Task = "3class",
    epochs: ui.Epochs = None,
    seed: ui.Seed = 0,
    representation: ui.Representation = None,
    n_boot: Annotated[
        int, typer.Option("--n-boot", min=0, help="Subject-bootstrap replicates for the CIs.")
    ] = 1000,
    threads: ui.Threads = None,
    fs_hz: ui.FsHz = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
) -> None:
    """Cross-validate a model subject-wise and write results.json + report.html."""
    from emgdx.evaluation import CV_SCHEMES, LeakyEvaluationWarning, cross_validate, write_report

    if cv not in CV_SCHEMES:
        raise ui.fail(ConfigError(f"--cv must be one of {', '.join(CV_SCHEMES)}, got {cv!r}"))
    show = not as_json
    ui.set_threads(threads)
    leaky = cv == "leaky"
    if leaky:
        ui.err.print(Text(ui.LEAKY_WARNING, "bold red"))
    with ui.failing():
        # Built once up front so a bad --model / --task fails before any reading.
        probe = ui.make_pipeline(model, task, epochs, seed, representation)
        with ui.progress_bars("reading", "preparing", "folds", "epochs", enabled=show) as hooks:
            cohort = ui.read_folder(data, fs_hz, hooks["reading"])
            # QC and preprocessing fit nothing: done once, then split by subject
            windows = probe.prepare(cohort, on_progress=hooks["preparing"])

            def make() -> Pipeline:
                return ui.make_pipeline(model, task, epochs, seed, representation)

            with warnings.catch_warnings():
                # the warning was printed above, once, in words a user reads
                warnings.simplefilter("ignore", LeakyEvaluationWarning)
                result = cross_validate(
                    make,
                    windows,
                    cv=cv,  # checked against CV_SCHEMES above
                    task=task,
                    k=k,
                    seed=seed,
                    n_boot=n_boot,
                    config={
                        "model": probe.model_name,
                        "representation": probe.representation.to_dict(),
                        "train": probe.train.to_dict(),
                        "preprocess": probe.preprocess.to_dict(),
                        "data": [str(d) for d in data],
                    },
                    on_progress=hooks["folds"],
                    on_epoch=hooks["epochs"],
                )
        title = f"emgdx: {probe.model_name}, {cv} cross-validation, task {task}"
        if leaky:
            title += " (LEAKY DEMONSTRATION)"
        paths = write_report(result, out_dir, title=title)

    if as_json:
        ui.print_json(
            {
                "model": probe.model_name,
                "cv": result.cv,
                "leaky": leaky,
                "task": task,
                "n_folds": len(result.folds),
                "n_windows": len(result.index),
                "metrics": ui.evaluation_summary(result),
                "report": {k: str(v) for k, v in paths.items()},
            }
        )
        return
    n_subjects = result.index["subject_id"].nunique()
    ui.print_table(
        ui.evaluation_table(
            result,
            f"{title} — {n_subjects} subjects, {len(result.folds)} folds "
            "(mean-probability aggregation)",
        )
    )
    fit_s = sum(f["fit_s"] for f in result.folds)
    ui.out.print(f"training time over all folds: {fit_s:.1f} s")
    ui.out.print(f"report: {paths['html']}  (results: {paths['json']})", soft_wrap=True)
    if leaky:
        ui.err.print(Text(ui.LEAKY_WARNING, "bold red"))
