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
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

ProgressCallback = Callable[[int, int], None]

__all__ = ["ProgressCallback", "progress_bar"]


@contextmanager
def progress_bar(
    description: str, *, enabled: bool = True, console: Console | None = None
) -> Iterator[ProgressCallback]:
    """Yield an ``on_progress(done, total)`` callback that drives one rich progress bar.

    With ``enabled=False`` (or no terminal) the callback does nothing, so scripts and CI logs
    stay quiet.
    """
    console = console or Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda done, total: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
