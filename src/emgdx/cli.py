"""The ``emgdx`` command: one entry point, one subcommand per job.

``emgdx info PATH``        what is in a record or a folder (rate, duration, label, QC flags)
``emgdx simulate OUT_DIR`` write a simulated cohort with ground truth
``emgdx train DATA``       fit a pipeline on a folder of records and save it
``emgdx evaluate DATA``    subject-wise cross-validation, with a JSON + HTML report
``emgdx predict MODEL F…`` per-record class probabilities and QC of new files
``emgdx export MODEL``     the model as ONNX (optionally int8) for onnxruntime inference
``emgdx demo``             the main job on the embedded default (simulated) cohort: QC,
                           preprocessing, training and subject-wise evaluation with a report
``emgdx serve``            the clinic service: API, web page, patient history in a database
``emgdx clinic …``         clinics, API tokens and database migrations of the service
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from emgdx import __version__
from emgdx.config import json_ready
from emgdx.errors import ConfigError, EmgdxError, SamplingRateError
from emgdx.progress import ProgressCallback, progress_bar, progress_bars
from emgdx.terminal import labelled, plain_console

if TYPE_CHECKING:
    from emgdx.evaluation import CVResult
    from emgdx.pipeline import Pipeline
    from emgdx.recording import Cohort, Recording, Windows

app = typer.Typer(
    name="emgdx",
    help="emgdx: an objective, explained second opinion on needle EMG.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = plain_console()
err = plain_console(stderr=True, soft_wrap=True)  # messages stay whole lines in logs


def _version(value: bool) -> None:
    if value:
        out.print(f"emgdx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """emgdx: read, check and preprocess EMG; classify healthy / neurogenic / myopathy."""


def _fail(exc: Exception) -> typer.Exit:
    hint = missing_extra_message(exc) if isinstance(exc, ModuleNotFoundError) else None
    err.print(labelled("error:", "bold red", hint or str(exc)))
    return typer.Exit(code=2)


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


INFO_COLUMNS = (
    "record_id",
    "subject_id",
    "label",
    "level",
    "fs_hz",
    "duration_s",
    "qc_flags",
    "usable_fraction",
    "line_freq_hz",
)


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="A record file or a folder of records.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    qc: Annotated[bool, typer.Option("--qc/--no-qc", help="Run quality control.")] = True,
    fs_hz: Annotated[
        float | None,
        typer.Option("--fs-hz", help="Sampling rate for formats that do not store one."),
    ] = None,
) -> None:
    """Show rate, duration, label, subject and QC flags of a record or a whole folder."""
    from emgdx.io import UnreadableFileWarning, read, read_cohort
    from emgdx.quality import QC_FLAGS, assess_cohort
    from emgdx.recording import Cohort

    show = not as_json
    try:
        if path.is_dir():
            with progress_bar("reading", enabled=show) as cb, warnings.catch_warnings():
                # unreadable files are listed below (and in the JSON), not as Python warnings
                warnings.simplefilter("ignore", UnreadableFileWarning)
                cohort = read_cohort(path, on_progress=cb, fs_hz=fs_hz)
        else:
            cohort = Cohort.from_recordings(read(path, fs_hz=fs_hz))
        if qc:
            with progress_bar("quality control", enabled=show) as cb:
                assess_cohort(cohort, on_progress=cb)
    except EmgdxError as exc:
        raise _fail(exc) from exc

    manifest = cohort.manifest
    columns = [c for c in INFO_COLUMNS if c in manifest.columns]
    rows = [{c: json_ready(row[c]) for c in columns} for _, row in manifest.iterrows()]
    errors = [{"path": getattr(e, "path", None), "problem": str(e)} for e in cohort.errors]
    if as_json:
        payload = {"records": rows, "unreadable": errors}
        sys.stdout.write(json.dumps(payload, indent=2, default=_json_default) + "\n")
        return

    table = Table(
        title=f"{path} — {len(cohort)} record(s), {len(cohort.subjects)} subject(s)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in columns:
        table.add_column(
            INFO_HEADERS.get(col, col),
            justify="right" if col in _RIGHT_ALIGNED else "left",
            no_wrap=True,
        )
    for row in rows:
        table.add_row(*(_format_cell(c, row[c]) for c in columns))
    # A pipe or file gets the whole table (rich would squeeze it to 80 columns); a terminal
    # gets what fits its width.
    _print_table(table)
    if qc:
        flagged = manifest[manifest["qc_flags"] != ""]
        counts = {f: int(manifest[f"qc_{f}"].sum()) for f in QC_FLAGS}
        detail = ", ".join(f"{f} {n}" for f, n in counts.items() if n) or "none"
        out.print(f"QC: {len(flagged)} of {len(manifest)} record(s) flagged ({detail})")
    if errors:
        sys.stdout.flush()  # the table first, then the problems, also when both go to a log
        err.print(Text(f"{len(errors)} file(s) could not be read:", "bold yellow"))
        for e in errors:
            err.print(f"  {e['problem']}")
        if any(isinstance(e, SamplingRateError) for e in cohort.errors):
            err.print("hint: give the sampling rate of files that store none with --fs-hz")


INFO_HEADERS = {
    "record_id": "record",
    "subject_id": "subject",
    "fs_hz": "fs (Hz)",
    "duration_s": "dur (s)",
    "qc_flags": "QC",
    "usable_fraction": "usable",
    "line_freq_hz": "mains (Hz)",
}
_RIGHT_ALIGNED = {"fs_hz", "duration_s", "usable_fraction", "line_freq_hz"}


def _print_table(table: Table) -> None:
    """A pipe or file gets the whole table (rich would squeeze it to 80 columns)."""
    (out if out.is_terminal else plain_console(width=200)).print(table)


def _format_cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column == "fs_hz":
        return f"{value:g}"
    if column == "duration_s":
        return f"{value:.2f}"
    if column == "usable_fraction":
        return f"{100 * value:.1f}%"
    if column == "qc_flags":
        return value or "ok"
    if column == "line_freq_hz":
        return f"{value:g}"
    return str(value)


@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the cohort into.")],
    subjects_per_class: Annotated[int, typer.Option(min=1)] = 3,
    records_per_subject: Annotated[int, typer.Option(min=1)] = 3,
    duration_s: Annotated[float, typer.Option(min=0.5)] = 10.0,
    fs_hz: Annotated[float, typer.Option(min=1000.0)] = 23_437.5,
    seed: int = 0,
) -> None:
    """Write a simulated cohort (WFDB records, manifest.csv, ground truth per record)."""
    from emgdx.simulate import simulate_cohort, write_cohort

    try:
        with progress_bar("simulating") as cb:
            sim = simulate_cohort(
                n_subjects_per_class=subjects_per_class,
                records_per_subject=records_per_subject,
                fs_hz=fs_hz,
                duration_s=duration_s,
                seed=seed,
                on_progress=cb,
            )
        write_cohort(sim, out_dir)
    except EmgdxError as exc:
        raise _fail(exc) from exc
    out.print(
        f"wrote {len(sim.cohort)} records of {len(sim.cohort.subjects)} subjects to {out_dir}"
    )


Task = Annotated[
    str, typer.Option("--task", help="3class, als_vs_rest (ALS vs all) or als_vs_healthy.")
]
ModelName = Annotated[
    str, typer.Option("--model", help="Model name (cnn1d, cnn2d_stft, random_forest, ...).")
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
        help="Torch CPU threads (default: torch's choice). On a CPU busy with other work, 1 "
        "avoids over-subscription, which can slow training many times over.",
    ),
]
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


@app.command()
def demo(
    seed: int = 0,
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out", help="Folder for the report (report.html, results.json) and the records."
        ),
    ] = Path("emgdx-demo"),
    model: ModelName = "",
    epochs: Epochs = None,
    cv: Annotated[
        str, typer.Option("--cv", help="loso or kfold (subject-wise; the demo is never leaky).")
    ] = "",
    evaluate: Annotated[
        bool, typer.Option("--evaluate/--no-evaluate", help="Train and evaluate a model.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
) -> None:
    """Simulate a cohort (no download), run QC, train and evaluate a model, write the report."""
    from emgdx.demo import DEMO_CV, DEMO_EPOCHS, DEMO_MODEL, run_demo

    show = not as_json
    steps = ("simulate", "quality", "preprocess", "prepare", "folds", "epochs")
    with progress_bars(*steps, enabled=show) as hooks:
        try:
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
        except EmgdxError as exc:
            raise _fail(exc) from exc

    if as_json:
        _print_json(result.to_dict())
        return
    summary = result.to_dict()
    table = Table(title="emgdx demo — simulated cohort")
    columns = ("label", "subjects", "records", "duration_s", "qc_flagged", "windows")
    for col in columns:
        table.add_column(col, justify="left" if col == "label" else "right")
    for row in summary["classes"]:
        table.add_row(*(str(row[c]) for c in columns))
    out.print(table)
    flags = ", ".join(f"{k}: {v}" for k, v in summary["qc_flag_counts"].items() if v) or "none"
    out.print(f"QC flags: {flags}")
    score = summary["qc_score"]
    if score["faults_injected"]:
        out.print(
            f"QC caught {score['faults_caught']} of {score['faults_injected']} injected faults "
            f"({', '.join(sorted(set(summary['injected_faults'].values())))}); "
            f"flagged {len(score['clean_flagged'])} of {score['clean_records']} clean records"
        )
    out.print(
        f"windows: {summary['n_windows']} x {summary['window_samples']} samples "
        f"at {summary['window_fs_hz']:g} Hz"
    )
    out.print("preprocessing: " + json.dumps(summary["preprocess"], default=_json_default))
    if result.evaluation is not None:
        ev = summary["evaluation"]
        _print_table(
            _evaluation_table(
                result.evaluation,
                f"{ev['model']} ({ev['epochs']} epochs), {ev['cv']} cross-validation: "
                f"{ev['n_folds']} folds, {ev['n_windows']} windows",
            )
        )
        out.print(f"subjects right: {ev['subjects_correct']} of {ev['subjects_total']}")
    timing = ", ".join(f"{k} {v:.2f} s" for k, v in summary["seconds"].items())
    out.print(f"time: {timing}")
    out.print(f"records written to {out_dir / 'records'}")
    if result.report is not None:
        out.print(
            f"report: {result.report['html']}  (results: {result.report['json']})",
            soft_wrap=True,
        )


# ---- train / evaluate / predict ------------------------------------------------------------


def _print_json(payload: Any) -> None:
    sys.stdout.write(
        json.dumps(json_ready(payload), indent=2, allow_nan=False, default=_json_default) + "\n"
    )


def _set_threads(threads: int | None) -> None:
    """Set torch's intra-op threads for this process (``None``: leave torch's default)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _make_pipeline(
    model: str, task: str, epochs: int | None, seed: int, representation: str | None
) -> Pipeline:
    """A fresh, unfitted pipeline as the CLI options describe it (raises ConfigError)."""
    from emgdx.pipeline import Pipeline
    from emgdx.training import TrainConfig

    train = TrainConfig(seed=seed) if epochs is None else TrainConfig(seed=seed, epochs=epochs)
    return Pipeline(model=model, representation=representation, task=task, train=train)


def _read_folder(data: Path, fs_hz: float | None, on_progress: ProgressCallback) -> Cohort:
    """Read a folder of records; unreadable files are listed on stderr and left out."""
    from emgdx.errors import ConfigError
    from emgdx.io import UnreadableFileWarning, read_cohort

    if not data.is_dir():
        raise ConfigError(f"{data}: DATA must be a folder of records (see `emgdx info`)")
    with warnings.catch_warnings():
        # reported below, in one list, instead of one Python warning per file
        warnings.simplefilter("ignore", UnreadableFileWarning)
        cohort = read_cohort(data, on_progress=on_progress, fs_hz=fs_hz)
    if cohort.errors:
        n_bad = len(cohort.errors)
        err.print(Text(f"{n_bad} file(s) could not be read (left out):", "bold yellow"))
        for e in cohort.errors:
            err.print(f"  {e}")
    return cohort


def _class_counts(windows: Windows, pipe: Pipeline) -> dict[str, int]:
    """Windows per class of the pipeline's task (windows outside the task are not counted)."""
    from emgdx.tasks import encode_labels

    y, keep = encode_labels(windows.index["label"].to_list(), pipe.task)
    return {name: int((y[keep] == i).sum()) for i, name in enumerate(pipe.class_names)}


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="Folder of labelled records (read_cohort).")],
    model: ModelName = "cnn1d",
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder to save the fitted pipeline into.")
    ] = Path("emgdx-model"),
    task: Task = "3class",
    epochs: Epochs = None,
    seed: Seed = 0,
    representation: Representation = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing model folder.")
    ] = False,
    threads: Threads = None,
    fs_hz: FsHz = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
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

    from emgdx.errors import ConfigError
    from emgdx.training import TrainConfig

    show = not as_json
    _set_threads(threads)
    try:
        pipe = _make_pipeline(model, task, epochs, seed, representation)
        if freeze != "none" and init_from is None:
            raise ConfigError("--freeze needs --init-from (a pretrained model to freeze)")
        pipe.train = TrainConfig.from_dict({**pipe.train.to_dict(), "freeze": freeze})
        # a mismatch fails here, before reading the data
        pretrained = None if init_from is None else pipe.check_init_from(init_from)
        if out_dir.exists() and not overwrite:
            # checked before minutes of training, not after
            raise ConfigError(f"{out_dir}: already exists (use --overwrite to replace it)")
        with progress_bars("reading", "preparing", "training", enabled=show) as hooks:
            cohort = _read_folder(data, fs_hz, hooks["reading"])
            windows = pipe.prepare(cohort, on_progress=hooks["preparing"])
            t0 = time.perf_counter()
            pipe.fit(windows, on_progress=hooks["training"], init_from=pretrained)
            train_s = time.perf_counter() - t0
        saved = pipe.save(out_dir, overwrite=overwrite)
    except EmgdxError as exc:
        raise _fail(exc) from exc

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
        _print_json(summary)
        return
    per_class = ", ".join(f"{k} {v}" for k, v in counts.items())
    out.print(
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
        out.print(
            f"best epoch {result.best_epoch} of {len(result.history)}{stop} (validation "
            f"subjects: {', '.join(result.val_subjects) or 'none'}; device {result.device})"
        )
    out.print(f"saved to {saved}", soft_wrap=True)


class _FoldPipeline:
    """A fresh pipeline per fold whose torch training drives the CLI's epoch bar."""

    def __init__(self, pipe: Pipeline, on_epoch: ProgressCallback) -> None:
        self.pipe = pipe
        self.on_epoch = on_epoch

    def fit(self, windows: Windows) -> _FoldPipeline:
        self.pipe.fit(windows, on_progress=self.on_epoch)
        return self

    def predict_windows(self, windows: Windows) -> Any:
        return self.pipe.predict_windows(windows)


#: Levels and metrics of the evaluation table (all three levels, the three headline metrics).
_EVAL_LEVELS = ("window", "record", "subject")
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


def _evaluation_table(result: CVResult, title: str) -> Table:
    """Headline metrics (mean-probability aggregation) per subset and level, with CIs."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("records")
    table.add_column("level")
    table.add_column("n", justify="right")
    table.add_column("subjects", justify="right")
    for label in _EVAL_METRICS.values():
        table.add_column(f"{label} [95 % CI]", justify="right")
    for subset, name in (("all", "all"), ("low", "low contraction")):
        if subset not in result.evaluation:
            continue
        for level in _EVAL_LEVELS:
            ev = result.evaluation[subset]["mean"][level]
            table.add_row(
                name,
                level,
                str(ev["metrics"]["n"]),
                str(ev["n_subjects"]),
                *(_metric_cell(ev, key) for key in _EVAL_METRICS),
            )
    return table


def _evaluation_summary(result: CVResult) -> list[dict[str, Any]]:
    """The rows of :func:`_evaluation_table` as JSON-ready dicts."""
    rows = []
    for subset, by_method in result.evaluation.items():
        for level in _EVAL_LEVELS:
            ev = by_method["mean"][level]
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


@app.command()
def evaluate(
    data: Annotated[Path, typer.Argument(help="Folder of labelled records (read_cohort).")],
    model: ModelName = "cnn1d",
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
    task: Task = "3class",
    epochs: Epochs = None,
    seed: Seed = 0,
    representation: Representation = None,
    n_boot: Annotated[
        int, typer.Option("--n-boot", min=0, help="Subject-bootstrap replicates for the CIs.")
    ] = 1000,
    threads: Threads = None,
    fs_hz: FsHz = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
) -> None:
    """Cross-validate a model subject-wise and write results.json + report.html."""
    from emgdx.evaluation import CV_SCHEMES, LeakyEvaluationWarning, cross_validate, write_report

    if cv not in CV_SCHEMES:
        err.print(
            labelled(
                "error:", "bold red", f"--cv must be one of {', '.join(CV_SCHEMES)}, got {cv!r}"
            )
        )
        raise typer.Exit(code=2)
    show = not as_json
    _set_threads(threads)
    leaky = cv == "leaky"
    if leaky:
        err.print(Text(LEAKY_WARNING, "bold red"))
    try:
        # Built once up front so a bad --model / --task fails before any reading.
        probe = _make_pipeline(model, task, epochs, seed, representation)
        with progress_bars("reading", "preparing", "folds", "epochs", enabled=show) as hooks:
            cohort = _read_folder(data, fs_hz, hooks["reading"])
            # QC and preprocessing fit nothing: done once, then split by subject
            windows = probe.prepare(cohort, on_progress=hooks["preparing"])

            def make() -> _FoldPipeline:
                return _FoldPipeline(
                    _make_pipeline(model, task, epochs, seed, representation), hooks["epochs"]
                )

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
                        "data": str(data),
                    },
                    on_progress=hooks["folds"],
                )
        title = f"emgdx: {probe.model_name}, {cv} cross-validation, task {task}"
        if leaky:
            title += " (LEAKY DEMONSTRATION)"
        paths = write_report(result, out_dir, title=title)
    except EmgdxError as exc:
        raise _fail(exc) from exc

    if as_json:
        _print_json(
            {
                "model": probe.model_name,
                "cv": result.cv,
                "leaky": leaky,
                "task": task,
                "n_folds": len(result.folds),
                "n_windows": len(result.index),
                "metrics": _evaluation_summary(result),
                "report": {k: str(v) for k, v in paths.items()},
            }
        )
        return
    n_subjects = result.index["subject_id"].nunique()
    _print_table(
        _evaluation_table(
            result,
            f"{title} — {n_subjects} subjects, {len(result.folds)} folds "
            "(mean-probability aggregation)",
        )
    )
    fit_s = sum(f["fit_s"] for f in result.folds)
    out.print(f"training time over all folds: {fit_s:.1f} s")
    out.print(f"report: {paths['html']}  (results: {paths['json']})", soft_wrap=True)
    if leaky:
        err.print(Text(LEAKY_WARNING, "bold red"))


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A folder written by `emgdx train`.")],
    files: Annotated[list[Path], typer.Argument(help="Record files to classify.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    fs_hz: FsHz = None,
    backend: BackendOpt = "auto",
) -> None:
    """Class probabilities, prediction, confidence and QC per record of each file."""
    from emgdx.io import read

    pipe = _load_pipeline(model_dir, backend)
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    show = not as_json
    with progress_bar("predicting", enabled=show) as cb:
        cb(0, len(files))
        for i, path in enumerate(files):
            try:
                recordings = read(path, fs_hz=fs_hz)
                # per file: one bad file must not stop the others
                table = pipe.predict(recordings)
            except EmgdxError as exc:
                failed.append({"path": str(path), "problem": str(exc)})
            else:
                for row in table.to_dict(orient="records"):
                    row = {"file": str(path), **{k: json_ready(v) for k, v in row.items()}}
                    rows.append(row)
                    if not row["n_windows"]:
                        flags = row.get("qc_flags") or "none"
                        failed.append(
                            {
                                "path": str(path),
                                "problem": f"{path}: record {row['record_id']} has no usable "
                                f"window to classify (QC flags: {flags})",
                            }
                        )
            cb(i + 1, len(files))

    if as_json:
        _print_json(
            {
                "model": {
                    "dir": str(model_dir),
                    "name": pipe.model_name,
                    "task": pipe.task,
                    "classes": list(pipe.class_names),
                    "backend": pipe.backend,
                },
                "records": rows,
                "failed": failed,
            }
        )
    else:
        _print_predictions(pipe, rows)
        if failed:
            sys.stdout.flush()
            err.print(Text(f"{len(failed)} problem(s):", "bold red"))
            for f in failed:
                err.print(f"  {f['problem']}")
    if failed:
        raise typer.Exit(code=1)


def _print_predictions(pipe: Pipeline, rows: list[dict[str, Any]]) -> None:
    table = Table(
        title=f"emgdx predict — {pipe.model_name}, task {pipe.task}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    show_label = any(r.get("label") for r in rows)
    table.add_column("record", no_wrap=True)
    if show_label:
        table.add_column("true label")
    for name in pipe.class_names:
        table.add_column(f"P({name})", justify="right")
    for col in ("predicted", "confidence", "windows", "QC", "usable"):
        table.add_column(col, justify="left" if col in ("predicted", "QC") else "right")
    for r in rows:
        probs = [r.get(f"p_{n}") for n in pipe.class_names]
        usable = r.get("usable_fraction")
        table.add_row(
            str(r["record_id"]),
            *([str(r.get("label") or "-")] if show_label else []),
            *("-" if p is None else f"{p:.3f}" for p in probs),
            str(r.get("predicted") or "-"),
            "-" if r.get("confidence") is None else f"{r['confidence']:.3f}",
            str(r["n_windows"]),
            (r.get("qc_flags") or "ok") if "qc_flags" in r else "-",
            "-" if usable is None else f"{100 * usable:.0f}%",
        )
    _print_table(table)


ExplainMethod = Annotated[
    str,
    typer.Option(
        "--method",
        help="saliency, integrated_gradients, gradcam or occlusion (torch models).",
    ),
]


def _load_pipeline(model_dir: Path, backend: str = "torch") -> Pipeline:
    from emgdx.pipeline import Pipeline

    try:
        return Pipeline.load(model_dir, backend=backend)
    except EmgdxError as exc:
        raise _fail(exc) from exc


def _read_records(files: list[Path], fs_hz: float | None) -> tuple[list[Recording], list[str]]:
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


@app.command()
def explain(
    model_dir: Annotated[Path, typer.Argument(help="A folder written by `emgdx train`.")],
    file: Annotated[Path, typer.Argument(help="A record file to explain.")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the figures and explanation.json.")
    ] = Path("explanation"),
    method: ExplainMethod = "integrated_gradients",
    target: Annotated[
        str | None,
        typer.Option("--target", help="Class to explain (default: the predicted class)."),
    ] = None,
    segments: Annotated[int, typer.Option("--segments", min=1, help="Top segments.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    fs_hz: FsHz = None,
) -> None:
    """Why the model decided what it did: evidence on the signal, figures and top segments."""
    import numpy as np

    from emgdx.explain import attribute_record, feature_importance, top_segments
    from emgdx.explain import figures as figs

    pipe = _load_pipeline(model_dir)
    records, problems = _read_records([file], fs_hz)
    if problems:
        raise _fail(EmgdxError(problems[0]))
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    results: list[dict[str, Any]] = []
    try:
        if pipe.kind != "torch":
            importance = feature_importance(pipe, method="model")
            fig_path = out_dir / "feature_importance.png"
            figs.figure_feature_importance(importance).savefig(fig_path, dpi=130)
            written.append(str(fig_path))
            results.append({"feature_importance": importance.head(15).to_dict(orient="records")})
        for rec in records:
            expl = attribute_record(pipe, rec, method, target=target)  # type: ignore[arg-type]
            top = top_segments(expl, k=segments)
            stem = rec.record_id.replace(":", "_").replace("/", "_")
            paths = {
                "signal": out_dir / f"{stem}_evidence.png",
                "segments": out_dir / f"{stem}_segments.png",
            }
            figs.figure_record_evidence(expl, segments=top).savefig(paths["signal"], dpi=130)
            if len(top):
                figs.figure_top_segments(expl, segments=top).savefig(paths["segments"], dpi=130)
            else:
                paths.pop("segments")
            if expl.windows.inputs.ndim == 4:
                paths["image"] = out_dir / f"{stem}_image.png"
                best = int(np.argmax(expl.windows.evidence().sum(axis=1)))
                figs.figure_image_evidence(expl.windows, best).savefig(paths["image"], dpi=130)
            written += [str(p) for p in paths.values()]
            results.append(
                {
                    "record_id": expl.record_id,
                    "method": method,
                    "explained_class": expl.target_name,
                    "probabilities": expl.record_probs,
                    "windows": len(expl.windows),
                    "top_segments": top.to_dict(orient="records"),
                    "figures": {k: str(v) for k, v in paths.items()},
                }
            )
    except EmgdxError as exc:
        raise _fail(exc) from exc
    summary = {"model": pipe.model_name, "file": str(file), "records": results}
    (out_dir / "explanation.json").write_text(json.dumps(json_ready(summary), indent=2) + "\n")
    if as_json:
        _print_json(summary)
        return
    for r in results:
        if "record_id" not in r:
            continue
        probs = ", ".join(f"{k} {v:.2f}" for k, v in r["probabilities"].items())
        out.print(
            Text.assemble(
                (r["record_id"], "bold"),
                ": evidence for ",
                (r["explained_class"], "bold"),
                f" ({probs})",
            )
        )
        for i, seg in enumerate(r["top_segments"], start=1):
            out.print(
                f"  {i}. {seg['start_s']:.3f}–{seg['end_s']:.3f} s: "
                f"{100 * seg['share']:.0f} % of the evidence, peak {seg['peak_uv']:.0f} µV"
            )
    out.print(f"figures: {', '.join(written)}")


@app.command()
def report(
    model_dir: Annotated[Path, typer.Argument(help="A folder written by `emgdx train`.")],
    files: Annotated[list[Path], typer.Argument(help="The recordings of one record or visit.")],
    out_file: Annotated[
        Path, typer.Option("--out", help="report.html or report.pdf (chosen by the suffix).")
    ] = Path("report.html"),
    patient: Annotated[
        str | None, typer.Option("--patient", help="Patient identifier shown on the report.")
    ] = None,
    visit: Annotated[str | None, typer.Option("--visit", help="Visit date or identifier.")] = None,
    method: ExplainMethod = "integrated_gradients",
    figures: Annotated[
        int, typer.Option("--figures", min=0, max=3, help="Evidence figures per record (0-3).")
    ] = 3,
    fs_hz: FsHz = None,
) -> None:
    """The clinical report (HTML or PDF) of one record or of a patient visit."""
    from emgdx.report import build_report, write_report

    if out_file.suffix.lower() not in (".html", ".htm", ".pdf"):
        raise _fail(ConfigError(f"{out_file}: --out must end in .html or .pdf"))
    pipe = _load_pipeline(model_dir)
    records, problems = _read_records(files, fs_hz)
    for problem in problems:
        err.print(labelled("skipped:", "bold red", str(problem)))
    if not records:
        raise _fail(EmgdxError("no readable recording to report on"))
    try:
        rep = build_report(
            pipe,
            records,
            patient={"id": patient} if patient else None,
            visit={"id": visit} if visit else None,
            explain_method=method,
            n_figures=figures,
        )
        path = write_report(rep, out_file)
    except EmgdxError as exc:
        raise _fail(exc) from exc
    out.print(f"{rep.summary_line}\nreport: {path}")
    if problems:
        raise typer.Exit(code=1)


@app.command(name="export")
def export_model(
    model_dir: Annotated[Path, typer.Argument(help="A folder written by `emgdx train`.")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Write model.onnx (float32).")] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="Also write model.int8.onnx (dynamic int8).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Export a torch model as ONNX into its folder, with a parity check against torch."""
    from emgdx.deploy import export_pipeline

    if not onnx:
        raise _fail(ConfigError("choose a format: --onnx (the only one so far)"))
    pipe = _load_pipeline(model_dir)
    try:
        result = export_pipeline(pipe, model_dir, int8=int8)
    except (EmgdxError, ImportError) as exc:
        raise _fail(exc) from exc
    if as_json:
        _print_json(result.to_dict())
        return
    for backend, path in result.files.items():
        check = result.parity[backend]
        out.print(
            f"{path}  {result.sizes[backend] / 1024:.0f} KiB  parity with torch on "
            f"{check['n']} random inputs: max |Δp| {check['max_abs_prob_diff']:.2g}, "
            f"same class {100 * check['argmax_agreement']:.1f} %",
            soft_wrap=True,
        )
    out.print(f"`emgdx predict` and `emgdx serve` now use {result.files['onnx'].name} (--backend)")


def _register_clinic_commands() -> None:
    # typer and rich only: FastAPI & co. are imported when a clinic command runs.
    from emgdx.clinic.cli import clinic_app, serve

    app.command()(serve)
    app.add_typer(clinic_app, name="clinic")


_register_clinic_commands()


def _register_federated_commands() -> None:
    # typer only: Flower is imported when a federated command runs.
    from emgdx.federated.cli import federated_app

    app.add_typer(federated_app, name="federated")


_register_federated_commands()


def _register_monitor_command() -> None:
    # typer and rich only: torch and pylsl are imported when the command runs.
    from emgdx.streaming.cli import monitor

    app.command()(monitor)


_register_monitor_command()


#: Optional packages and the extra that installs each (see pyproject.toml).
EXTRA_OF_MODULE = {
    "torch": "ml",
    "sklearn": "ml",
    "pywt": "ml",
    "safetensors": "ml",
    "matplotlib": "plots",
    "captum": "explain",
    "jinja2": "report",
    "reportlab": "report",
    "fastapi": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "sqlalchemy": "serve",
    "alembic": "serve",
    "websockets": "serve",
    "psycopg": "postgres",
    "flwr": "federated",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "pylsl": "stream",
}


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


def main() -> None:
    """Entry point of the ``emgdx`` console script."""
    try:
        app()
    except ModuleNotFoundError as exc:
        hint = missing_extra_message(exc)
        if hint is None:
            raise
        err.print(labelled("error:", "bold red", hint))
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
