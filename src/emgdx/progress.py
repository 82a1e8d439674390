"""Progress bars for long-running steps, as plain ``on_progress(done, total)`` callbacks.

Library functions take an optional ``on_progress`` callback and know nothing about terminals;
the CLI turns that callback into a rich progress bar on stderr (so ``--json`` output on stdout
stays clean).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

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

ProgressCallback = Callable[[int, int], None]

__all__ = ["ProgressCallback", "progress_bar", "progress_bars"]


@contextmanager
def progress_bars(
    *steps: str, enabled: bool = True, console: Console | None = None
) -> Iterator[dict[str, ProgressCallback]]:
    """Yield one ``on_progress(done, total)`` callback per step, all drawn in one live display.

    A step's bar appears when its callback is first called, so bars show up in the order the
    work happens. With ``enabled=False`` (or no terminal) the callbacks do nothing, so scripts
    and CI logs stay quiet.
    """
    console = console or Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield {step: _ignore for step in steps}
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
