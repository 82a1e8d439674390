"""``emgdx export``: the model as ONNX (optionally int8) for onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emgdx.cli import console as ui
from emgdx.errors import ConfigError

app = typer.Typer(add_completion=False)


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
        raise ui.fail(ConfigError("choose a format: --onnx (the only one so far)"))
    pipe = ui.load_pipeline(model_dir)
    with ui.failing(ImportError), ui.progress_bar("exporting", enabled=not as_json) as step:
        step(0, 1)  # a log sees that the export (and its parity check) started
        result = export_pipeline(pipe, model_dir, int8=int8)
        step(1, 1)
    if as_json:
        ui.print_json(result.to_dict())
        return
    for backend, path in result.files.items():
        check = result.parity[backend]
        ui.out.print(
            f"{path}  {result.sizes[backend] / 1024:.0f} KiB  parity with torch on "
            f"{check['n']} random inputs: max |Δp| {check['max_abs_prob_diff']:.2g}, "
            f"same class {100 * check['argmax_agreement']:.1f} %",
            soft_wrap=True,
        )
    ui.out.print(
        f"`emgdx predict` and `emgdx serve` now use {result.files['onnx'].name} (--backend)"
    )
