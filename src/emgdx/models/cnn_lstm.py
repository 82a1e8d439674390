"""CNN-LSTM on raw windows: a convolutional front end, then a bidirectional LSTM over time.

The front end (the first blocks of :class:`~emgdx.models.cnn1d.CNN1D`'s design: strided
convolution, pooling) turns a window into a short sequence of local MUAP descriptors (~20 ms
per step with the defaults); the LSTM then reads their order, i.e. the firing pattern
(recruitment, interference), which pooling alone discards.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from emgdx.errors import ConfigError
from emgdx.models._common import AuxHead, conv1d_blocks

__all__ = ["CNNLSTM"]


class CNNLSTM(nn.Module):
    """Conv1d front end + bidirectional LSTM + mean/max pooling over time + aux-aware head.

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
        Output channels of each front-end conv block (each followed by max pooling).
    first_kernel_ms, first_stride_ms
        Kernel and stride of the first (downsampling) convolution.
    kernel_size
        Kernel of the later convolutions, in time steps of their input.
    pool
        Max-pooling factor after each front-end block (the first block pools by 2).
    hidden_size
        LSTM hidden units per direction.
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
        n_filters: Sequence[int] = (16, 32, 64),
        first_kernel_ms: float = 2.5,
        first_stride_ms: float = 0.67,
        kernel_size: int = 7,
        pool: int = 4,
        hidden_size: int = 48,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if len(n_filters) < 1 or pool < 1 or hidden_size < 1:
            raise ConfigError("n_filters must be non-empty and pool, hidden_size >= 1")
        self.n_chans, self.n_times, self.fs_hz = int(n_chans), int(n_times), float(fs_hz)
        self.n_classes, self.n_aux = int(n_classes), int(n_aux)
        shape = (self.n_chans, self.n_times, fs_hz, n_filters, first_kernel_ms, first_stride_ms)
        blocks, length, in_ch = conv1d_blocks(*shape, kernel_size, pool, dropout, True)
        if length < 2:
            raise ConfigError(
                f"n_times={n_times} at fs_hz={fs_hz} leaves {length} LSTM step(s): "
                "use longer windows or fewer front-end blocks"
            )
        self.n_steps = length
        self.frontend = nn.Sequential(*blocks)
        self.lstm = nn.LSTM(in_ch, hidden_size, batch_first=True, bidirectional=True)
        self.head = AuxHead(4 * hidden_size, self.n_aux, self.n_classes, dropout)

    def forward(self, x: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[n, n_classes]`` from windows ``x [n, n_chans, n_times]`` and ``aux [n, k]``."""
        seq = self.frontend(x).transpose(1, 2)  # [n, steps, channels] for batch_first LSTM
        out, _ = self.lstm(seq)
        pooled = torch.cat([out.mean(dim=1), out.amax(dim=1)], dim=1)
        return self.head(pooled, aux)
