"""The ``emgdx`` command: one entry point, one module per subcommand, imported on demand.

``emgdx --help`` lists :data:`COMMANDS` without importing them; a command's module (and the
libraries it needs: torch, scipy, FastAPI, Flower ...) is imported only when that command runs.
Shared consoles, option types and helpers are in :mod:`emgdx.cli.console`.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Annotated, TextIO

import click
import typer
from typer.core import TyperGroup

from emgdx import __version__
from emgdx.cli.console import labelled

__all__ = ["COMMANDS", "app", "main"]

#: ``name -> (module, one-line help)``; each module's ``app`` is a Typer app.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("emgdx.cli.info", "Rate, duration, label, subject and QC flags of records."),
    "simulate": ("emgdx.cli.simulate", "Write a simulated cohort with ground truth."),
    "demo": ("emgdx.cli.demo", "The main job on a simulated cohort: QC, training, evaluation."),
    "train": ("emgdx.cli.train", "Fit a pipeline on a folder of records and save it."),
    "evaluate": ("emgdx.cli.evaluate", "Subject-wise cross-validation with a report."),
    "predict": ("emgdx.cli.predict", "Diagnosis of new files with a saved pipeline."),
    "explain": ("emgdx.cli.explain", "Evidence on the signal behind a decision."),
    "report": ("emgdx.cli.report", "Clinical report (HTML or PDF) of a record or a visit."),
    "adapt": ("emgdx.cli.adapt", "Adapt a saved model to a new site's unlabelled records."),
    "export": ("emgdx.cli.export", "A saved torch model as ONNX (optionally int8)."),
    "monitor": ("emgdx.cli.monitor", "Judge a live EMG stream (LSL) or a replayed file."),
    "serve": ("emgdx.cli.serve", "Run the clinic service: API and web page."),
    "clinic": ("emgdx.cli.clinic", "Clinics, API tokens and the service's database."),
    "federated": ("emgdx.cli.federated", "Federated training across sites (Flower)."),
}


class _LazyGroup(TyperGroup):
    """A command group that imports a command's module only to run (or describe) it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[name][0])
        command = typer.main.get_command(module.app)
        command.name = name
        return command

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's plain layout: typer's rich one would import every command to list it
        click.Group.format_help(self, ctx, formatter)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in COMMANDS.items()])


app = typer.Typer(
    name="emgdx",
    cls=_LazyGroup,
    help="emgdx: an objective, explained second opinion on needle EMG.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"emgdx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """emgdx: read, check and preprocess EMG; classify healthy / neurogenic / myopathy."""
    warnings.showwarning = _one_line_warning


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A warning as the user reads it: one line, no source path, no echoed code."""
    text = " ".join(str(message).split())
    (file or sys.stderr).write(f"warning: {text}\n")


def main() -> None:
    """Entry point of the ``emgdx`` console script."""
    try:
        app()
    except ModuleNotFoundError as exc:
        from emgdx.cli.console import err, missing_extra_message

        hint = missing_extra_message(exc)
        if hint is None:
            raise
        err.print(labelled("error:", "bold red", hint))
        raise SystemExit(2) from None
