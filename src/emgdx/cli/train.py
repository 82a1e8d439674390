"""``emgdx train``: fit a pipeline on a folder of records and save it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from emgdx.cli import console as ui
from emgdx.errors import ConfigError

if TYPE_CHECKING:
    from emgdx.pipeline import Pipeline
    from emgdx.recording import Windows

app = typer.Typer(add_completion=False)


def _class_counts(windows: Windows, pipe: Pipeline) -> dict[str, int]:
    """Windows per class of the pipeline's task (windows outside the task are not counted)."""
    from emgdx.tasks import encode_labels

    y, keep = encode_labels(windows.index["label"].to_list(), pipe.task)
    return {name: int((y[keep] == i).sum()) for i, name in enumerate(pipe.class_names)}


@app.command()
def train(
    data: ui.DataFolders,
    model: ui.ModelName = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder to save the fitted pipeline into.")
    ] = Path("emgdx-model"),
    task: ui.Task = "3class",
    epochs: ui.Epochs = None,
    seed: ui.Seed = 0,
    representation: ui.Representation = None,
    overwrite: ui.Overwrite = False,
    threads: ui.Threads = None,
    fs_hz: ui.FsHz = None,
    as_json: ui.AsJson = False,
    init_from: Annotated[
        Path | None,
        typer.Option(
            "--init-from",
            help="Fine-tune: start from this saved torch model (same --model, --task and "
            "--representation).",
        ),
    ] = None,
    freeze: Annotated[
        str,
        typer.Option(
            "--freeze",
            help="With --init-from: none, features (train the head only) or "
            "all_but_classifier (train the last layer only).",
        ),
    ] = "none",
) -> None:
    """Fit a pipeline (QC, preprocessing, representation, model) on all records and save it."""
    import time

    from emgdx.training import TrainConfig

    show = not as_json
    ui.set_threads(threads)
    with ui.failing():
        if model is None and init_from is not None:
            model = "cnn1d"  # fine-tuning needs a torch model
        pipe = ui.make_pipeline(model, task, epochs, seed, representation)
        if freeze != "none" and init_from is None:
            raise ConfigError("--freeze needs --init-from (a pretrained model to freeze)")
        pipe.train = TrainConfig.from_dict({**pipe.train.to_dict(), "freeze": freeze})
        # a mismatch fails here, before reading the data
        pretrained = None if init_from is None else pipe.check_init_from(init_from)
        if out_dir.exists() and not overwrite:
            # checked before minutes of training, not after
            raise ConfigError(f"{out_dir}: already exists (use --overwrite to replace it)")
        with ui.progress_bars("reading", "preparing", "training", enabled=show) as hooks:
            cohort = ui.read_folder(data, fs_hz, hooks["reading"])
            windows = pipe.prepare(cohort, on_progress=hooks["preparing"])
            t0 = time.perf_counter()
            pipe.fit(windows, on_progress=hooks["training"], init_from=pretrained)
            train_s = time.perf_counter() - t0
        saved = pipe.save(out_dir, overwrite=overwrite)

    counts = _class_counts(windows, pipe)
    result = pipe.train_result_
    summary: dict[str, Any] = {
        "model_dir": str(saved),
        "model": pipe.model_name,
        "representation": pipe.representation_name,
        "task": pipe.task,
        "records": len(cohort),
        "subjects": len(pipe.train_subjects_),
        "windows": int(sum(counts.values())),
        "windows_per_class": counts,
        "unreadable_files": len(cohort.errors),
        "train_s": round(train_s, 2),
        "best_epoch": None if result is None else result.best_epoch,
        "epochs_run": None if result is None else len(result.history),
        "stopped_early": None if result is None else result.stopped_early,
        "val_subjects": None if result is None else result.val_subjects,
        "device": None if result is None else result.device,
        "init_from": None if init_from is None else str(init_from),
        "freeze": freeze,
    }
    if as_json:
        ui.print_json(summary)
        return
    per_class = ", ".join(f"{k} {v}" for k, v in counts.items())
    ui.out.print(
        Text.assemble(
            "trained ",
            (pipe.model_name, "bold"),
            f" ({pipe.representation_name} input, task {pipe.task}) on {summary['subjects']} "
            f"subjects, {len(cohort)} records, {summary['windows']} windows ({per_class}) "
            f"in {train_s:.1f} s",
        )
    )
    if result is not None:
        stop = ", stopped early" if result.stopped_early else ""
        ui.out.print(
            f"best epoch {result.best_epoch} of {len(result.history)}{stop} (validation "
            f"subjects: {', '.join(result.val_subjects) or 'none'}; device {result.device})"
        )
    ui.out.print(f"saved to {saved}", soft_wrap=True)
