"""``emgdx info``: what is in a record or a folder (rate, duration, label, subject, QC flags)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from emgdx.cli import console as ui
from emgdx.config import json_ready
from emgdx.errors import SamplingRateError

app = typer.Typer(add_completion=False)


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
    fs_hz: ui.FsHz = None,
) -> None:
    """Show rate, duration, label, subject and QC flags of a record or a whole folder."""
    from emgdx.io import UnreadableFileWarning, read, read_cohort
    from emgdx.quality import QC_FLAGS, assess_cohort
    from emgdx.recording import Cohort

    show = not as_json
    with ui.failing():
        if path.is_dir():
            with ui.progress_bar("reading", enabled=show) as cb, warnings.catch_warnings():
                # unreadable files are listed below (and in the JSON), not as Python warnings
                warnings.simplefilter("ignore", UnreadableFileWarning)
                cohort = read_cohort(path, on_progress=cb, fs_hz=fs_hz)
        else:
            cohort = Cohort.from_recordings(read(path, fs_hz=fs_hz))
        if qc:
            with ui.progress_bar("quality control", enabled=show) as cb:
                assess_cohort(cohort, on_progress=cb)

    manifest = cohort.manifest
    columns = [c for c in INFO_COLUMNS if c in manifest.columns]
    rows = [{c: json_ready(row[c]) for c in columns} for _, row in manifest.iterrows()]
    errors = [{"path": getattr(e, "path", None), "problem": str(e)} for e in cohort.errors]
    if as_json:
        ui.print_json({"records": rows, "unreadable": errors})
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
    ui.print_table(table)
    if qc:
        flagged = manifest[manifest["qc_flags"] != ""]
        counts = {f: int(manifest[f"qc_{f}"].sum()) for f in QC_FLAGS}
        detail = ", ".join(f"{f} {n}" for f, n in counts.items() if n) or "none"
        ui.out.print(f"QC: {len(flagged)} of {len(manifest)} record(s) flagged ({detail})")
    if errors:
        sys.stdout.flush()  # the table first, then the problems, also when both go to a log
        ui.err.print(Text(f"{len(errors)} file(s) could not be read:", "bold yellow"))
        for e in errors:
            ui.err.print(f"  {e['problem']}")
        if any(isinstance(e, SamplingRateError) for e in cohort.errors):
            ui.err.print("hint: give the sampling rate of files that store none with --fs-hz")


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


_CELL_FORMATS: dict[str, Callable[[Any], str]] = {
    "fs_hz": "{:g}".format,
    "duration_s": "{:.2f}".format,
    "usable_fraction": lambda v: f"{100 * v:.1f}%",
    "qc_flags": lambda v: v or "ok",
    "line_freq_hz": "{:g}".format,
}


def _format_cell(column: str, value: Any) -> str:
    return "-" if value is None else _CELL_FORMATS.get(column, str)(value)
