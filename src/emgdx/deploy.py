"""Deployment: a fitted torch :class:`~emgdx.pipeline.Pipeline` exported as ONNX.

Only the model's forward pass is exported. The front end and the representation stay the
pipeline's own code (:meth:`Pipeline.model_inputs`), so the ONNX path sees exactly what the
torch model sees; at prediction time the exported files are run by the model adapter
:class:`emgdx.models.adapters.OnnxAdapter` (onnxruntime), with the torch model kept behind it
for explanations (captum needs gradients).

Files written into a saved pipeline folder (beside ``pipeline.json`` and ``model.safetensors``):

- ``model.onnx``: the model in float32 (inputs ``x`` and, when the model has a side input,
  ``aux``; output ``logits``; dynamic batch axis), exported with the ``torch.export``-based
  exporter of :func:`emgdx.models.export.export_onnx`.
- ``model.int8.onnx`` (optional): the same with int8 weights
  (``onnxruntime.quantization.quantize_dynamic``; activations are quantised on the fly).
- ``onnx.json``: the SHA-256 and size of each file, the SHA-256 of the torch weights they were
  exported from and the parity measured at export. Loading checks both hashes, so an ONNX file
  that was changed, or one exported from other weights, is refused.

Backends of :meth:`Pipeline.load` (``backend=``): ``"torch"``, ``"onnx"`` (float32),
``"onnx-int8"``, or ``"auto"``: ``"onnx"`` when the folder has ``model.onnx`` and onnxruntime
imports, else ``"torch"`` (:func:`emgdx.models.adapters.attach_backend`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emgdx.config import atomic_write
from emgdx.errors import ConfigError
from emgdx.models.adapters import (
    INT8_FILE,
    MANIFEST_FILE,
    MAX_BATCH,
    ONNX_FILE,
    ONNX_FORMAT,
    DeployError,
    ModelAdapter,
    OnnxModel,
    sha256_file,
)

if TYPE_CHECKING:
    from emgdx.pipeline import Pipeline
    from emgdx.recording import Windows

__all__ = [
    "INT8_FILE",
    "MANIFEST_FILE",
    "ONNX_FILE",
    "DeployError",
    "ExportResult",
    "OnnxModel",
    "export_pipeline",
    "parity",
    "quantize_int8",
]

# Example batch for the exporter: >= 2, so the batch dimension is not specialised to 1.
_EXPORT_BATCH = 2


@contextlib.contextmanager
def _quiet_tools() -> Iterator[None]:
    """Silence known-harmless messages of the exporter and the quantiser."""
    # torch.onnx lists the torchvision ops it skips; onnxruntime suggests a pre-processing
    # step (shape inference) that cannot infer the exported graph's shapes anyway
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry.level

    def drop(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    registry.setLevel(logging.ERROR)
    logging.getLogger().addFilter(drop)
    try:
        with warnings.catch_warnings():
            # torch-internal deprecation inside the traced LSTM graph
            warnings.filterwarnings("ignore", message=".*_check_is_size.*", category=FutureWarning)
            yield
    finally:
        registry.setLevel(level)
        logging.getLogger().removeFilter(drop)


@dataclass
class ExportResult:
    """What :func:`export_pipeline` wrote and measured."""

    folder: Path
    files: dict[str, Path] = field(default_factory=dict)  # backend -> file
    sizes: dict[str, int] = field(default_factory=dict)  # backend -> bytes
    parity: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "files": {k: str(v) for k, v in self.files.items()},
            "bytes": dict(self.sizes),
            "parity": self.parity,
        }


def _torch_model(pipe: Pipeline) -> ModelAdapter:
    """The pipeline's model as its own library runs it, if it has a forward pass to export."""
    if pipe.model_ is None:
        raise ConfigError("this pipeline is not fitted: nothing to export")
    model = pipe.model_.native()
    if not model.has_weights:
        raise DeployError(
            f"ONNX export is for torch models; {pipe.model_name!r} is a scikit-learn model, "
            "which has no ONNX export here (skl2onnx is not a dependency): it keeps running "
            "in scikit-learn"
        )
    return model


def parity(
    pipe: Pipeline, model: OnnxModel, inputs: Mapping[str, np.ndarray]
) -> dict[str, float | int]:
    """Max |p_onnx - p_torch| and argmax agreement of ``model`` with the torch model."""
    p_torch = _torch_model(pipe).predict_proba(inputs, batch_size=pipe.train.eval_batch_size)
    p_onnx = model.predict_proba(inputs, batch_size=pipe.train.eval_batch_size)
    return {
        "n": len(p_torch),
        "max_abs_prob_diff": float(np.abs(p_onnx - p_torch).max(initial=0.0)),
        "argmax_agreement": float(np.mean(p_onnx.argmax(1) == p_torch.argmax(1)))
        if len(p_torch)
        else float("nan"),
    }


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of ``src`` into ``dst``.

    Weights are stored as 8-bit integers with one scale per output filter (per channel);
    activations are quantised at run time with one scale per tensor per call. Measured on
    N2001 (docs/benchmarks.md) and chosen for it:

    - the first convolution stays float: it reads the waveform itself, whose range within a
      window spans ~200x (MUAP peaks vs baseline), and an 8-bit activation scale rounds the
      baseline away (held-out agreement with torch 94 % with it quantised, > 99 % without);
    - unsigned 8-bit weights: the same agreement as signed ones, about 3x faster in
      onnxruntime on a CPU without VNNI (u8 x u8 kernels);
    - the model is run one window per call (``OnnxModel(max_batch=1)``): the run-time
      activation scale then belongs to that window alone; in a batch, one window's large
      MUAP would coarsen every other window's input.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    first_conv = [node.name for node in graph.node if node.op_type == "Conv"][:1]
    quantize_dynamic(
        src,
        dst,
        per_channel=True,
        weight_type=QuantType.QUInt8,
        nodes_to_exclude=first_conv,
    )


def export_pipeline(
    pipe: Pipeline,
    folder: str | os.PathLike[str],
    *,
    int8: bool = False,
    check_windows: Windows | None = None,
    n_check: int = 64,
) -> ExportResult:
    """Export ``pipe``'s torch model as ONNX into its saved folder and check parity.

    Parameters
    ----------
    pipe
        A fitted torch pipeline, saved in ``folder`` (its weights' SHA-256 must equal the one in
        ``folder/pipeline.json``: the ONNX files belong to those weights).
    folder
        The saved pipeline folder.
    int8
        Also write ``model.int8.onnx`` (dynamic int8 quantisation).
    check_windows
        Windows for the parity check (through :meth:`Pipeline.model_inputs`); ``None``:
        ``n_check`` random inputs of the model's input shapes.

    Returns
    -------
    ExportResult
        Paths, sizes and parity (``max_abs_prob_diff``, ``argmax_agreement`` per backend).

    Raises
    ------
    DeployError
        Classical model, or ``folder`` holds another pipeline.
    """
    from emgdx.models.export import example_inputs, export_onnx

    torch_model = _torch_model(pipe)
    target = Path(folder)
    cfg = target / "pipeline.json"
    if not cfg.is_file():
        raise DeployError(f"{target}: not a saved pipeline (no pipeline.json)")
    recorded = json.loads(cfg.read_text()).get("weights_sha256")
    weights = pipe.weights_sha256()
    if recorded != weights:
        raise DeployError(
            f"{target}: holds other weights than this pipeline ({str(recorded)[:12]}… vs "
            f"{weights[:12]}…); save the pipeline there first"
        )
    assert pipe.input_shapes_ is not None
    model = torch_model.module.to("cpu").eval()
    result = ExportResult(folder=target)
    # Model inputs to compare backends on: the windows through the pipeline, else random.
    if check_windows is not None and len(check_windows):
        probe = pipe.model_inputs(check_windows)
    else:
        random = example_inputs(pipe.input_shapes_, n_check, seed=1)
        probe = {k: v.numpy() for k, v in random.items()}
    # Write everything under temporary names, then rename: no half-written export is left.
    written: dict[str, Path] = {}
    with _quiet_tools(), tempfile.TemporaryDirectory(prefix=".onnx.", dir=target) as tmp_dir:
        tmp = Path(tmp_dir)
        export_onnx(model, example_inputs(pipe.input_shapes_, _EXPORT_BATCH), tmp / ONNX_FILE)
        written["onnx"] = tmp / ONNX_FILE
        if int8:
            quantize_int8(tmp / ONNX_FILE, tmp / INT8_FILE)
            written["onnx-int8"] = tmp / INT8_FILE
        files: dict[str, dict[str, Any]] = {}
        for backend, path in written.items():
            model_b = OnnxModel(path, max_batch=MAX_BATCH[backend])
            result.parity[backend] = parity(pipe, model_b, probe)
            files[backend] = {
                "file": path.name,
                "sha256": sha256_file(path),
                "bytes": path.stat().st_size,
            }
        import onnxruntime
        import torch

        manifest = {
            "format": ONNX_FORMAT[0],
            "format_version": ONNX_FORMAT[1],
            "weights_sha256": weights,
            "inputs": sorted(pipe.input_shapes_),
            "input_shapes": {k: list(v) for k, v in pipe.input_shapes_.items()},
            "output": "logits",
            "files": files,
            "parity": {
                "inputs": "windows" if check_windows is not None else "random",
                **result.parity,
            },
            "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        }
        # A stale int8 file from an earlier export would not match these weights any more.
        if not int8 and (target / INT8_FILE).exists():
            (target / INT8_FILE).unlink()
        for backend, path in written.items():
            os.replace(path, target / path.name)
            result.files[backend] = target / path.name
            result.sizes[backend] = files[backend]["bytes"]
        atomic_write(target / MANIFEST_FILE, json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    return result
