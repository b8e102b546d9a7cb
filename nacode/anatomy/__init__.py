"""Virtual subjects: anatomy, true tissue sodium concentration and matching 1H images."""

from __future__ import annotations

from nacode.anatomy.mni152 import (
    MNI152,
    block_mean,
    load_mni152,
    mixed_voxel_fraction,
    tissue_volumes,
)

__all__ = ["MNI152", "block_mean", "load_mni152", "mixed_voxel_fraction", "tissue_volumes"]
