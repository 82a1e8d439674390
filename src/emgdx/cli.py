"""The ``emgdx`` command: one entry point, one subcommand per job.

``emgdx info PATH``        what is in a record or a folder (rate, duration, label, QC flags)
``emgdx simulate OUT_DIR`` write a simulated cohort with ground truth
``emgdx demo``             the main job on the embedded default (simulated) cohort
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from emgdx import __version__
from emgdx.errors import EmgdxError, SamplingRateError
from emgdx.progress import progress_bar, progress_bars

app = typer.Typer(
    name="emgdx",
    help="emgdx: an objective, explained second opinion on needle EMG.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages stay whole lines in logs


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
    err.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=2)


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _clean(value: Any) -> Any:
    """NaN/None-safe conversion of manifest cells for JSON."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    return value


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
    rows = [{c: _clean(row[c]) for c in columns} for _, row in manifest.iterrows()]
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
    (out if out.is_terminal else Console(width=200)).print(table)
    if qc:
        flagged = manifest[manifest["qc_flags"] != ""]
        counts = {f: int(manifest[f"qc_{f}"].sum()) for f in QC_FLAGS}
        detail = ", ".join(f"{f} {n}" for f, n in counts.items() if n) or "none"
        out.print(f"QC: {len(flagged)} of {len(manifest)} record(s) flagged ({detail})")
    if errors:
        sys.stdout.flush()  # the table first, then the problems, also when both go to a log
        err.print(f"[bold yellow]{len(errors)} file(s) could not be read:[/]")
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


@app.command()
def demo(
    seed: int = 0,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Also write the simulated records here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
) -> None:
    """Run the main job on a simulated cohort (no download) and print a summary."""
    from emgdx.demo import run_demo

    show = not as_json
    with progress_bars("simulate", "quality", "preprocess", enabled=show) as hooks:
        try:
            result = run_demo(seed=seed, out_dir=out_dir, on_progress=hooks)
        except EmgdxError as exc:
            raise _fail(exc) from exc

    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, default=_json_default) + "\n")
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
    timing = ", ".join(f"{k} {v:.2f} s" for k, v in summary["seconds"].items())
    out.print(f"time: {timing}")
    if out_dir is not None:
        out.print(f"records written to {out_dir}")


def main() -> None:
    """Entry point of the ``emgdx`` console script."""
    app()


if __name__ == "__main__":
    main()
