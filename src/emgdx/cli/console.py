"""What every ``emgdx`` command shares: consoles, progress bars, errors, option types, reading
and loading.

File names, record ids, clinic names and error messages are the user's text and may hold square
brackets (``rec[1].hea``, ``pip install 'emgdx[ml]'``); rich would take those for markup and drop
them, or fail on one that looks like a closing tag. So every console here has markup off, and
styled text is built explicitly with :func:`labelled`. Library functions take ``on_progress``
callbacks and know nothing of terminals; :func:`progress_bars` turns them into bars on stderr
(so ``--json`` on stdout stays clean). A missing optional package ends a command with one line
naming the extra to install.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from emgdx.config import ProgressCallback, json_ready
from emgdx.errors import EXTRA_OF_MODULE, EmgdxError

if TYPE_CHECKING:
    from emgdx.evaluation import CVResult
    from emgdx.pipeline import Pipeline
    from emgdx.recording import Cohort, Recording


def plain_console(**kwargs: Any) -> Console:
    """A rich console with markup off (tables, panels and prints show text as given)."""
    return Console(markup=False, **kwargs)


def labelled(label: str, style: str, message: str = "") -> Text:
    """``label`` in ``style``, then ``message`` as plain text.

    ``labelled("error:", "bold red", message)`` is the CLI's error line.
    """
    return Text.assemble((label, style), f" {message}" if message else "")


out = plain_console()
err = plain_console(stderr=True, soft_wrap=True)  # messages stay whole lines in logs


@contextmanager
def progress_bars(
    *steps: str, enabled: bool = True, console: Console | None = None
) -> Iterator[dict[str, ProgressCallback]]:
    """Yield one ``on_progress(done, total)`` callback per step, all drawn in one live display.

    A step's bar appears when its callback is first called, so bars show up in the order the
    work happens. Without a terminal (a log file, CI) each step writes plain lines instead:
    percentage, elapsed time and time left, every few seconds. With ``enabled=False`` (e.g.
    ``--json``) the callbacks do nothing.
    """
    console = console or Console(stderr=True)
    if not enabled:
        yield {step: _ignore for step in steps}
        return
    if not console.is_terminal:  # a log or CI: plain lines, so that a long run never looks hung
        log = plain_console(stderr=True, soft_wrap=True)
        yield {step: _log_lines(step, log) for step in steps}
        return
    columns = (
        TextColumn("{task.description:<16}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    # rich allows one live display at a time: every step is a task of this one Progress.
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def callback(step: str) -> ProgressCallback:
            def update(done: int, total: int) -> None:
                if step not in tasks:
                    tasks[step] = bar.add_task(step, total=total)
                bar.update(tasks[step], completed=done, total=total)

            return update

        yield {step: callback(step) for step in steps}


@contextmanager
def progress_bar(
    description: str, *, enabled: bool = True, console: Console | None = None
) -> Iterator[ProgressCallback]:
    """Yield an ``on_progress(done, total)`` callback that drives one progress bar."""
    with progress_bars(description, enabled=enabled, console=console) as callbacks:
        yield callbacks[description]


def _ignore(done: int, total: int) -> None:
    """A progress callback that draws nothing."""


#: Seconds between two progress lines when stderr is not a terminal.
LOG_INTERVAL_S = 5.0


def _log_lines(step: str, console: Console) -> ProgressCallback:
    """``on_progress`` that writes ``step: 40 % (12/30), 10 s elapsed, about 15 s left`` lines:
    at the start, then at most every :data:`LOG_INTERVAL_S`, and at the end."""
    started: list[float] = []
    last = [-math.inf]

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        if not started:
            started.append(now)
        finished = total > 0 and done >= total
        if not finished and now - last[0] < LOG_INTERVAL_S:
            return
        last[0] = now
        elapsed = now - started[0]
        pct = 100.0 * done / total if total else 0.0
        line = f"{step}: {pct:.0f} % ({done}/{total}), {elapsed:.0f} s elapsed"
        if 0 < done < total:
            line += f", about {elapsed / done * (total - done):.0f} s left"
        console.print(line)

    return update


def missing_extra_message(exc: ModuleNotFoundError) -> str | None:
    """A one-line install hint when ``exc`` is an optional package we know, else ``None``."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return (
        f"this command needs the optional package {top!r}, which is not installed: "
        f"pip install 'emgdx[{extra}]'"
    )


def fail(exc: Exception) -> typer.Exit:
    hint = missing_extra_message(exc) if isinstance(exc, ModuleNotFoundError) else None
    err.print(labelled("error:", "bold red", hint or str(exc)))
    return typer.Exit(code=2)


@contextmanager
def failing(*also: type[Exception]) -> Iterator[None]:
    """End the command with :func:`fail`'s error line on an :class:`EmgdxError` (or one of
    ``also``) raised in the block."""
    caught: tuple[type[Exception], ...] = (EmgdxError, *also)
    try:
        yield
    except caught as exc:
        raise fail(exc) from exc


def warn(message: str, label: str = "warning:") -> None:
    err.print(labelled(label, "bold yellow", message))


def shipped_model_dir() -> Path:
    """The model emgdx ships (trained on two hospitals), with a note saying it is in use."""
    from emgdx.pretrained import default_model_dir

    with failing():
        model_dir = default_model_dir()
    warn(
        "no model named: using the shipped model (two hospitals, research use; read its "
        f"limits in {model_dir / 'MODEL_CARD.md'})",
        "note:",
    )
    return model_dir


def demo_model_dir() -> Path:
    """The small model trained on simulated data (trained first when missing), with a warning."""
    from emgdx.clinic.settings import default_data_dir
    from emgdx.demo import train_demo_model

    model_dir = default_data_dir() / "demo-model"
    if not (model_dir / "pipeline.json").exists():
        err.print(f"training a demo model on simulated data into {model_dir} (about a minute)…")
        train_demo_model(model_dir)
    warn("the demo model is trained on simulated EMG; it is not for patients")
    return model_dir


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(json_ready(payload), indent=2, allow_nan=False) + "\n")


def print_table(table: Table) -> None:
    """A pipe or file gets the whole table (rich would squeeze it to 80 columns)."""
    (out if out.is_terminal else plain_console(width=200)).print(table)


Task = Annotated[
    str, typer.Option("--task", help="3class, als_vs_rest (ALS vs all) or als_vs_healthy.")
]
ModelName = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model name (cnn1d, cnn2d_stft, random_forest, ...). Without --model, "
        "--representation and --epochs: the default configuration, the shipped model's "
        "(docs/model-card.md).",
    ),
]
Epochs = Annotated[
    int | None,
    typer.Option("--epochs", min=1, help="Maximum training epochs (torch models; default 30)."),
]
Seed = Annotated[int, typer.Option("--seed", help="Seed of training and of the folds.")]
Representation = Annotated[
    str | None,
    typer.Option(
        "--representation", help="Input representation (default: the one the model takes)."
    ),
]
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="Torch CPU threads (default: one per physical core, fewer when the machine is "
        "busy; inter-op: 1). More threads than free cores slows training many times over.",
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing model folder.")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable summary.")]
FsHz = Annotated[
    float | None,
    typer.Option("--fs-hz", help="Sampling rate for formats that do not store one."),
]
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        help="Model inference: auto (ONNX when `emgdx export` wrote model.onnx and "
        "onnxruntime is installed, else torch), torch, onnx or onnx-int8.",
    ),
]


ExplainMethod = Annotated[
    str,
    typer.Option(
        "--method",
        help="saliency, integrated_gradients, gradcam or occlusion (torch models).",
    ),
]


def set_threads(threads: int | None) -> int:
    """Set torch's threads for this process (``None``: one per free physical core,
    :func:`emgdx.threads.default_threads`); returns the intra-op count."""
    from emgdx.threads import configure_torch_threads

    return configure_torch_threads(threads)


def make_pipeline(
    model: str | None, task: str, epochs: int | None, seed: int, representation: str | None
) -> Pipeline:
    """A fresh, unfitted pipeline as the CLI options describe it (raises ConfigError).

    No ``model``, ``representation`` or ``epochs``: the default configuration, the shipped
    model's (:func:`emgdx.pretrained.default_pipeline`). ``epochs`` or ``representation``
    without a model: the 1-D CNN."""
    from emgdx.pipeline import Pipeline
    from emgdx.pretrained import default_pipeline
    from emgdx.training import TrainConfig

    if model is None and representation is None and epochs is None:
        return default_pipeline(seed, task)
    if model is None:
        model = "cnn1d"

    train = TrainConfig(seed=seed) if epochs is None else TrainConfig(seed=seed, epochs=epochs)
    return Pipeline(model=model, representation=representation, task=task, train=train)


#: The DATA argument of train and evaluate: one folder, or one per site.
DataFolders = Annotated[
    list[Path],
    typer.Argument(help="Folder(s) of labelled records (read_cohort); one folder per site."),
]


def read_folder(
    data: Path | Sequence[Path], fs_hz: float | None, on_progress: ProgressCallback
) -> Cohort:
    """Read a folder of records, or several (one per site); unreadable files are listed on
    stderr and left out."""
    from emgdx.errors import ConfigError
    from emgdx.io import UnreadableFileWarning, read_cohort

    folders = [data] if isinstance(data, Path) else list(data)
    for folder in folders:
        if not folder.is_dir():
            raise ConfigError(f"{folder}: DATA must be a folder of records (see `emgdx info`)")
    with warnings.catch_warnings():
        # reported below, in one list, instead of one Python warning per file
        warnings.simplefilter("ignore", UnreadableFileWarning)
        cohort = read_cohort(folders, on_progress=on_progress, fs_hz=fs_hz)
    if cohort.errors:
        n_bad = len(cohort.errors)
        err.print(Text(f"{n_bad} file(s) could not be read (left out):", "bold yellow"))
        for e in cohort.errors:
            err.print(f"  {e}")
    return cohort


def model_and_files(paths: list[Path]) -> tuple[Path | None, list[Path]]:
    """``[MODEL_DIR] FILE...``: a leading folder is the model (``None``: the shipped one)."""
    if paths and paths[0].is_dir():
        return paths[0], paths[1:]
    return None, paths


def load_pipeline(model_dir: Path, backend: str = "torch") -> Pipeline:
    from emgdx.pipeline import Pipeline

    with failing():
        return Pipeline.load(model_dir, backend=backend)


def read_records(files: list[Path], fs_hz: float | None) -> tuple[list[Recording], list[str]]:
    """Every record of every file; unreadable files become problems, not a crash."""
    from emgdx.io import read

    records: list[Recording] = []
    problems: list[str] = []
    for path in files:
        try:
            records.extend(read(path, fs_hz=fs_hz))
        except EmgdxError as exc:
            problems.append(str(exc))
    return records, problems


_EVAL_METRICS = {
    "balanced_accuracy": "balanced acc.",
    "macro_f1": "macro F1",
    "roc_auc": "ROC-AUC",
}
LEAKY_WARNING = (
    "WARNING: --cv leaky splits WINDOWS at random, so windows of the same subject (and record) "
    "are in training and test at once. Its scores are inflated and say nothing about new "
    "patients: a demonstration of the leak only. Use --cv loso or --cv kfold for real results."
)


def _metric_cell(ev: dict[str, Any], key: str) -> str:
    value = ev["metrics"].get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    low, high = ev["ci"].get(key, [math.nan, math.nan])
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.2f}-{high:.2f}]"


def evaluation_table(result: CVResult, title: str) -> Table:
    """Headline metrics (mean-probability aggregation) per subset and level, with CIs."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("records")
    table.add_column("level")
    table.add_column("n", justify="right")
    table.add_column("subjects", justify="right")
    for label in _EVAL_METRICS.values():
        table.add_column(f"{label} [95 % CI]", justify="right")
    for subset, by_method in result.evaluation.items():
        for level, ev in by_method["mean"].items():
            table.add_row(
                {"low": "low contraction"}.get(subset, subset),
                level,
                str(ev["metrics"]["n"]),
                str(ev["n_subjects"]),
                *(_metric_cell(ev, key) for key in _EVAL_METRICS),
            )
    return table


def evaluation_summary(result: CVResult) -> list[dict[str, Any]]:
    """The rows of :func:`evaluation_table` as JSON-ready dicts."""
    rows = []
    for subset, by_method in result.evaluation.items():
        for level, ev in by_method["mean"].items():
            row: dict[str, Any] = {
                "subset": subset,
                "level": level,
                "n": ev["metrics"]["n"],
                "n_subjects": ev["n_subjects"],
            }
            for key in _EVAL_METRICS:
                row[key] = ev["metrics"].get(key)
                row[f"{key}_ci"] = ev["ci"].get(key)
            rows.append(row)
    return rows
