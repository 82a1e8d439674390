"""Export torch models to ``torch.export`` programs and ONNX, with a dynamic batch dimension.

Every registered torch model goes through these in the test suite (as braindecode walks its
model table through ``torch.export``), so a model that cannot be deployed fails a test rather
than a hospital's installation. ONNX needs the ``onnx`` extra (onnx, onnxscript; onnxruntime
to run it).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emgdx.config import atomic_write
from emgdx.errors import ConfigError, require

__all__ = ["example_inputs", "export_onnx", "export_program", "input_names", "onnx_logits"]


def input_names(model: nn.Module) -> tuple[str, ...]:
    """The named inputs ``model.forward`` uses: ``("x",)``, or ``("x", "aux")`` when ``n_aux>0``."""
    return ("x", "aux") if int(getattr(model, "n_aux", 0)) > 0 else ("x",)


def example_inputs(
    input_shapes: Mapping[str, Sequence[int]], n: int = 2, *, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random float32 inputs ``{name: [n, *shape]}`` for tracing and export tests.

    ``n`` should be >= 2: a batch of one would let the exporter specialise the batch dimension.
    """
    gen = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn((n, *(int(s) for s in shape)), generator=gen)
        for name, shape in input_shapes.items()
    }


def _args(model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    names = input_names(model)
    missing = [name for name in names if name not in inputs]
    if missing:
        raise ConfigError(f"{type(model).__name__} needs inputs {list(names)}; missing {missing}")
    return tuple(inputs[name] for name in names)


@contextlib.contextmanager
def _exporting(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode, known-harmless warnings of the torch exporters silenced."""
    model.eval()
    with warnings.catch_warnings():
        # nn.LSTM re-assigns its flattened weights while tracing
        warnings.filterwarnings("ignore", message=".*were assigned during export.*")
        # inputs sharing the one "batch" axis name: the name is kept, the warning is noise
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints.*")
        # torch-internal pytree deprecation, not our code
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        yield


def _dynamic_batch(names: Sequence[str]) -> dict[str, dict[int, torch.export.Dim]]:
    batch = torch.export.Dim("batch")  # one symbol: every input shares the batch size
    return {name: {0: batch} for name in names}


def export_program(
    model: nn.Module, inputs: Mapping[str, torch.Tensor]
) -> torch.export.ExportedProgram:
    """``torch.export.export`` the model in eval mode with a dynamic batch dimension.

    Parameters
    ----------
    model
        A model whose ``forward(x, aux=None)`` returns logits.
    inputs
        Example inputs by name (batch of at least 2), e.g. from :func:`example_inputs`.
    """
    args = _args(model, inputs)
    with _exporting(model):
        return torch.export.export(model, args, dynamic_shapes=_dynamic_batch(input_names(model)))


def export_onnx(
    model: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """Export the model (eval mode) to ONNX with named inputs and a dynamic batch dimension.

    Inputs are named ``x`` (and ``aux``), the output ``logits``; softmax is not included, as
    in torch. Uses the ``torch.export``-based exporter.

    Parameters
    ----------
    model
        A model whose ``forward(x, aux=None)`` returns logits.
    inputs
        Example inputs by name (batch of at least 2).
    path
        Where to write the ``.onnx`` file (written to a temporary name, then renamed, so no
        half-written file is left behind); ``None`` to only return the bytes.

    Returns
    -------
    bytes
        The serialised ONNX model.
    """
    require("onnx", "ONNX export")
    require("onnxscript", "ONNX export")
    names = input_names(model)
    with _exporting(model):
        program = torch.onnx.export(
            model,
            _args(model, inputs),
            None,
            input_names=list(names),
            output_names=["logits"],
            dynamic_shapes={name: {0: "batch"} for name in names},
            dynamo=True,
            verbose=False,
        )
    if program is None:  # pragma: no cover - only the legacy exporter returns None
        raise RuntimeError("torch.onnx.export returned no program")
    data = program.model_proto.SerializeToString()
    if path is not None:
        atomic_write(Path(path), data)
    return data


def onnx_logits(data: bytes, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Run an exported ONNX model in onnxruntime (CPU) and return its logits."""
    ort = require("onnxruntime", "running ONNX models")
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    feed = {
        node.name: np.ascontiguousarray(inputs[node.name], dtype=np.float32)
        for node in session.get_inputs()
    }
    return np.asarray(session.run(["logits"], feed)[0])
