"""The brain paper's 3D patch denoising autoencoder and its fully convolutional twin.

:class:`PatchDAE` is Table 1 of Koppers et al.: a 5 × 5 × 5 patch → Conv3d 64 (3³) → ReLU →
Conv3d 256 (3³, leaving one voxel) → ReLU → flatten → Dense 32 → ReLU → Dense 256 → ReLU →
Dense 1, the denoised centre voxel. Applied patch by patch a volume needs one forward pass
per voxel; :func:`fully_convolutional` turns the same weights into a network of valid
convolutions whose dense layers are 1 × 1 × 1 convolutions, so one pass over a volume padded
by two voxels gives every voxel's prediction at once (the two are equal up to float rounding;
``tests/test_dae.py`` checks 1e-5).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

PATCH = 5  # patch side, voxels
HALF = PATCH // 2
#: The committed weights' units: the network sees aTSC in mM divided by this (so brain
#: tissue at 30–40 mM is 0.3–0.4 and CSF at 140 mM is 1.4).
NORM_MM = 100.0
#: Isotropic voxel size (mm) of the volumes the committed weights were trained on.
VOXEL_MM = 4.0


class PatchDAE(nn.Module):
    """Denoising autoencoder on 5 × 5 × 5 patches (the brain paper's Table 1).

    Input (batch, 1, 5, 5, 5) float32 patches; output (batch,) centre-voxel predictions.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(1, 64, 3)
        self.conv2 = nn.Conv3d(64, 256, 3)
        self.dense1 = nn.Linear(256, 32)
        self.dense2 = nn.Linear(32, 256)
        self.dense3 = nn.Linear(256, 1)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        if patches.shape[1:] != (1, PATCH, PATCH, PATCH):
            raise ValueError(f"expected (batch, 1, {PATCH}, {PATCH}, {PATCH}) patches, "
                             f"got {tuple(patches.shape)}")
        x = torch.relu(self.conv1(patches))
        x = torch.relu(self.conv2(x)).flatten(1)
        x = torch.relu(self.dense1(x))
        x = torch.relu(self.dense2(x))
        return self.dense3(x)[:, 0]


class FullyConvDAE(nn.Module):
    """:class:`PatchDAE` as valid convolutions: (batch, 1, X, Y, Z) → (batch, 1, X−4, Y−4, Z−4).

    Output voxel ``(i, j, k)`` is the patch network's prediction for the patch whose corner
    is input voxel ``(i, j, k)``, i.e. centred on input voxel ``(i + 2, j + 2, k + 2)``.
    """

    def __init__(self, patch: PatchDAE) -> None:
        super().__init__()
        self.conv1, self.conv2 = patch.conv1, patch.conv2
        self.dense = nn.ModuleList()
        for layer in (patch.dense1, patch.dense2, patch.dense3):
            conv = nn.Conv3d(layer.in_features, layer.out_features, 1)
            with torch.no_grad():
                conv.weight.copy_(layer.weight[:, :, None, None, None])
                conv.bias.copy_(layer.bias)
            self.dense.append(conv)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(volume))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.dense[0](x))
        x = torch.relu(self.dense[1](x))
        return self.dense[2](x)


def fully_convolutional(model: PatchDAE) -> FullyConvDAE:
    """The whole-volume network with ``model``'s weights (shared convolutions, copied dense)."""
    return FullyConvDAE(model)


def patch_offsets(shape: tuple[int, ...]) -> np.ndarray:
    """Flat-index offsets, shape (125,), of a 5³ patch about its centre in a C-order volume.

    ``shape`` is the volume's; only its last three axes matter, so a stack of volumes
    (V, X, Y, Z) works as long as every patch stays inside its own volume.
    """
    shape = tuple(shape)[-3:]
    d = np.arange(-HALF, HALF + 1)
    dx, dy, dz = np.meshgrid(d, d, d, indexing="ij")
    return (dx * shape[1] * shape[2] + dy * shape[2] + dz).ravel()


def extract_patches(volume, centres):
    """5³ patches about flat voxel indices of a C-order 3D volume (numpy or torch).

    Parameters
    ----------
    volume : ndarray or Tensor, shape (X, Y, Z) or (V, X, Y, Z)
        Every centre must lie at least two voxels inside each face of its volume.
    centres : ndarray or Tensor of int, shape (n,)
        Flat indices (``np.ravel_multi_index`` over ``volume.shape``) of the patch centres.

    Returns
    -------
    same type as ``volume``, shape (n, 1, 5, 5, 5)
    """
    offsets = patch_offsets(tuple(volume.shape))
    if torch.is_tensor(volume):
        offsets = torch.as_tensor(offsets, device=volume.device)
        index = torch.as_tensor(centres, device=volume.device)[:, None] + offsets[None, :]
    else:
        index = np.asarray(centres)[:, None] + offsets[None, :]
    return volume.reshape(-1)[index].reshape(-1, 1, PATCH, PATCH, PATCH)


def interior_centres(mask: np.ndarray) -> np.ndarray:
    """Flat indices of the voxels of a (X, Y, Z) or (V, X, Y, Z) mask.

    Raises if a voxel is within two voxels of a face of its volume (its patch would wrap).
    """
    coords = np.argwhere(mask)
    spatial = coords[:, -3:]
    if coords.size and (spatial.min() < HALF
                        or np.any(spatial.max(axis=0) >= np.array(mask.shape[-3:]) - HALF)):
        raise ValueError(f"mask voxels within {HALF} voxels of the volume's edge: pad it")
    return np.ravel_multi_index(coords.T, mask.shape)


@torch.no_grad()
def denoise_volume(model: PatchDAE, volume: np.ndarray, mask: np.ndarray, *,
                   device: str = "cpu") -> np.ndarray:
    """Denoise the masked voxels of a volume in one fully convolutional pass.

    Only the bounding box of the mask (plus the two-voxel patch margin) is computed; voxels
    outside the mask keep their input values, as the network was trained on brain voxels.

    Parameters
    ----------
    model : PatchDAE
        Trained weights.
    volume : ndarray, shape (X, Y, Z)
        Input in the units the model was trained on.
    mask : ndarray of bool, shape (X, Y, Z)
        Voxels to denoise (the brain mask).

    Returns
    -------
    ndarray, shape (X, Y, Z), float32
    """
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3 or mask.shape != volume.shape:
        raise ValueError(f"need a 3D volume and a mask of its shape, got {volume.shape} and "
                         f"{mask.shape}")
    if not np.all(np.isfinite(volume)):
        raise ValueError("volume contains NaN or infinity")
    out = volume.copy()
    if not mask.any():
        return out
    coords = np.argwhere(mask)
    low, high = coords.min(axis=0), coords.max(axis=0) + 1
    padded = np.pad(volume, HALF)  # zero outside the volume, as patch extraction would be
    box = padded[tuple(slice(lo, hi + 2 * HALF) for lo, hi in zip(low, high, strict=True))]
    net = fully_convolutional(model).eval().to(device)
    pred = net(torch.from_numpy(np.ascontiguousarray(box))[None, None].to(device))
    pred = pred[0, 0].cpu().numpy()
    region = tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))
    out[region] = np.where(mask[region], pred, out[region])
    return out
