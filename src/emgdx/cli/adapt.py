"""``emgdx adapt``: a saved model adapted to a new site from its unlabelled records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emgdx.cli import console as ui

app = typer.Typer(add_completion=False)


@app.command()
def adapt(
    model_dir: Annotated[Path, typer.Argument(help="A folder written by `emgdx train`.")],
    data: ui.DataFolders,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the adapted pipeline.")],
    site: Annotated[
        str | None, typer.Option("--site", help="Name of the new site (default: the folder's).")
    ] = None,
    overwrite: ui.Overwrite = False,
    threads: ui.Threads = None,
    fs_hz: ui.FsHz = None,
    as_json: ui.AsJson = False,
) -> None:
    """Re-estimate the model's normalisation statistics on a new site's records (their labels,
    if any, are not read) and save the adapted pipeline."""
    ui.set_threads(threads)
    pipe = ui.load_pipeline(model_dir)
    with ui.failing():
        with ui.progress_bars("reading", "preparing", enabled=not as_json) as hooks:
            cohort = ui.read_folder(data, fs_hz, hooks["reading"])
            name = site or (data[0].resolve().name if len(data) == 1 else None)
            pipe.adapt(cohort, site=name, on_progress=hooks["preparing"])
        pipe.save(out_dir, overwrite=overwrite)
    summary = {"model": str(out_dir), **(pipe.adaptation_ or {})}
    if as_json:
        ui.print_json(summary)
        return
    ui.out.print(
        f"{summary['method']} on {summary['n_windows']} windows of {summary['n_records']} "
        f"records{f' ({name})' if name else ''}; adapted model: {out_dir}",
        soft_wrap=True,
    )
