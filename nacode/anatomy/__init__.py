"""Virtual subjects: anatomy, true tissue sodium concentration and matching 1H images."""

from __future__ import annotations

from nacode.anatomy.brain import brain_subject
from nacode.anatomy.breast import breast_subject
from nacode.anatomy.calf import MUSCLES, calf_subject
from nacode.anatomy.mni152 import (
    MNI152,
    block_mean,
    load_mni152,
    mixed_voxel_fraction,
    tissue_volumes,
)
from nacode.anatomy.subject import Subject, Tissue, Tube
from nacode.anatomy.texture import TEXTURE, misregister, random_shift_mm, tsc_texture

__all__ = [
    "MNI152",
    "MUSCLES",
    "TEXTURE",
    "Subject",
    "Tissue",
    "Tube",
    "block_mean",
    "brain_subject",
    "breast_subject",
    "calf_subject",
    "load_mni152",
    "misregister",
    "mixed_voxel_fraction",
    "random_shift_mm",
    "tissue_volumes",
    "tsc_texture",
]
