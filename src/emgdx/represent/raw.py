"""Raw waveform representation: per-window normalised shape plus log amplitude on the side.

First experiments on N2001 (docs/design.md) showed that a CNN fed fixed-scale raw windows
learns amplitude and calls moderate-contraction controls neurogenic, while the same network fed
the per-window normalised waveform plus the log amplitude as a separate input did much better.
This representation produces exactly that pair: ``x`` carries the shape, ``aux`` the scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from emgdx.config import check_fields
from emgdx.normalise import normalise_windows
from emgdx.represent._common import ReprBase

__all__ = ["RawRepr"]


@dataclass(frozen=True)
class RawRepr(ReprBase):
    """Each window normalised by its own statistics, with log amplitude scalars in ``aux``.

    Parameters
    ----------
    normalise
        ``"zscore"`` (mean / standard deviation of the window), ``"robust"`` (median /
        interquartile range of the window) or ``"none"`` (µV kept, for comparison runs).
    aux
        Amplitude scalars of the *un-normalised* window put into ``aux`` (log10 µV), any of
        ``log_rms``, ``log_mav``, ``log_p2p``, ``log_p99``; empty for no ``aux`` input.
    clip
        Symmetric clip of the normalised values (in normalised units) or ``None``. Robust
        scaling of spiky EMG gives peaks of tens of IQRs; a clip bounds them for training.

    Examples
    --------
    >>> rep = RawRepr()
    >>> out = rep.transform(np.ones((2, 100), dtype=np.float32) * 10.0, fs_hz=1000.0)
    >>> out["x"].shape, out["aux"].tolist()
    ((2, 1, 100), [[1.0], [1.0]])
    """

    name: ClassVar[str] = "raw"

    normalise: Literal["zscore", "robust", "none"] = "zscore"
    aux: tuple[str, ...] = ("log_rms",)
    clip: float | None = None

    def __post_init__(self) -> None:
        problems = check_fields(self, optional="clip", positive="clip")
        self._check(problems, ("zscore", "robust", "none"))

    def _x_shape(self, n_times: int, fs_hz: float) -> tuple[int, ...]:
        """``(1, T)``: the waveform itself."""
        return (1, n_times)

    def _x(self, arr: np.ndarray, fs_hz: float) -> np.ndarray:
        """``[n, 1, T]``: every window normalised (``fs_hz`` is checked but not used)."""
        x = normalise_windows(arr, self.normalise)
        if self.clip is not None:
            np.clip(x, -self.clip, self.clip, out=x)
        return x[:, None, :]
