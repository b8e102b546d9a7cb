"""The deep-image-prior generator: a U-Net, several independent copies run as one network.

A deep image prior (Ulyanov et al.) fits a randomly initialised generator, fed a fixed noise
image, to one measurement. Fitting many slices at once means many independent networks; here
they are stacked along the channel axis and every convolution is *grouped*, so copy ``g`` only
ever sees its own channels — mathematically ``G`` separate U-Nets, computed by one set of
kernels (one launch per layer on a GPU instead of ``G``). Batch normalisation with a batch of
one normalises each channel over its own image, so it too stays per copy.

Architecture per copy: ``levels`` resolutions with ``base · 2^l`` channels, each level two
3 × 3 convolution → batch norm → LeakyReLU(0.2) blocks, average-pool down, bilinear up, skip
connections by concatenation, and a 1 × 1 convolution to one output channel (no activation).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _cat(a: torch.Tensor, b: torch.Tensor, groups: int) -> torch.Tensor:
    """Concatenate channels copy by copy: (1, G·Ca, H, W) and (1, G·Cb, H, W) → (1, G·(Ca+Cb))."""
    n, _, h, w = a.shape
    joined = torch.cat([a.reshape(n, groups, -1, h, w), b.reshape(n, groups, -1, h, w)], dim=2)
    return joined.reshape(n, -1, h, w)


class _Block(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        layers = []
        for a, b in ((c_in, c_out), (c_out, c_out)):
            layers += [nn.Conv2d(groups * a, groups * b, 3, padding=1, padding_mode="reflect",
                                 groups=groups),
                       nn.BatchNorm2d(groups * b), nn.LeakyReLU(0.2)]
        super().__init__(*layers)


class GroupedUNet(nn.Module):
    """``copies`` independent U-Nets, (1, copies·in_channels, H, W) → (copies, H, W).

    Parameters
    ----------
    copies : int
        Number of independent networks (one per image being fitted).
    in_channels : int
        Channels of each copy's fixed input noise.
    base : int
        Channels at full resolution (doubled at each coarser level).
    levels : int
        Resolutions; H and W must be divisible by ``2 ** (levels - 1)``.
    """

    def __init__(self, copies: int, *, in_channels: int = 8, base: int = 16,
                 levels: int = 4) -> None:
        super().__init__()
        if copies < 1 or levels < 2:
            raise ValueError(f"need copies ≥ 1 and levels ≥ 2, got {copies} and {levels}")
        self.copies, self.in_channels, self.levels = copies, in_channels, levels
        widths = [base * 2**level for level in range(levels)]
        self.down = nn.ModuleList([_Block(in_channels, widths[0], copies)]
                                  + [_Block(widths[i - 1], widths[i], copies)
                                     for i in range(1, levels)])
        self.up = nn.ModuleList([_Block(widths[i + 1] + widths[i], widths[i], copies)
                                 for i in reversed(range(levels - 1))])
        self.out = nn.Conv2d(copies * widths[0], copies, 1, groups=copies)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        factor = 2 ** (self.levels - 1)
        if noise.shape[1] != self.copies * self.in_channels or noise.shape[-1] % factor \
                or noise.shape[-2] % factor:
            raise ValueError(f"input must be (1, {self.copies * self.in_channels}, H, W) with H "
                             f"and W divisible by {factor}, got {tuple(noise.shape)}")
        skips = []
        x = noise
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(_cat(x, skip, self.copies))
        return self.out(x)[0]

    def input_noise(self, shape: tuple[int, int], generator: torch.Generator | None = None,
                    device=None) -> torch.Tensor:
        """The fixed input: uniform noise in [0, 0.1), shape (1, copies·in_channels, H, W)."""
        return 0.1 * torch.rand((1, self.copies * self.in_channels, *shape),
                                generator=generator, device=device)
