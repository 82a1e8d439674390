"""``emgdx simulate``: write a simulated cohort with ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emgdx.cli import console as ui

app = typer.Typer(add_completion=False)


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

    with ui.failing():
        with ui.progress_bar("simulating") as cb:
            sim = simulate_cohort(
                n_subjects_per_class=subjects_per_class,
                records_per_subject=records_per_subject,
                fs_hz=fs_hz,
                duration_s=duration_s,
                seed=seed,
                on_progress=cb,
            )
        write_cohort(sim, out_dir)
    ui.out.print(
        f"wrote {len(sim.cohort)} records of {len(sim.cohort.subjects)} subjects to {out_dir}"
    )
