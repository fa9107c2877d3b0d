"""Pixel-space colour and intensity ops on (B, C, H, W) batches in [0, 1], one factor per sample
(data/augment.py's colour jitter and RandAugment call them).

    y = adjust_brightness(x, f)          # f: (B,) factors, 1 = unchanged
    y = adjust_hue(x, shift)             # shift: (B,) in [-0.5, 0.5] turns of the hue circle
    y = equalize(x)                      # per-image histogram equalization, as torchvision

Each reproduces the torchvision.transforms.functional op of the same name on batches
(tests/test_data.py: test_colour_ops_match_torchvision_and_normalization, test_randaugment_intensity_ops_match_torchvision).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

GREY = (0.2989, 0.587, 0.114)  # torchvision's luma weights


def grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of (B, 3, H, W) RGB (ITU-R 601, as torchvision)."""
    w = torch.tensor(GREY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def blend(a, b, f):
    """f · a + (1 - f) · b per sample, clamped to [0, 1]."""
    return (f.view(-1, 1, 1, 1) * a + (1 - f.view(-1, 1, 1, 1)) * b).clamp(0, 1)


def adjust_brightness(x, f):
    return (x * f.view(-1, 1, 1, 1)).clamp(0, 1)


def adjust_contrast(x, f):
    m = (grey(x) if x.shape[1] == 3 else x).mean(dim=(1, 2, 3), keepdim=True)
    return blend(x, m, f)


def adjust_saturation(x, f):
    return blend(x, grey(x), f) if x.shape[1] == 3 else x


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    dd = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / dd, (maxc - g) / dd, (maxc - b) / dd
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack((h, s, maxc), 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    # sector i → (r, g, b) picks among (v, q, p, t): table lookup instead of branches
    cand = torch.stack((v, q, p, t), 1)                                            # (B, 4, H, W)
    table = torch.tensor([[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]], device=x.device)
    sel = table[i].permute(0, 3, 1, 2)                                             # (B, 3, H, W)
    return cand.gather(1, sel)


def adjust_hue(x, shift):
    """Rotate hue by `shift` (B,) in [-0.5, 0.5] turns."""
    if x.shape[1] != 3:
        return x
    hsv = rgb_to_hsv(x)
    h = (hsv[:, 0] + shift.view(-1, 1, 1)) % 1.0
    return hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), 1)).clamp(0, 1)


def sharpen(x, f):
    """Blend with torchvision's 3×3 smoothing filter [[1,1,1],[1,5,1],[1,1,1]]/13 (border pixels
    kept); f = 1 is identity. The 3×3 box sum comes from avg_pool2d (much faster than conv on CPU)."""
    box = F.avg_pool2d(x, 3, stride=1) * 9                     # (B, C, H-2, W-2) 3×3 sums
    inner = x.clone()
    inner[:, :, 1:-1, 1:-1] = (box + 4 * x[:, :, 1:-1, 1:-1]) / 13
    return blend(x, inner, f)


def posterize(x, bits):
    """Keep the top `bits` (B,) bits of each 8-bit value."""
    q = 2.0 ** (8 - bits).view(-1, 1, 1, 1)
    return torch.floor(torch.floor(x * 255 + 0.5) / q) * q / 255


def autocontrast(x):
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp(min=1e-8), x)


def equalize(x):
    """torchvision's histogram equalization per image and channel on the 8-bit values, batched:
    256-bin histograms by scatter_add, a CDF lookup table, one gather."""
    B, C, H, W = x.shape
    q = (x * 255).round().long().clamp(0, 255).view(B * C, H * W)
    hist = torch.zeros(B * C, 256, device=x.device, dtype=torch.float64)
    hist.scatter_add_(1, q, torch.ones_like(q, dtype=torch.float64))
    last = hist.gather(1, q.amax(1, keepdim=True))             # count in the highest occupied bin
    step = torch.floor((H * W - last) / 255)                    # (B·C, 1); 0 → channel left unchanged
    lut = torch.floor((hist.cumsum(1) + torch.floor(step / 2)) / step.clamp(min=1))
    lut = F.pad(lut, (1, 0))[:, :-1].clamp(0, 255)              # shift: value v maps to lut(cdf(v - 1))
    out = (lut.gather(1, q) / 255).to(x.dtype).view(B, C, H, W)
    return torch.where((step > 0).view(B, C, 1, 1), out, x)
