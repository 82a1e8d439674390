"""``emgdx evaluate``: subject-wise cross-validation, with a JSON + HTML report."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from emgdx.cli import console as ui
from emgdx.errors import ConfigError

if TYPE_CHECKING:
    from emgdx.pipeline import Pipeline

app = typer.Typer(add_completion=False)


@app.command()
def evaluate(
    data: ui.DataFolders,
    model: ui.ModelName = None,
    cv: Annotated[
        str,
        typer.Option(
            "--cv",
            help="loso (leave one subject out), kfold (subject-wise), site (leave one site "
            "out: train on the other folders, test on one), pooled (subject-wise k-fold "
            "stratified by site and class), fewshot (a calibration curve for --target: k "
            "labelled subjects per class of it join the training) or leaky (window-wise: a "
            "demonstration of the leak, never a result).",
        ),
    ] = "loso",
    k: Annotated[int, typer.Option("--k", min=2, help="Folds for kfold, pooled, leaky.")] = 5,
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
    as_json: ui.AsJson = False,
    target: Annotated[
        str | None, typer.Option("--target", help="fewshot: the site playing the new hospital.")
    ] = None,
    shots: Annotated[
        str, typer.Option("--shots", help="fewshot: labelled subjects per class, e.g. 0,1,2,5,10.")
    ] = "0,1,2,5,10",
    draws: Annotated[
        int, typer.Option("--draws", min=1, help="fewshot: draws of labelled subjects per k.")
    ] = 5,
    adapt: Annotated[
        bool,
        typer.Option(
            "--adapt",
            help="Adapt each fold's model to its test records, unlabelled, before predicting "
            "(AdaBN / feature alignment; meant for --cv site and fewshot).",
        ),
    ] = False,
    fine_tune: Annotated[
        bool,
        typer.Option(
            "--fine-tune",
            help="fewshot: train once on the other sites, then fine-tune a copy on each draw's "
            "labelled subjects (torch models) instead of adding them to the training data.",
        ),
    ] = False,
) -> None:
    """Cross-validate a model subject-wise and write results.json + report.html."""
    from emgdx.evaluation import CV_SCHEMES, LeakyEvaluationWarning, cross_validate, write_report

    if cv == "fewshot":
        _few_shot(
            data=data,
            model=model,
            task=task,
            epochs=epochs,
            seed=seed,
            representation=representation,
            target=target,
            shots=shots,
            draws=draws,
            out_dir=out_dir,
            threads=threads,
            fs_hz=fs_hz,
            as_json=as_json,
            adapt=adapt,
            fine_tune=fine_tune,
        )
        return
    if cv not in CV_SCHEMES:
        choices = ", ".join((*CV_SCHEMES, "fewshot"))
        raise ui.fail(ConfigError(f"--cv must be one of {choices}, got {cv!r}"))
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
                    adapt=adapt,
                )
        title = f"emgdx: {probe.model_name}, {cv} cross-validation, task {task}"
        if adapt:
            title += ", adapted to each test fold (unlabelled)"
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
                "calibration": {
                    group: {k: cal[k] for k in ("n_records", "ece_before", "ece_after")}
                    for group, cal in result.calibration.items()
                },
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
    for group, cal in result.calibration.items():
        ui.out.print(
            f"calibration ({group}, {cal['n_records']} records): expected calibration error "
            f"{cal['ece_before']:.3f} before, {cal['ece_after']:.3f} after"
        )
    ui.out.print(f"training time over all folds: {fit_s:.1f} s")
    ui.out.print(f"report: {paths['html']}  (results: {paths['json']})", soft_wrap=True)
    if leaky:
        ui.err.print(Text(ui.LEAKY_WARNING, "bold red"))


def _few_shot(
    *,
    data: list[Path],
    model: str | None,
    task: str,
    epochs: int | None,
    seed: int,
    representation: str | None,
    target: str | None,
    shots: str,
    draws: int,
    out_dir: Path,
    threads: int | None,
    fs_hz: float | None,
    as_json: bool,
    adapt: bool,
    fine_tune: bool,
) -> None:
    """``--cv fewshot``: the calibration curve, written to ``fewshot.json``."""
    from emgdx.config import atomic_write
    from emgdx.evaluation import few_shot_curve, fine_tuning_config
    from emgdx.models import is_torch_model

    with ui.failing():
        try:
            ks = [int(k) for k in shots.split(",") if k.strip()]
        except ValueError:
            raise ConfigError(f"--shots: integers separated by commas, got {shots!r}") from None
        if target is None:
            raise ConfigError("--cv fewshot needs --target SITE (a data folder's name)")
        ui.set_threads(threads)
        probe = ui.make_pipeline(model, task, epochs, seed, representation)
        if fine_tune and not is_torch_model(probe.model_name):
            raise ConfigError(f"--fine-tune needs a torch model; {probe.model_name} is not one")

        def tuned() -> Pipeline:
            pipe = ui.make_pipeline(model, task, epochs, seed, representation)
            pipe.train = fine_tuning_config(pipe.train)
            return pipe

        with ui.progress_bars("reading", "preparing", "runs", enabled=not as_json) as hooks:
            cohort = ui.read_folder(data, fs_hz, hooks["reading"])
            windows = probe.prepare(cohort, on_progress=hooks["preparing"])
            result = few_shot_curve(
                lambda: ui.make_pipeline(model, task, epochs, seed, representation),
                windows,
                target=target,
                shots=ks,
                draws=draws,
                task=task,
                seed=seed,
                config={"model": probe.model_name, "data": [str(d) for d in data]},
                on_progress=hooks["runs"],
                adapt=adapt,
                fine_tune=tuned if fine_tune else None,
            )
        path = out_dir / "fewshot.json"
        atomic_write(path, json.dumps(result.to_dict(), indent=2, allow_nan=False))
    if as_json:
        ui.print_json(result.to_dict() | {"result": str(path)})
        return
    summary = result.summary()
    table = Table(
        title=f"emgdx: {probe.model_name}, few-shot calibration on {target} (mean over draws)",
        box=box.SIMPLE_HEAD,
    )
    for column in ("k", "draws", "subjects tested", "record BA", "record AUC", "subject BA"):
        table.add_column(column, justify="right")
    tested = result.rows.groupby("k")["n_test_subjects"].median()
    for row in summary.itertuples():
        table.add_row(
            str(row.k),
            str(row.draws),
            f"{tested[row.k]:.0f}",
            f"{row.record_balanced_accuracy_mean:.3f}",
            f"{row.record_roc_auc_mean:.3f}",
            f"{row.subject_balanced_accuracy_mean:.3f}",
        )
    ui.print_table(table)
    for k, why in result.skipped.items():
        ui.warn(f"k={k} skipped: {why}")
    ui.out.print(f"result: {path}", soft_wrap=True)
