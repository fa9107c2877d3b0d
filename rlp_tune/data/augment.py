"""Batched, on-device data augmentation: every op acts on a whole (B, C, H, W) batch at once.

    aug = make_augment(cfg, bundle.in_shape, mean=bundle.mean, std=bundle.std)   # data.augment
    g = torch.Generator().manual_seed(derive_seed(seed, "augment", epoch))      # caller seeds per epoch
    xb = aug(xb, g)                                                              # same shape, same device

Names (`data.augment`): "none", "flip" (horizontal, p = 0.5), "crop" (random translate with zero
padding of 4 px at 32 px, scaled with the image size), "crop_flip", "benign" (003's suite: random
resized crop, scale 0.08–1 and ratio 3/4–4/3, flip, colour jitter 0.8/0.8/0.8/0.2 with p = 0.8,
greyscale with p = 0.2), and "randaugment[:strength]" (a RandAugment-style batched op sequence,
magnitude ∝ strength in [0, 1]). Also `mixup(x, y_onehot, alpha, gen)` and `FixedAugmentSets`
(B views per sample drawn once: the same (sample, b) always gives the same view).

Randomness. Every augmentation is a pure function `aug.apply(x, u)` of the batch and a (B, aug.k)
tensor of uniforms in [0, 1). `aug(x, gen)` draws u from the explicit torch.Generator (on the
generator's device, then moved: a few floats per sample), so runs are reproducible and resumable
given the generator state; `FixedAugmentSets` derives u by hashing (seed, sample, view) instead.
The number of draws per batch is fixed, so the generator advances identically on every run.

Normalization. Inputs arrive normalized ((x01 - mean) / std). Geometric ops work in that space;
padding uses the normalized value of a black pixel (-mean/std, torchvision pads black before
normalizing). Colour/intensity ops un-normalize to [0, 1] pixel space, apply, clamp to [0, 1]
(as torchvision does) and re-normalize. Without mean/std the input is taken to be [0, 1] pixels.
Colour jitter, greyscale and RandAugment's "color" act on 3-channel inputs only (identity for 1).
Inputs that are not images (in_shape not (C, H, W)) only accept "none".

Departures from torchvision (all batched): jitter ops run in a fixed order (brightness, contrast,
saturation, hue) instead of a random one; a resized crop larger than the image is clamped to it
instead of re-drawn; resampling is bilinear without antialiasing.

Length (~470 lines, over the house's ~400): the whole suite (003's included) shares the one
randomness contract below; splitting it by op would scatter that contract over files.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .color import (adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, autocontrast, equalize, grey,
                    posterize, sharpen)

AUGMENTS = ("none", "flip", "crop", "crop_flip", "benign", "randaugment")


class AugmentError(UserError, ValueError):
    """A bad augmentation name or an augmentation that does not fit the input shape."""


def uniforms(n: int, k: int, gen: torch.Generator | None, device) -> torch.Tensor:
    """(n, k) float32 uniforms in [0, 1) from `gen` (drawn on its device), placed on `device`."""
    if gen is None:
        return torch.rand(n, k, device=device)
    return torch.rand(n, k, generator=gen, device=gen.device).to(device, non_blocking=True)


class Augment:
    """Base: `k` uniforms per sample; `apply(x, u)` is deterministic given u."""
    k = 0

    def __init__(self, in_shape: Sequence[int], mean=None, std=None):
        self.in_shape = tuple(in_shape)
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32).flatten()
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32).flatten()

    def __call__(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        if self.k == 0:
            return x
        return self.apply(x, uniforms(x.shape[0], self.k, gen, x.device))

    def apply(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return x

    # ---- pixel space <-> normalized space (per channel) --------------------------------------
    def _stats(self, x):
        c = x.shape[1]
        if self.mean is None:
            return None, None
        return (self.mean.to(x.device).view(1, c, 1, 1), self.std.to(x.device).view(1, c, 1, 1))

    def to01(self, x: torch.Tensor) -> torch.Tensor:
        m, s = self._stats(x)
        return x if m is None else x * s + m

    def from01(self, x: torch.Tensor) -> torch.Tensor:
        m, s = self._stats(x)
        return x if m is None else (x - m) / s

    def black(self, x: torch.Tensor) -> torch.Tensor:
        """(1, C, 1, 1) normalized value of a black pixel (0 without normalization)."""
        m, s = self._stats(x)
        return torch.zeros(1, x.shape[1], 1, 1, device=x.device, dtype=x.dtype) if m is None else -m / s


class Identity(Augment):
    k = 0


class Compose(Augment):
    """Ops in sequence; u is split column-wise among them."""

    def __init__(self, ops: Sequence[Augment]):
        super().__init__(ops[0].in_shape if ops else ())
        self.ops = list(ops)
        self.k = sum(o.k for o in self.ops)

    def apply(self, x, u):
        j = 0
        for o in self.ops:
            x = o.apply(x, u[:, j:j + o.k])
            j += o.k
        return x


class Flip(Augment):
    """Horizontal flip with probability p."""
    k = 1

    def __init__(self, in_shape, p: float = 0.5, **kw):
        super().__init__(in_shape, **kw)
        self.p = p

    def apply(self, x, u):
        return torch.where((u[:, 0] < self.p).view(-1, 1, 1, 1), x.flip(-1), x)


def translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """out[b, :, i, j] = x[b, :, i + dy[b], j + dx[b]], or `fill` (1, C, 1, 1) outside: two gathers."""
    B, C, H, W = x.shape
    rows = torch.arange(H, device=x.device).view(1, H) + dy.view(B, 1)         # (B, H)
    cols = torch.arange(W, device=x.device).view(1, W) + dx.view(B, 1)         # (B, W)
    out = x.gather(2, rows.clamp(0, H - 1).view(B, 1, H, 1).expand(B, C, H, W))
    out = out.gather(3, cols.clamp(0, W - 1).view(B, 1, 1, W).expand(B, C, H, W))
    inside = ((rows >= 0) & (rows < H)).view(B, 1, H, 1) & ((cols >= 0) & (cols < W)).view(B, 1, 1, W)
    return torch.where(inside, out, fill.to(x.dtype))


class Crop(Augment):
    """Random crop of the zero-(black-)padded image = integer translate by up to ±pad pixels,
    pad = 4 · size / 32 (4 px for CIFAR), per axis."""
    k = 2

    def __init__(self, in_shape, pad: int | None = None, **kw):
        super().__init__(in_shape, **kw)
        _, H, W = self.in_shape
        self.pad = (pad, pad) if pad is not None else (max(1, round(4 * H / 32)), max(1, round(4 * W / 32)))

    def apply(self, x, u):
        (ph, pw) = self.pad
        dy = (u[:, 0] * (2 * ph + 1)).long().clamp(max=2 * ph) - ph
        dx = (u[:, 1] * (2 * pw + 1)).long().clamp(max=2 * pw) - pw
        return translate(x, dy, dx, self.black(x))


class ResizedCropFlip(Augment):
    """RandomResizedCrop(scale, ratio) + horizontal flip as one affine_grid/grid_sample."""
    k = 5

    def __init__(self, in_shape, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip_p: float = 0.5, **kw):
        super().__init__(in_shape, **kw)
        self.scale, self.ratio, self.flip_p = scale, ratio, flip_p

    def apply(self, x, u):
        B, C, H, W = x.shape
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 0]
        lr = math.log(self.ratio[0]) + (math.log(self.ratio[1]) - math.log(self.ratio[0])) * u[:, 1]
        r = lr.exp()
        fw = (area * r * H / W).sqrt().clamp(max=1.0)     # crop width as a fraction of the image width
        fh = (area / r * W / H).sqrt().clamp(max=1.0)
        cx = (2 * u[:, 2] - 1) * (1 - fw)                   # crop centre in [-1, 1] coords
        cy = (2 * u[:, 3] - 1) * (1 - fh)
        sx = torch.where(u[:, 4] < self.flip_p, -fw, fw)   # negative x-scale = horizontal flip
        theta = torch.zeros(B, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, fh, cy
        grid = F.affine_grid(theta, [B, C, H, W], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ---- colour ops on [0, 1] pixels, (B, 3, H, W); factors are (B,) -----------------------------
class ColorJitterGrey(Augment):
    """RandomApply(ColorJitter(b, c, s, h), p) then RandomGrayscale(p_grey); 3-channel only."""
    k = 6

    def __init__(self, in_shape, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, p=0.8, p_grey=0.2, **kw):
        super().__init__(in_shape, **kw)
        self.b, self.c, self.s, self.h, self.p, self.p_grey = brightness, contrast, saturation, hue, p, p_grey

    def apply(self, x, u):
        if x.shape[1] != 3:
            return x
        y = self.to01(x)
        on = u[:, 0] < self.p
        one = torch.ones_like(u[:, 0])
        f = lambda j, w: torch.where(on, 1 - w + 2 * w * u[:, j], one)  # noqa: E731  factor in [1-w, 1+w]
        y = adjust_brightness(y, f(1, self.b))
        y = adjust_contrast(y, f(2, self.c))
        y = adjust_saturation(y, f(3, self.s))
        if self.h > 0:
            y = adjust_hue(y, torch.where(on, (2 * u[:, 4] - 1) * self.h, 0 * one))
        y = torch.where((u[:, 5] < self.p_grey).view(-1, 1, 1, 1), grey(y).expand_as(y), y)
        return self.from01(y)


# ---- RandAugment-style strength knob ---------------------------------------------------------
RA_OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color",
          "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize")
_GEOM = {"shear_x", "shear_y", "translate_x", "translate_y", "rotate"}


class RandAugment(Augment):
    """n_ops ops per sample drawn uniformly from RA_OPS, each at magnitude `strength` ∈ [0, 1] of
    torchvision's maximum (shear 0.3, translate 0.45·size, rotate 30°, enhance ±0.9, posterize
    8→4 bits, solarize threshold 1→0), random sign. Batched: per step, one grid_sample with a
    per-sample affine (identity for non-geometric picks) and every intensity op selected by mask."""

    def __init__(self, in_shape, strength: float = 0.5, n_ops: int = 2, **kw):
        super().__init__(in_shape, **kw)
        if not 0 <= strength <= 1:
            raise AugmentError(f"randaugment strength must be in [0, 1], got {strength}")
        self.strength, self.n_ops = float(strength), int(n_ops)
        self.k = 2 * self.n_ops

    def apply(self, x, u):
        B, C, H, W = x.shape
        s = self.strength
        y = self.to01(x)
        for j in range(self.n_ops):
            op = (u[:, 2 * j] * len(RA_OPS)).long().clamp(max=len(RA_OPS) - 1)
            sign = torch.where(u[:, 2 * j + 1] < 0.5, -1.0, 1.0).to(x.device)
            is_op = {name: op == i for i, name in enumerate(RA_OPS)}
            # geometry: one affine per sample in [-1, 1] coords (output → input)
            theta = torch.zeros(B, 2, 3, device=x.device, dtype=x.dtype)
            theta[:, 0, 0] = theta[:, 1, 1] = 1
            m = lambda name, v: torch.where(is_op[name], v * sign, torch.zeros_like(sign))  # noqa: E731
            theta[:, 0, 1] = m("shear_x", 0.3 * s)
            theta[:, 1, 0] = m("shear_y", 0.3 * s)
            theta[:, 0, 2] = m("translate_x", 2 * 0.45 * s)
            theta[:, 1, 2] = m("translate_y", 2 * 0.45 * s)
            ang = m("rotate", math.radians(30) * s)
            rot = is_op["rotate"]
            theta[:, 0, 0] = torch.where(rot, ang.cos(), theta[:, 0, 0])
            theta[:, 0, 1] = torch.where(rot, -ang.sin() * H / W, theta[:, 0, 1])
            theta[:, 1, 0] = torch.where(rot, ang.sin() * W / H, theta[:, 1, 0])
            theta[:, 1, 1] = torch.where(rot, ang.cos(), theta[:, 1, 1])
            grid = F.affine_grid(theta, [B, C, H, W], align_corners=False)
            warped = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            geom = torch.zeros_like(is_op["identity"])
            for name in _GEOM:
                geom = geom | is_op[name]
            y = torch.where(geom.view(-1, 1, 1, 1), warped, y)
            # intensity ops: each computed on the batch, kept where picked
            f = 1 + 0.9 * s * sign
            bits = torch.full((B,), 8 - round(4 * s), device=x.device, dtype=x.dtype)
            cand = {
                "brightness": lambda: adjust_brightness(y, f),
                "color": lambda: adjust_saturation(y, f),
                "contrast": lambda: adjust_contrast(y, f),
                "sharpness": lambda: sharpen(y, f),
                "posterize": lambda: posterize(y, bits),
                "solarize": lambda: torch.where(y >= 1 - s, 1 - y, y),
                "autocontrast": lambda: autocontrast(y),
                "equalize": lambda: equalize(y),
            }
            out = y
            for name, fn in cand.items():
                out = torch.where(is_op[name].view(-1, 1, 1, 1), fn(), out)
            y = out
        return self.from01(y.clamp(0, 1))


# ---- factory ---------------------------------------------------------------------------------
def make_augment(name_or_cfg, in_shape: Sequence[int], mean=None, std=None, strength: float | None = None
                 ) -> Augment:
    """`data.augment` (a name, a Data section or a whole Config) → a callable `aug(x, gen)`.

    mean/std: the bundle's normalization (bundle.mean, bundle.std), needed for exact colour ops and
    black padding. "randaugment:0.7" (or strength=0.7) sets the RandAugment strength."""
    name = name_or_cfg
    if not isinstance(name, str):
        name = getattr(getattr(name_or_cfg, "data", name_or_cfg), "augment")
    base, _, arg = name.partition(":")
    if base not in AUGMENTS:
        raise AugmentError(f"data.augment: unknown augmentation {name!r} (known: {', '.join(AUGMENTS)})")
    in_shape = tuple(in_shape)
    if base == "none":
        return Identity(in_shape)
    if len(in_shape) != 3:
        raise AugmentError(f"data.augment={name!r} needs image inputs (C, H, W), got in_shape {in_shape}; "
                           f"only 'none' works for vector data")
    kw = {"mean": mean, "std": std}
    if base == "flip":
        return Flip(in_shape, **kw)
    if base == "crop":
        return Crop(in_shape, **kw)
    if base == "crop_flip":
        return Compose([Crop(in_shape, **kw), Flip(in_shape, **kw)])
    if base == "benign":
        return Compose([ResizedCropFlip(in_shape, **kw), ColorJitterGrey(in_shape, **kw)])
    try:
        st = float(arg) if arg else (0.5 if strength is None else strength)
    except ValueError:
        raise AugmentError(f"data.augment={name!r}: strength after ':' must be a number") from None
    return RandAugment(in_shape, strength=st, **kw)


# ---- mixup -----------------------------------------------------------------------------------
def mixup(x: torch.Tensor, y_onehot: torch.Tensor | None, alpha: float, gen: torch.Generator | None = None):
    """Mixup (Zhang et al. 2018): one mixing weight ~ Beta(α, α) per batch (data.mixup_alpha = α), partner = a seeded permutation.
    Returns (x_mixed, y_mixed or None, weight, perm): mix any other per-sample targets (random-label
    one-hots) the same way, t_mixed = weight · t + (1 - weight) · t[perm]."""
    if alpha <= 0:
        return x, y_onehot, 1.0, torch.arange(x.shape[0], device=x.device)
    dev = gen.device if gen is not None else torch.device("cpu")
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=gen, device=dev).item())
    weight = float(np.random.default_rng(seed).beta(alpha, alpha))    # torch's Beta takes no generator
    perm = torch.randperm(x.shape[0], generator=gen, device=dev).to(x.device)
    xm = weight * x + (1 - weight) * x[perm]
    ym = None if y_onehot is None else weight * y_onehot + (1 - weight) * y_onehot[perm]
    return xm, ym, weight, perm


# ---- fixed-B augmentation sets ---------------------------------------------------------------
_M32 = 0xFFFFFFFF


def _mul32(h: torch.Tensor, c: int) -> torch.Tensor:
    """(h · c) mod 2^32 for h in [0, 2^32) with int64 ops that never overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (h * lo + (((h * hi) & 0xFFFF) << 16)) & _M32


def _mix32(h: torch.Tensor) -> torch.Tensor:
    """lowbias32 integer hash (C. Wellons) on int64 tensors holding 32-bit values."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x7FEB352D)
    h = h ^ (h >> 15)
    h = _mul32(h, 0x846CA68B)
    return h ^ (h >> 16)


class FixedAugmentSets:
    """B augmentations per sample drawn once (003's finite-augmentation experiments).

    View b of sample i uses the uniforms hash(seed, i, b, j), j < aug.k — a counter-based table of
    per-(sample, view) parameters that needs no memory (m · B · k floats would not fit ImageNet) and
    does not depend on batch composition, device or step. A batch picks one view per sample with
    the caller's generator: `sets.apply(aug, x, idx, gen)`."""

    def __init__(self, m: int, B: int, seed: int):
        if B < 1:
            raise AugmentError(f"FixedAugmentSets: B must be >= 1, got {B}")
        self.m, self.B, self.seed = int(m), int(B), int(seed)
        self._k1 = (self.seed * 0x9E3779B9) & _M32
        self._k2 = ((self.seed >> 32) * 0x85EBCA6B + 0x27D4EB2F) & _M32

    def pick(self, n: int, gen: torch.Generator | None, device) -> torch.Tensor:
        """(n,) int64 view numbers in [0, B), drawn from gen."""
        dev = gen.device if gen is not None else torch.device(device)
        return torch.randint(0, self.B, (n,), generator=gen, device=dev).to(device)

    def params(self, idx: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
        """(n, k) uniforms in [0, 1) for sample idx[i], view b[i] (idx: global train positions)."""
        i = idx.long()
        h = _mix32((i & _M32) ^ self._k1)
        h = _mix32(h ^ ((i >> 32) & _M32) ^ self._k2)
        h = _mix32(h ^ _mul32(b.long() & _M32, 0x632BE5AB))
        j = torch.arange(k, device=idx.device, dtype=torch.int64)
        hj = _mix32(h.view(-1, 1) ^ _mul32(j + 1, 0x9E3779B9).view(1, -1))
        return (hj >> 8).to(torch.float32) / float(1 << 24)

    def apply(self, aug: Augment, x: torch.Tensor, idx: torch.Tensor, gen: torch.Generator | None = None,
              b: torch.Tensor | None = None) -> torch.Tensor:
        """The batch x (samples idx) with one of its B fixed views each (b given, or drawn from gen)."""
        if aug.k == 0:
            return x
        if b is None:
            b = self.pick(x.shape[0], gen, x.device)
        return aug.apply(x, self.params(idx.to(x.device), b.to(x.device), aug.k))
