"""Image-quality metrics on normalised images (data range 1 unless given).

PSNR and MSE follow their definitions; SSIM is scikit-image's
:func:`~skimage.metrics.structural_similarity` with a Gaussian 11 × 11 window (σ = 1.5), as
Wang et al. (2004) and TensorFlow's ``tf.image.ssim`` that the calf paper's code used.
"""

from __future__ import annotations

import numpy as np


def _check(reference: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference, image = np.asarray(reference, float), np.asarray(image, float)
    if reference.shape != image.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, image {image.shape}")
    if not (np.all(np.isfinite(reference)) and np.all(np.isfinite(image))):
        raise ValueError("images contain NaN or infinity")
    return reference, image


def _check_2d(reference, image, data_range: float, name: str):
    """:func:`_check` for 2D images with a positive data range (``name`` for the message)."""
    reference, image = _check(reference, image)
    if reference.ndim != 2:
        raise ValueError(f"{name} needs 2D images, got shape {reference.shape}")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    return reference, image


def mse(reference: np.ndarray, image: np.ndarray) -> float:
    """Mean squared error."""
    reference, image = _check(reference, image)
    return float(np.mean((reference - image) ** 2))


def psnr(reference: np.ndarray, image: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(L² / MSE)`` in dB."""
    error = mse(reference, image)
    return float("inf") if error == 0 else float(10 * np.log10(data_range**2 / error))


def ssim(reference: np.ndarray, image: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity (Gaussian window, σ = 1.5)."""
    from skimage.metrics import structural_similarity

    reference, image = _check(reference, image)
    return float(structural_similarity(reference, image, data_range=data_range,
                                       gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def masked_psnr(reference: np.ndarray, image: np.ndarray, mask: np.ndarray) -> float:
    """The brain paper's pSNR (its equation 1) over the voxels of ``mask``, in dB.

    ``10 log10((max Ref − min Ref)² / MSE)``, the range and the MSE both taken inside the
    mask, so the peak is the reference's own dynamic range rather than a fixed one.
    """
    reference, image = _check(reference, image)
    if mask.shape != reference.shape or not mask.any():
        raise ValueError(f"mask must be a non-empty boolean array of shape {reference.shape}")
    ref = reference[mask]
    return psnr(ref, image[mask], data_range=float(ref.max() - ref.min()))


def masked_ssim(reference: np.ndarray, image: np.ndarray, mask: np.ndarray) -> float:
    """SSIM map (Gaussian window, σ = 1.5, 2D or 3D) averaged over the voxels of ``mask``.

    The data range is the reference's inside the mask, as for :func:`masked_psnr`; the map is
    computed on the whole array so that windows straddling the mask's edge see real
    neighbours (the brain paper's equation 3 with N the brain-mask voxels).
    """
    from skimage.metrics import structural_similarity

    reference, image = _check(reference, image)
    if mask.shape != reference.shape or not mask.any():
        raise ValueError(f"mask must be a non-empty boolean array of shape {reference.shape}")
    ref = reference[mask]
    _, smap = structural_similarity(reference, image, data_range=float(ref.max() - ref.min()),
                                    gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, full=True)
    return float(smap[mask].mean())


def relative_improvement(before: float, after: float) -> float:
    """``100 (after − before) / before``: the brain paper's improvement in %."""
    if before == 0:
        raise ValueError("relative improvement is undefined for a zero baseline")
    return float(100.0 * (after - before) / before)


# --- SSIM and pSNR conventions ------------------------------------------------------------------


def _region(reference: np.ndarray, mask) -> np.ndarray:
    """``mask`` as a boolean array of the reference's shape, all True when None."""
    if mask is None:
        return np.ones(reference.shape, bool)
    mask = np.asarray(mask)
    if mask.shape != reference.shape or mask.dtype != bool or not mask.any():
        raise ValueError(f"mask must be a non-empty boolean array of shape {reference.shape}")
    return mask


def windowed_ssim(reference: np.ndarray, image: np.ndarray, *, data_range: float | None = None,
                  gaussian: bool = False, win_size: int = 7, sigma: float = 1.5,
                  slice_axis: int | None = None, mask: np.ndarray | None = None) -> float:
    """Mean SSIM under a chosen convention, through scikit-image's ``structural_similarity``.

    The defaults are scikit-image's own: a uniform ``win_size``-wide window (7 × 7 or 7³) with
    the sample covariance. ``gaussian=True`` is Wang et al.'s (2004) window instead, a Gaussian
    of SD ``sigma`` voxels truncated at 3.5 SD (11 wide for σ = 1.5), with the population
    covariance, as :func:`ssim` and :func:`masked_ssim` use.

    Parameters
    ----------
    reference, image : ndarray, shape (X, Y) or (X, Y, Z)
        Real images in the same units; computed in float32 when both are float32 (or of a
        smaller type), in float64 otherwise.
    data_range : float, optional
        The ``L`` of SSIM's constants ``(0.01 L)²`` and ``(0.03 L)²``, in image units. None:
        the reference's range (max − min) over the region (``mask``, or the whole array).
        scikit-image before 0.19 took ``L = 2`` for any float image (its dtype range [−1, 1]).
    gaussian : bool
        Gaussian window (σ = ``sigma``) instead of the uniform one.
    win_size : int
        Side of the uniform window, voxels (odd; ignored when ``gaussian``).
    sigma : float
        SD of the Gaussian window, voxels.
    slice_axis : int, optional
        Compute 2D SSIM on every slice along this axis and average (slice-wise), instead of
        one 3D SSIM. None: SSIM in the images' own dimension.
    mask : ndarray of bool, optional
        Average the SSIM map over these voxels (the map is computed on the whole array, so
        windows at the mask's edge see real neighbours). None: the whole field of view,
        scikit-image's own mean, which leaves out a border of half a window on every side
        (of every slice when slice-wise).

    Returns
    -------
    float
        Mean SSIM, dimensionless, 1 for identical images.

    Raises
    ------
    ValueError
        If the images differ in shape or are not finite, the mask is empty or of another
        shape, or the data range is not positive.
    """
    from skimage.metrics import structural_similarity

    precision = np.result_type(np.asarray(reference).dtype, np.asarray(image).dtype, np.float32)
    reference, image = _check(reference, image)
    region = _region(reference, mask)
    if data_range is None:
        values = reference[region]
        data_range = float(values.max() - values.min())
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    options = dict(data_range=data_range, full=True)
    if gaussian:
        options.update(gaussian_weights=True, sigma=sigma, use_sample_covariance=False)
    else:
        options.update(win_size=win_size)
    if precision == np.float32:  # float32 images: filter in float32, ~40 % faster, same to 1e-7
        reference, image = reference.astype(np.float32), image.astype(np.float32)
    if slice_axis is None:
        pairs = [(reference, image)]
    else:
        pairs = list(zip(np.moveaxis(reference, slice_axis, 0), np.moveaxis(image, slice_axis, 0),
                         strict=True))
    means, maps = zip(*(structural_similarity(r, i, **options) for r, i in pairs), strict=True)
    if mask is None:
        return float(np.mean(means))
    smap = maps[0] if slice_axis is None else np.moveaxis(np.stack(maps), 0, slice_axis)
    return float(smap[region].mean())


def region_psnr(reference: np.ndarray, image: np.ndarray, *, peak: str | float = "range",
                mask: np.ndarray | None = None, slice_axis: int | None = None) -> float:
    """pSNR ``10 log10(peak² / MSE)`` in dB under a chosen convention.

    Parameters
    ----------
    reference, image : ndarray, shape (X, Y) or (X, Y, Z)
        Real images in the same units.
    peak : {"range", "max"} or float
        ``"range"``: the reference's max − min over the region (the brain paper's equation 1);
        ``"max"``: the reference's maximum over the region; a float: a fixed peak in image
        units (scikit-image before 0.19 took 1 for a non-negative float image).
    mask : ndarray of bool, optional
        Voxels over which the peak and the MSE are taken. None: the whole field of view.
    slice_axis : int, optional
        Average the pSNR of the slices along this axis (each slice's MSE over its region
        voxels, one peak from the whole region; slices without region voxels are skipped).

    Returns
    -------
    float
        pSNR in dB; infinity where an MSE is zero.

    Raises
    ------
    ValueError
        As :func:`windowed_ssim`, or if the peak is not positive or an unknown word.
    """
    reference, image = _check(reference, image)
    region = _region(reference, mask)
    values = reference[region]
    if peak == "range":
        peak = float(values.max() - values.min())
    elif peak == "max":
        peak = float(values.max())
    elif isinstance(peak, str):
        raise ValueError(f"peak must be 'range', 'max' or a number, got {peak!r}")
    if not peak > 0:
        raise ValueError(f"the peak must be positive, got {peak}")
    if slice_axis is None:
        return psnr(values, image[region], data_range=peak)
    slices = zip(np.moveaxis(reference, slice_axis, 0), np.moveaxis(image, slice_axis, 0),
                 np.moveaxis(region, slice_axis, 0), strict=True)
    return float(np.mean([psnr(r[m], i[m], data_range=peak) for r, i, m in slices if m.any()]))


# --- FSIM, Laplacian focus and LPIPS ------------------------------------------------------------

#: What a results table shows for LPIPS where :func:`lpips_distance` returns None.
LPIPS_UNAVAILABLE = "unavailable: needs pretrained backbone weights"


def _fsim_phase_congruency(image: np.ndarray, filters: np.ndarray, k: float) -> np.ndarray:
    """Phase congruency map of one image (Kovesi's PC2 measure, as FSIM uses it).

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Image in the ``[0, 255]`` scale of FSIM's constants.
    filters : ndarray, shape (orientations, scales, H, W)
        Log-Gabor transfer functions with zero frequency at index ``[0, 0]``.
    k : float
        Noise threshold in standard deviations of the noise energy above its mean.

    Returns
    -------
    ndarray, shape (H, W)
        Phase congruency, dimensionless, in ``[0, 1]``.
    """
    eps = np.finfo(float).eps
    n_orient, _, height, width = filters.shape
    even_odd = np.fft.ifft2(np.fft.fft2(image) * filters)  # even: real part, odd: imaginary
    even, odd = even_odd.real, even_odd.imag
    amplitude = np.abs(even_odd)
    sum_e = even.sum(axis=1, keepdims=True)
    sum_o = odd.sum(axis=1, keepdims=True)
    norm = np.sqrt(sum_e**2 + sum_o**2) + eps
    mean_e, mean_o = sum_e / norm, sum_o / norm
    energy = (even * mean_e + odd * mean_o - np.abs(even * mean_o - odd * mean_e)).sum(axis=1)

    # Noise power from the median squared response at the smallest scale (the lower median,
    # as torch.median takes it), then the Rayleigh statistics of the noise energy.
    e2 = (amplitude[:, 0] ** 2).reshape(n_orient, -1)
    median = np.partition(e2, (e2.shape[1] - 1) // 2, axis=1)[:, (e2.shape[1] - 1) // 2]
    noise_power = (-median / np.log(0.5)) / (filters[:, 0] ** 2).sum(axis=(-2, -1))
    spatial = np.fft.ifft2(filters).real * np.sqrt(height * width)
    sum_an2 = (spatial**2).sum(axis=(1, 2, 3))
    sum_ai_aj = sum((spatial[:, s : s + 1] * spatial[:, s + 1 :]).sum(axis=(1, 2, 3))
                    for s in range(filters.shape[1] - 1))
    tau = np.sqrt((2 * noise_power * sum_an2 + 4 * noise_power * sum_ai_aj) / 2)
    threshold = (tau * np.sqrt(np.pi / 2) + k * np.sqrt(2 - np.pi / 2) * tau) / 1.7
    energy = np.maximum(energy - threshold[:, None, None], 0)
    return (energy.sum(axis=0) + eps) / (amplitude.sum(axis=(0, 1)) + eps)


def _fsim_filters(height: int, width: int, scales: int = 4, orientations: int = 4,
                  min_length: int = 6, mult: int = 2, sigma_f: float = 0.55,
                  delta_theta: float = 1.2) -> np.ndarray:
    """Log-Gabor filter bank of FSIM's phase congruency, shape (orientations, scales, H, W)."""

    def axis(n: int) -> np.ndarray:
        return (np.arange(n) - (n - 1) / 2) / (n - 1) if n % 2 else (np.arange(n) - n / 2) / n

    grid_x, grid_y = np.meshgrid(axis(height), axis(width), indexing="ij")
    radius = np.sqrt(grid_x**2 + grid_y**2)
    lowpass = np.fft.ifftshift(1.0 / (1.0 + (radius / 0.45) ** 30))  # Butterworth, n = 15
    theta = np.fft.ifftshift(np.arctan2(-grid_y, grid_x))
    radius = np.fft.ifftshift(radius)
    radius[0, 0] = 1.0
    radial = []
    for s in range(scales):
        log_gabor = np.exp(-np.log(radius * min_length * mult**s) ** 2
                           / (2 * np.log(sigma_f) ** 2)) * lowpass
        log_gabor[0, 0] = 0.0
        radial.append(log_gabor)
    theta_sigma = np.pi / (orientations * delta_theta)
    angular = []
    for o in range(orientations):
        angle = o * np.pi / orientations
        d_sin = np.sin(theta) * np.cos(angle) - np.cos(theta) * np.sin(angle)
        d_cos = np.cos(theta) * np.cos(angle) + np.sin(theta) * np.sin(angle)
        angular.append(np.exp(-np.arctan2(d_sin, d_cos) ** 2 / (2 * theta_sigma**2)))
    return np.asarray(angular)[:, None] * np.asarray(radial)[None]


def fsim(reference: np.ndarray, image: np.ndarray, data_range: float = 1.0) -> float:
    """Feature similarity index FSIM of Zhang et al. (2011), grayscale version.

    A NumPy port of ``piq.fsim`` (piq 0.8.0) with ``chromatic=False`` and its default
    parameters: 4 scales and 4 orientations of log-Gabor filters (smallest wavelength 6 pixels,
    ratio 2, ``sigma_f`` 0.55, ``delta_theta`` 1.2, noise threshold ``k`` 2), Scharr gradient
    magnitude, the paper's constants ``T1`` = 0.85 and ``T2`` = 160 on the ``[0, 255]`` scale,
    and average pooling by ``max(1, round(min(H, W) / 256))`` first, as the MATLAB code does.
    piq itself is not used because it imports torchvision, and the torchvision wheels on PyPI
    are CUDA builds that do not load with the CPU build of torch that this project pins.

    Parameters
    ----------
    reference : ndarray, shape (H, W)
        Reference image, real-valued, in the units of ``data_range``.
    image : ndarray, shape (H, W)
        Image to assess, same shape and units.
    data_range : float, optional
        Intensity that maps to 1: both images are divided by it and then clipped to ``[0, 1]``,
        so values below 0 or above ``data_range`` are clipped before the comparison.

    Returns
    -------
    float
        FSIM, dimensionless; 1 for identical images, lower for less similar ones.

    Raises
    ------
    ValueError
        If the images differ in shape, are not 2D, contain NaN or infinity, or if
        ``data_range`` is not positive.
    """
    from scipy.ndimage import correlate

    reference, image = _check_2d(reference, image, data_range, "fsim")
    pool = max(1, round(min(reference.shape) / 256))
    height, width = reference.shape[0] // pool, reference.shape[1] // pool

    def prepare(x: np.ndarray) -> np.ndarray:
        x = np.clip(x / data_range, 0.0, 1.0) * 255.0
        return x[: height * pool, : width * pool].reshape(height, pool, width, pool).mean((1, 3))

    reference, image = prepare(reference), prepare(image)
    filters = _fsim_filters(height, width)
    pc_ref = _fsim_phase_congruency(reference, filters, k=2.0)
    pc_img = _fsim_phase_congruency(image, filters, k=2.0)
    scharr = np.array([[-3.0, 0.0, 3.0], [-10.0, 0.0, 10.0], [-3.0, 0.0, 3.0]]) / 16

    def gradient(x: np.ndarray) -> np.ndarray:
        return np.hypot(correlate(x, scharr, mode="constant"),
                        correlate(x, scharr.T, mode="constant"))

    gm_ref, gm_img = gradient(reference), gradient(image)
    s_pc = (2 * pc_ref * pc_img + 0.85) / (pc_ref**2 + pc_img**2 + 0.85)
    s_g = (2 * gm_ref * gm_img + 160.0) / (gm_ref**2 + gm_img**2 + 160.0)
    pc_max = np.maximum(pc_ref, pc_img)
    return float((s_pc * s_g * pc_max).sum() / pc_max.sum())


def laplacian_focus(image: np.ndarray) -> float:
    """Laplacian focus: the variance of the discrete Laplacian, a no-reference sharpness measure.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Image, real-valued; a 3D volume works too (the Laplacian is then the 3D one).

    Returns
    -------
    float
        Variance of ``scipy.ndimage.laplace`` (edges reflected), in squared image units
        (pixel spacing 1); 0 for a constant image, larger for a sharper one.
    """
    from scipy.ndimage import laplace

    image, _ = _check(image, image)
    return float(np.var(laplace(image, mode="reflect")))


def _alexnet_checkpoint():
    """The cached torchvision AlexNet ImageNet weights: a ``pathlib.Path``, or None if absent."""
    from pathlib import Path

    import torch

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(checkpoints.glob("alexnet-*")) if checkpoints.is_dir() else []
    return found[0] if found else None


def lpips_available() -> bool:
    """Whether :func:`lpips_distance` can run here without downloading anything.

    Returns
    -------
    bool
        True if the ``lpips`` package imports and the AlexNet ImageNet weights are already in
        the torch hub cache (``torch.hub.get_dir()`` then ``checkpoints/alexnet-*``).
    """
    if _alexnet_checkpoint() is None:
        return False
    try:
        import lpips  # noqa: F401
    except Exception:  # not installed, or a torchvision that does not load with this torch
        return False
    return True


def _lpips_model():
    """LPIPS (AlexNet) with its backbone loaded from the local cache, never from the network."""
    import lpips
    import torch

    # pnet_rand=True builds the backbone without weights, so torchvision downloads nothing; the
    # linear calibration layers ship inside the lpips package.
    model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    state = torch.load(_alexnet_checkpoint(), map_location="cpu", weights_only=True)
    features = {key.removeprefix("features."): value for key, value in state.items()
                if key.startswith("features.")}
    for i in range(1, model.net.N_slices + 1):
        part = getattr(model.net, f"slice{i}")
        part.load_state_dict({key: features[key] for key in part.state_dict()})
    return model.eval()


def lpips_distance(reference: np.ndarray, image: np.ndarray,
                   data_range: float = 1.0) -> float | None:
    """LPIPS perceptual distance (AlexNet backbone), or None where it cannot run offline.

    The grayscale images are divided by ``data_range``, clipped to ``[0, 1]``, mapped to
    ``[-1, 1]`` and repeated over 3 channels. Nothing is ever downloaded: without the ``lpips``
    package or the cached AlexNet weights (see :func:`lpips_available`) the result is None,
    which a table shows as :data:`LPIPS_UNAVAILABLE`.

    Parameters
    ----------
    reference : ndarray, shape (H, W)
        Reference image, real-valued, in the units of ``data_range``.
    image : ndarray, shape (H, W)
        Image to assess, same shape and units.
    data_range : float, optional
        Intensity that maps to 1; values outside ``[0, data_range]`` are clipped.

    Returns
    -------
    float or None
        LPIPS, dimensionless, 0 for identical images and larger for less similar ones; None
        if unavailable.

    Raises
    ------
    ValueError
        If the images differ in shape, are not 2D, contain NaN or infinity, or if
        ``data_range`` is not positive.
    """
    reference, image = _check_2d(reference, image, data_range, "lpips_distance")
    if not lpips_available():
        return None
    import torch

    def tensor(x: np.ndarray):
        x = 2.0 * np.clip(x / data_range, 0.0, 1.0) - 1.0
        return torch.from_numpy(np.repeat(x[None, None], 3, axis=1).astype(np.float32))

    with torch.no_grad():
        return float(_lpips_model()(tensor(reference), tensor(image)).item())
