"""``emgdx explain``: why the model decided what it did, on the signal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from emgdx.cli import console as ui
from emgdx.config import json_ready
from emgdx.errors import EmgdxError

app = typer.Typer(add_completion=False)


@app.command()
def explain(
    model_dir: Annotated[Path, typer.Argument(help="A folder written by `emgdx train`.")],
    file: Annotated[Path, typer.Argument(help="A record file to explain.")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the figures and explanation.json.")
    ] = Path("explanation"),
    method: ui.ExplainMethod = "integrated_gradients",
    target: Annotated[
        str | None,
        typer.Option("--target", help="Class to explain (default: the predicted class)."),
    ] = None,
    segments: Annotated[int, typer.Option("--segments", min=1, help="Top segments.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    fs_hz: ui.FsHz = None,
) -> None:
    """Why the model decided what it did: evidence on the signal, figures and top segments."""
    import numpy as np

    from emgdx.explain import attribute_record, feature_importance, top_segments
    from emgdx.explain import figures as figs

    pipe = ui.load_pipeline(model_dir)
    records, problems = ui.read_records([file], fs_hz)
    if problems:
        raise ui.fail(EmgdxError(problems[0]))
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    results: list[dict[str, Any]] = []
    with ui.failing(), ui.progress_bar("explaining", enabled=not as_json) as step:
        step(0, len(records))
        if pipe.model_ is not None and pipe.model_.explanation == "feature_importance":
            importance = feature_importance(pipe, method="model")
            fig_path = out_dir / "feature_importance.png"
            figs.figure_feature_importance(importance).savefig(fig_path, dpi=130)
            written.append(str(fig_path))
            results.append({"feature_importance": importance.head(15).to_dict(orient="records")})
        for done, rec in enumerate(records, start=1):
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
            step(done, len(records))
    summary = {"model": pipe.model_name, "file": str(file), "records": results}
    (out_dir / "explanation.json").write_text(json.dumps(json_ready(summary), indent=2) + "\n")
    if as_json:
        ui.print_json(summary)
        return
    for r in results:
        if "record_id" not in r:
            continue
        probs = ", ".join(f"{k} {v:.2f}" for k, v in r["probabilities"].items())
        ui.out.print(
            Text.assemble(
                (r["record_id"], "bold"),
                ": evidence for ",
                (r["explained_class"], "bold"),
                f" ({probs})",
            )
        )
        for i, seg in enumerate(r["top_segments"], start=1):
            ui.out.print(
                f"  {i}. {seg['start_s']:.3f}–{seg['end_s']:.3f} s: "
                f"{100 * seg['share']:.0f} % of the evidence, peak {seg['peak_uv']:.0f} µV"
            )
    ui.out.print(f"figures: {', '.join(written)}")
