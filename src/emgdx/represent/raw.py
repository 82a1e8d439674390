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

from emgdx.errors import ConfigError
from emgdx.normalise import normalise_windows
from emgdx.represent._common import (
    ReprBase,
    amplitude_scalars,
    check_aux,
    check_fs,
    check_windows,
)

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
        if self.normalise not in ("zscore", "robust", "none"):
            raise ConfigError(
                f"raw: normalise must be 'zscore', 'robust' or 'none', got {self.normalise!r}"
            )
        object.__setattr__(self, "aux", tuple(self.aux))
        check_aux(self.aux, "raw")
        if self.clip is not None and not (isinstance(self.clip, int | float) and self.clip > 0):
            raise ConfigError(f"raw: clip must be a positive number or None, got {self.clip!r}")

    def output_shape(self, n_times: int, fs_hz: float) -> dict[str, tuple[int, ...]]:
        """Shape of each input without the batch dimension: ``x`` ``(1, T)``, ``aux`` ``(k,)``."""
        check_fs(fs_hz)
        shapes: dict[str, tuple[int, ...]] = {"x": (1, int(n_times))}
        if self.aux:
            shapes["aux"] = (len(self.aux),)
        return shapes

    def transform(self, data: np.ndarray, fs_hz: float) -> dict[str, np.ndarray]:
        """Normalise every window and compute its amplitude scalars.

        Parameters
        ----------
        data
            ``[n, T]`` windows in µV.
        fs_hz
            Sampling rate (checked; the waveform itself does not depend on it).

        Returns
        -------
        dict
            ``x``: ``[n, 1, T]`` float32; ``aux``: ``[n, k]`` float32 when ``aux`` is set.
        """
        check_fs(fs_hz)
        arr = check_windows(data, self.name)
        x = normalise_windows(arr, self.normalise)
        if self.clip is not None:
            np.clip(x, -self.clip, self.clip, out=x)
        out = {"x": x[:, None, :]}
        if self.aux:
            out["aux"] = amplitude_scalars(arr, self.aux)
        return out
