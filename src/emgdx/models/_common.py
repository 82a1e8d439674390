"""Pieces every torch model shares: the amplitude (``aux``) branch + classifier head, conv blocks.

Kept private: the public surface is the model classes and the registry in
:mod:`emgdx.models`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from emgdx.errors import ConfigError

__all__ = [
    "AuxHead",
    "check_dropout",
    "conv1d_blocks",
    "ms_to_samples",
]


def ms_to_samples(ms: float, fs_hz: float, *, minimum: int = 1) -> int:
    """Round a duration in milliseconds to a whole number of samples at ``fs_hz``."""
    if fs_hz <= 0:
        raise ConfigError(f"fs_hz must be > 0, got {fs_hz}")
    if ms <= 0:
        raise ConfigError(f"durations must be > 0 ms, got {ms}")
    return max(minimum, round(ms * 1e-3 * fs_hz))


def check_dropout(dropout: float) -> float:
    """Return ``dropout`` if it is a probability in [0, 1), else raise ConfigError."""
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    return float(dropout)


def conv1d_blocks(
    n_chans: int,
    n_times: int,
    fs_hz: float,
    n_filters: Sequence[int],
    first_kernel_ms: float,
    first_stride_ms: float,
    kernel_size: int,
    pool: int,
    dropout: float,
    pool_last: bool,
) -> tuple[list[nn.Module], int, int]:
    """``(blocks, output length, channels)``: Conv1d-BatchNorm-ReLU-MaxPool-Dropout1d blocks of
    the waveform models, the first strided in ms and pooled by 2, the last unpooled unless
    ``pool_last``; they stop early once the length is down to nothing (< 1)."""
    if n_chans < 1 or n_times < 1:
        raise ConfigError(f"n_chans and n_times must be >= 1, got {n_chans}, {n_times}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        # odd kernels with "same" padding keep the length arithmetic simple
        raise ConfigError(f"kernel_size must be odd and >= 1, got {kernel_size}")
    check_dropout(dropout)
    first_kernel = ms_to_samples(first_kernel_ms, fs_hz, minimum=3)
    first_stride = ms_to_samples(first_stride_ms, fs_hz)
    blocks: list[nn.Module] = []
    in_ch, length = n_chans, (n_times - first_kernel) // first_stride + 1
    for i, out_ch in enumerate(n_filters):
        conv = (
            nn.Conv1d(in_ch, out_ch, first_kernel, stride=first_stride, bias=False)
            if i == 0
            else nn.Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False)
        )
        layers: list[nn.Module] = [conv, nn.BatchNorm1d(out_ch), nn.ReLU()]
        if pool_last or i < len(n_filters) - 1:
            p = 2 if i == 0 else pool
            layers += [nn.MaxPool1d(p), nn.Dropout1d(dropout / 3)]
            length //= p
        blocks.append(nn.Sequential(*layers))
        in_ch = out_ch
        if length < 1:
            break
    return blocks, length, in_ch


class AuxHead(nn.Module):
    """Classifier head that joins the network's features with scalar side inputs (``aux``).

    ``aux`` carries amplitude scalars (e.g. log10 RMS in µV before per-window normalisation):
    amplitude is diagnostic (large neurogenic MUAPs) but, fed in through the waveform's scale,
    it dominates what a CNN learns. Kept apart, it enters here through a small MLP. The aux
    branch starts with batch norm so that its scale is learnt from the training data only.

    Parameters
    ----------
    n_features
        Width of the feature vector the network's body produces.
    n_aux
        Number of aux scalars (0: no aux branch; ``forward`` then ignores ``aux``).
    n_classes
        Number of output logits.
    dropout
        Dropout before the final linear layer.
    aux_hidden
        Width of the aux MLP.
    """

    def __init__(
        self, n_features: int, n_aux: int, n_classes: int, dropout: float, aux_hidden: int = 16
    ) -> None:
        super().__init__()
        if n_classes < 2:
            raise ConfigError(f"n_classes must be >= 2, got {n_classes}")
        if n_aux < 0:
            raise ConfigError(f"n_aux must be >= 0, got {n_aux}")
        self.n_aux = int(n_aux)
        self.aux: nn.Module | None = None
        width = n_features
        if self.n_aux > 0:
            # one ReLU instance per use: captum's DeepLift breaks on shared activation modules
            self.aux = nn.Sequential(
                nn.BatchNorm1d(self.n_aux), nn.Linear(self.n_aux, aux_hidden), nn.ReLU()
            )
            width += aux_hidden
        self.classifier = nn.Sequential(
            nn.Dropout(check_dropout(dropout)), nn.Linear(width, n_classes)
        )

    def forward(self, features: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[n, n_classes]`` from body features ``[n, n_features]`` and ``aux [n, k]``."""
        if self.aux is not None:
            if aux is None:
                raise ValueError(f"this model was built with n_aux={self.n_aux}; pass aux")
            features = torch.cat([features, self.aux(aux)], dim=1)
        return self.classifier(features)
