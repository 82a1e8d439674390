"""Deployment: a fitted torch :class:`~emgdx.pipeline.Pipeline` as ONNX, run by onnxruntime.

Only the model's forward pass is replaced. Quality control, preprocessing, the fitted
normalisation and the representation stay the pipeline's own code
(:meth:`Pipeline.model_inputs`), so the ONNX path sees exactly what the torch model sees, and
the torch model stays loaded for explanations (captum needs gradients).

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
imports, else ``"torch"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from emgdx.errors import ConfigError, EmgdxError

if TYPE_CHECKING:
    from emgdx.pipeline import Pipeline
    from emgdx.recording import Windows

__all__ = [
    "BACKENDS",
    "INT8_FILE",
    "MANIFEST_FILE",
    "MAX_BATCH",
    "ONNX_FILE",
    "Backend",
    "DeployError",
    "ExportResult",
    "OnnxModel",
    "attach_backend",
    "export_pipeline",
    "onnx_available",
    "parity",
    "quantize_int8",
    "read_manifest",
    "resolve_backend",
]

Backend = Literal["auto", "torch", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx", "onnx-int8")
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
MANIFEST_FILE = "onnx.json"
_FORMAT = "emgdx-onnx"
_FORMAT_VERSION = 1
_FILES = {"onnx": ONNX_FILE, "onnx-int8": INT8_FILE}
# Example batch for the exporter: >= 2, so the batch dimension is not specialised to 1.
_EXPORT_BATCH = 2


class DeployError(EmgdxError):
    """An export or ONNX model that cannot be used (classical model, tampered file, …)."""


def onnx_available() -> bool:
    """Whether onnxruntime imports (the ``onnx`` extra is installed)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextlib.contextmanager
def _quiet_tools() -> Iterator[None]:
    """Silence known-harmless messages of the exporter and the quantiser."""
    # torch.onnx lists the torchvision ops it skips; onnxruntime suggests a pre-processing
    # step (shape inference) that cannot infer the exported graph's shapes anyway
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry.level
    drop = _DropMessage("pre-processing before quantization")
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


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


class OnnxModel:
    """An onnxruntime session over one exported model, with torch-like batched prediction.

    Parameters
    ----------
    path
        The ``.onnx`` file.
    threads
        Intra-op threads; ``None``: as many as torch uses (``torch.get_num_threads()``), so
        switching backend does not change the machine's load.
    max_batch
        Most windows per session call whatever ``batch_size`` asks; 1 for the int8 model
        (see :func:`quantize_int8`: its activation scales are taken per call, so one window
        per call keeps a window's result independent of the other windows in the batch).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int | None = None,
        max_batch: int | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise DeployError(
                "the ONNX backend needs onnxruntime: pip install 'emgdx[onnx]'"
            ) from exc
        if threads is None:
            import torch

            threads = torch.get_num_threads()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.input_names = tuple(node.name for node in self.session.get_inputs())
        self.max_batch = max_batch

    def logits(self, inputs: Mapping[str, np.ndarray], *, batch_size: int = 256) -> np.ndarray:
        """Logits ``[n, n_classes]`` (float32), ``batch_size`` rows per session call."""
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise ConfigError(f"{self.path.name} needs inputs {list(self.input_names)}")
        arrays = {name: np.asarray(inputs[name], dtype=np.float32) for name in self.input_names}
        n = len(next(iter(arrays.values())))
        if self.max_batch is not None:
            batch_size = min(batch_size, self.max_batch)
        out = []
        for start in range(0, n, max(1, batch_size)):
            feed = {
                name: np.ascontiguousarray(a[start : start + batch_size])
                for name, a in arrays.items()
            }
            out.append(np.asarray(self.session.run(["logits"], feed)[0]))
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    def predict_proba(
        self, inputs: Mapping[str, np.ndarray], *, batch_size: int = 256
    ) -> np.ndarray:
        """Class probabilities ``[n, n_classes]`` (float64), the softmax of :meth:`logits`."""
        return _softmax(self.logits(inputs, batch_size=batch_size).astype(np.float64))


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


def _torch_inputs_check(pipe: Pipeline) -> None:
    if not pipe.fitted:
        raise ConfigError("this pipeline is not fitted: nothing to export")
    if pipe.kind != "torch":
        raise DeployError(
            f"ONNX export is for torch models; {pipe.model_name!r} is a scikit-learn model, "
            "which has no ONNX export here (skl2onnx is not a dependency): it keeps running "
            "in scikit-learn"
        )


def _probe_inputs(pipe: Pipeline, windows: Windows | None, n: int, seed: int) -> dict[str, Any]:
    """Model inputs to compare backends on: ``windows`` through the pipeline, else random."""
    if windows is not None and len(windows):
        return pipe.model_inputs(windows)
    from emgdx.models.export import example_inputs

    assert pipe.input_shapes_ is not None
    return {k: v.numpy() for k, v in example_inputs(pipe.input_shapes_, n, seed=seed).items()}


def _torch_proba(pipe: Pipeline, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    from emgdx.training import predict_proba

    return predict_proba(
        pipe.model_, inputs, batch_size=pipe.train.eval_batch_size, device="cpu"
    ).astype(np.float64)


def parity(
    pipe: Pipeline, model: OnnxModel, inputs: Mapping[str, np.ndarray]
) -> dict[str, float | int]:
    """Max |p_onnx - p_torch| and argmax agreement of ``model`` with the torch model."""
    p_torch = _torch_proba(pipe, inputs)
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


#: Windows per session call of each ONNX backend (``None``: as many as asked).
MAX_BATCH: dict[str, int | None] = {"onnx": None, "onnx-int8": 1}


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

    _torch_inputs_check(pipe)
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
    model = pipe.model_.to("cpu").eval()
    result = ExportResult(folder=target)
    probe = _probe_inputs(pipe, check_windows, n_check, seed=1)
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
                "sha256": _sha256(path),
                "bytes": path.stat().st_size,
            }
        import onnxruntime
        import torch

        manifest = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
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
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
        os.replace(tmp / MANIFEST_FILE, target / MANIFEST_FILE)
    return result


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``onnx.json`` of a saved pipeline folder, or ``None`` when there is none."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DeployError(f"{path}: not valid JSON: {exc}") from exc
    if doc.get("format") != _FORMAT or doc.get("format_version") != _FORMAT_VERSION:
        raise DeployError(f"{path}: unsupported format {doc.get('format')!r}")
    return dict(doc)


def resolve_backend(folder: str | os.PathLike[str], backend: str, kind: str = "torch") -> str:
    """The backend ``backend`` means for ``folder``: ``"auto"`` becomes ``"onnx"`` or
    ``"torch"``; explicit ONNX backends are checked to be available."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if kind != "torch":
        if backend in ("onnx", "onnx-int8"):
            raise DeployError(f"backend {backend!r} is for torch models only")
        return "torch"
    if backend == "auto":
        has = (Path(folder) / ONNX_FILE).is_file() and (Path(folder) / MANIFEST_FILE).is_file()
        return "onnx" if has and onnx_available() else "torch"
    if backend != "torch":
        if not onnx_available():
            raise DeployError(f"backend {backend!r} needs onnxruntime: pip install 'emgdx[onnx]'")
        if not (Path(folder) / _FILES[backend]).is_file():
            raise DeployError(
                f"{folder}: no {_FILES[backend]} (run `emgdx export {folder} --onnx"
                + (" --int8`)" if backend == "onnx-int8" else "`)")
            )
    return backend


def attach_backend(
    pipe: Pipeline, folder: str | os.PathLike[str], backend: str
) -> tuple[str, OnnxModel | None]:
    """``(backend, model)`` for ``pipe`` loaded from ``folder``: the backend ``backend``
    resolves to and its checked :class:`OnnxModel` (``None`` for torch).

    Raises
    ------
    PipelineLoadError
        The ONNX file's SHA-256 differs from ``onnx.json``, or it was exported from other
        weights than ``pipe``'s.
    DeployError
        An explicitly requested ONNX backend without its file or without onnxruntime.
    """
    from emgdx.pipeline import PipelineLoadError

    chosen = resolve_backend(folder, backend, pipe.kind)
    if chosen == "torch":
        return chosen, None
    try:
        manifest = read_manifest(folder)
    except DeployError as exc:
        raise PipelineLoadError(str(exc)) from exc
    if manifest is None:
        raise PipelineLoadError(f"{folder}: no {MANIFEST_FILE} (export again with `emgdx export`)")
    path = Path(folder) / _FILES[chosen]
    entry = manifest.get("files", {}).get(chosen)
    if not isinstance(entry, dict):
        raise PipelineLoadError(f"{folder}/{MANIFEST_FILE}: no entry for {path.name}")
    digest = _sha256(path)
    if digest != entry.get("sha256"):
        raise PipelineLoadError(
            f"{path}: SHA-256 {digest[:12]}… differs from the one recorded in {MANIFEST_FILE}: "
            "the file was changed or corrupted"
        )
    if manifest.get("weights_sha256") != pipe.weights_sha256():
        raise PipelineLoadError(
            f"{path}: exported from other weights than {Path(folder) / 'model.safetensors'}; "
            "export again with `emgdx export`"
        )
    return chosen, OnnxModel(path, max_batch=MAX_BATCH[chosen])
