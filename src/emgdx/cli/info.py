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
    paths: Annotated[
        list[Path],
        typer.Argument(help="Record files and/or folders of records.", metavar="PATH..."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    qc: Annotated[bool, typer.Option("--qc/--no-qc", help="Run quality control.")] = True,
    fs_hz: ui.FsHz = None,
) -> None:
    """Show rate, duration, label, subject and QC flags of records and folders of records.

    Exit status: 0 when everything was read, 1 when some file could not be read (it is listed,
    the others are shown), 2 for a usage error.
    """
    from emgdx.errors import EmgdxError
    from emgdx.io import UnreadableFileWarning, read, read_cohort
    from emgdx.quality import QC_FLAGS, assess_cohort
    from emgdx.recording import Cohort

    show = not as_json
    recordings: list[Any] = []
    problems: list[tuple[str | None, Exception]] = []
    with ui.failing():
        folders = [p for p in paths if p.is_dir()]
        if folders:  # together, so that two sites' "S01" stay two subjects (read_cohort)
            with ui.progress_bar("reading", enabled=show) as cb, warnings.catch_warnings():
                # unreadable files are listed below (and in the JSON), not as warnings
                warnings.simplefilter("ignore", UnreadableFileWarning)
                found = read_cohort(
                    folders if len(folders) > 1 else folders[0], on_progress=cb, fs_hz=fs_hz
                )
            recordings += found.recordings
            problems += [(getattr(e, "path", None), e) for e in found.errors]
        for path in paths:
            if not path.is_dir():
                try:
                    recordings += read(path, fs_hz=fs_hz)
                except EmgdxError as exc:  # one bad file does not stop the others
                    problems.append((str(path), exc))
        cohort = Cohort.from_recordings(recordings)
        if qc and recordings:
            with ui.progress_bar("quality control", enabled=show) as cb:
                assess_cohort(cohort, on_progress=cb)

    manifest = cohort.manifest
    columns = [c for c in INFO_COLUMNS if c in manifest.columns]
    rows = [{c: json_ready(row[c]) for c in columns} for _, row in manifest.iterrows()]
    errors = [{"path": None if p is None else str(p), "problem": str(e)} for p, e in problems]
    if as_json:
        ui.print_json({"records": rows, "unreadable": errors})
    elif rows:
        where = str(paths[0]) if len(paths) == 1 else f"{len(paths)} paths"
        table = Table(
            title=f"{where} — {len(cohort)} record(s), {len(cohort.subjects)} subject(s)",
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
    if not as_json and not rows:
        ui.err.print(Text("no readable record", "bold red"))
    if errors:
        if not as_json:
            sys.stdout.flush()  # the table first, then the problems, also in one log
            ui.err.print(Text(f"{len(errors)} file(s) could not be read:", "bold yellow"))
            for e in errors:
                ui.err.print(f"  {e['problem']}")
            if any(isinstance(e, SamplingRateError) for _, e in problems):
                ui.err.print("hint: give the sampling rate of files that store none with --fs-hz")
        raise typer.Exit(code=1)
    if not rows:
        raise typer.Exit(code=1)


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
