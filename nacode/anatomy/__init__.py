"""Virtual subjects: anatomy, true tissue sodium concentration and matching 1H images."""

from __future__ import annotations

from nacode.anatomy.mni152 import MNI152, load_mni152, tissue_volumes

__all__ = ["MNI152", "load_mni152", "tissue_volumes"]
