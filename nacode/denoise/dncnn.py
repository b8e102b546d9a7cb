"""The calf paper's residual denoising CNN (after DnCNN, Zhang et al. 2017), in PyTorch.

Architecture, as in the paper's Fig. 1C and its public code: reflection-padded 3 × 3
convolution to 64 channels and ReLU; 8 residual blocks, each two (reflection pad, 3 × 3
convolution, batch norm, ReLU) with an internal skip; reflection pad, 3 × 3 convolution,
batch norm, ReLU; reflection pad and a 3 × 3 convolution to one channel — the predicted
residual — added to the input (global residual). Images are (batch, 1, 80, 80), normalised
to [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(in_channels, out_channels, 3))


class ResidualBlock(nn.Module):
    """Two (pad, conv, batch norm, ReLU) stages with an internal skip connection."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, channels), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            _conv(channels, channels), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualDnCNN(nn.Module):
    """Residual DnCNN; :meth:`forward` returns ``(denoised, residual)``.

    Parameters
    ----------
    blocks : int
        Number of residual blocks (8 in the paper).
    channels : int
        Feature channels (64).
    """

    def __init__(self, blocks: int = 8, channels: int = 64) -> None:
        super().__init__()
        if blocks < 1 or channels < 1:
            raise ValueError("blocks and channels must be ≥ 1")
        self.head = nn.Sequential(_conv(1, channels), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])
        self.tail = nn.Sequential(_conv(channels, channels), nn.BatchNorm2d(channels),
                                  nn.ReLU(inplace=True), _conv(channels, 1))

    def forward(self, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoise a batch.

        Parameters
        ----------
        noisy : Tensor, shape (batch, 1, H, W)
            Normalised noisy magnitude images.

        Returns
        -------
        denoised, residual : Tensor, shape (batch, 1, H, W)
            ``denoised = noisy + residual``.
        """
        if noisy.ndim != 4 or noisy.shape[1] != 1:
            raise ValueError(f"expected (batch, 1, H, W), got {tuple(noisy.shape)}")
        residual = self.tail(self.blocks(self.head(noisy)))
        return noisy + residual, residual
