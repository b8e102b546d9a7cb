"""Training losses of the calf CNN: SSIM loss and the Jensen–Shannon distance.

``loss = (1 − SSIM(clean, denoised)) + λ · JSD(|clean − noisy|, |predicted residual|)`` with
λ = 0.3. SSIM uses the usual 11 × 11 Gaussian window (σ = 1.5) and constants
``(0.01 L)², (0.03 L)²`` for data range L = 1 (Wang et al. 2004), as TensorFlow's
``tf.image.ssim`` that the paper's code used. The Jensen–Shannon distance treats each
residual map (all pixels of the batch) as a probability distribution:
``JSD = sqrt((KL(P‖M) + KL(Q‖M)) / (2 ln 2))``, ``M = (P + Q)/2``, in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

JS_LAMBDA = 0.3


def _gaussian_window(size: int = 11, sigma: float = 1.5, *, dtype=torch.float32,
                     device=None) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per image of two batches (batch, 1, H, W) → (batch,), valid windows only."""
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim needs two (batch, 1, H, W) tensors, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    window = _gaussian_window(dtype=x.dtype, device=x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    sxx = F.conv2d(x * x, window) - mu_x**2
    syy = F.conv2d(y * y, window) - mu_y**2
    sxy = F.conv2d(x * y, window) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (numerator / denominator).mean(dim=(1, 2, 3))


def ssim_loss(clean: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """``1 − mean SSIM`` over the batch."""
    return 1.0 - ssim(clean, denoised).mean()


def jensen_shannon_distance(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-12
                            ) -> torch.Tensor:
    """Jensen–Shannon distance between the magnitudes of ``p`` and ``q`` as distributions."""
    p = p.abs().reshape(-1)
    q = q.abs().reshape(-1)
    p = p / (p.sum() + eps)
    q = q / (q.sum() + eps)
    m = (p + q) / 2

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * (torch.log(a + eps) - torch.log(b + eps))).sum()

    divergence = (kl(p, m) + kl(q, m)) / torch.log(torch.tensor(2.0, dtype=p.dtype))
    return torch.sqrt(torch.clamp(divergence / 2, min=0.0) + eps)


def calf_loss(clean: torch.Tensor, noisy: torch.Tensor, denoised: torch.Tensor,
              residual: torch.Tensor, js_lambda: float = JS_LAMBDA) -> torch.Tensor:
    """The paper's loss: SSIM loss + λ · JSD between true and predicted residuals."""
    return ssim_loss(clean, denoised) + js_lambda * jensen_shannon_distance(clean - noisy,
                                                                          residual)
