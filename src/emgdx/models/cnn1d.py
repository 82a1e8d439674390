"""1-D CNN on raw (per-window normalised) EMG windows, with an optional amplitude side input.

Sized for CPU training: a strided first convolution and pooling after every block cut a
6000-sample window (1 s at 6 kHz) to ~1500 steps at once and to ~50 steps after three blocks:
~14 MFLOP per window forward, ~48 k parameters, and one training epoch over ~7000 windows (one
N2001 LOSO fold) takes ~5 s on two CPU cores (batch 64, measured on the development machine).
The first kernel and stride are set in milliseconds and converted with ``fs_hz``, so the same
configuration means the same receptive field (≈ one MUAP, 5-15 ms, after the second block) at
any sampling rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from emgdx.errors import ConfigError
from emgdx.models._common import AuxHead, conv1d_blocks

__all__ = ["CNN1D"]


class CNN1D(nn.Module):
    """Conv1d-BatchNorm-ReLU-MaxPool blocks, global average + max pooling, aux-aware head.

    Parameters
    ----------
    n_chans
        Input channels (1 for one needle channel).
    n_times
        Samples per window.
    fs_hz
        Sampling rate of the windows; converts ``first_kernel_ms`` etc. to samples.
    n_classes
        Number of output logits (3, or 2 for the binary tasks).
    n_aux
        Number of scalar side inputs (e.g. log10 RMS in µV); 0 for none.
    n_filters
        Output channels of each conv block.
    first_kernel_ms, first_stride_ms
        Kernel and stride of the first convolution (the strided one that downsamples early).
    kernel_size
        Kernel of the later convolutions, in time steps of the block's (already downsampled)
        input. As the first stride is set in ms, a step has a fixed duration at any ``fs_hz``:
        with the defaults 1.3 ms in block 2 (kernel ≈ 9 ms ≈ one MUAP), 5.3 ms in block 3
        (≈ 37 ms: a MUAP and its neighbours) and 21 ms in block 4 (≈ 150 ms: firing pattern).
    pool
        Max-pooling factor after each block but the last (the last block is pooled globally).
    dropout
        Dropout before the classifier (plus a lighter spatial dropout between blocks).
    """

    def __init__(
        self,
        n_chans: int,
        n_times: int,
        fs_hz: float,
        n_classes: int = 3,
        n_aux: int = 0,
        *,
        n_filters: Sequence[int] = (16, 32, 64, 64),
        first_kernel_ms: float = 2.5,
        first_stride_ms: float = 0.67,
        kernel_size: int = 7,
        pool: int = 4,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if len(n_filters) < 2:
            raise ConfigError(f"n_filters needs at least 2 blocks, got {tuple(n_filters)}")
        if pool < 1:
            raise ConfigError(f"pool must be >= 1, got {pool}")
        self.n_chans, self.n_times, self.fs_hz = int(n_chans), int(n_times), float(fs_hz)
        self.n_classes, self.n_aux = int(n_classes), int(n_aux)
        shape = (self.n_chans, self.n_times, fs_hz, n_filters, first_kernel_ms, first_stride_ms)
        blocks, length, in_ch = conv1d_blocks(*shape, kernel_size, pool, dropout, False)
        if length < 1:
            raise ConfigError(
                f"n_times={n_times} is too short for this CNN1D at fs_hz={fs_hz}: "
                "use longer windows, fewer blocks or a smaller pool"
            )
        self.features = nn.Sequential(*blocks)
        self.head = AuxHead(2 * in_ch, self.n_aux, self.n_classes, dropout)

    def forward(self, x: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[n, n_classes]`` from windows ``x [n, n_chans, n_times]`` and ``aux [n, k]``."""
        h = self.features(x)
        # average says "how much MUAP-like activity", max says "is there one big unit"
        pooled = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)
        return self.head(pooled, aux)
