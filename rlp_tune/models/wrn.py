"""CIFAR Wide-ResNet WRN-d-w (Zagoruyko & Komodakis, 2016), the paper's CIFAR-100 network.

    model = create_model(Model(name="wrn16_4", dropout=0.3), in_shape=(3, 32, 32), num_classes=100)
    logits, feats = model(x, taps=("block2", "penultimate"))   # feats["block2"]: (B, 32w)

Registered names: `wrn16_4`, `wrn28_10`, and `wrn` (depth = model.depth, widen = model.widen;
depth must be 6k+4, e.g. 10, 16, 22, 28, 40).

Structure: 3×3 stem conv (16 channels) → 3 groups of (d−4)/6 pre-activation basic blocks
(BN-ReLU-conv3×3-BN-ReLU-dropout(p = model.dropout)-conv3×3; widths 16w, 32w, 64w; strides 1, 2, 2)
→ BN-ReLU → global average pool → Linear. A block whose width or stride changes uses a 1×1 conv
shortcut on the pre-activated input, as the authors' code does.

Taps (global-average pooled): "stem" (16), "block1" (16w), "block2" (32w), "block3" (64w) — the raw
output of each group — and "penultimate" (64w): the pooled post-BN-ReLU feature the classifier sees.
Any input size ≥ 1 px works (the pool is global), e.g. 8×8 digits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import ModelInputError, TapModel, need_image, register_model
from .init import init_conv_bn_linear


class WideBasic(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv(stride)-BN-ReLU-dropout-conv, plus the shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        # shape changes → 1×1 projection of the *activated* input (the authors' WRN code)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False) if (c_in != c_out or stride != 1) else None

    def forward(self, x):
        a = F.relu(self.bn1(x))
        out = self.conv2(self.drop(F.relu(self.bn2(self.conv1(a)))))
        return out + (x if self.shortcut is None else self.shortcut(a))


class WideResNet(TapModel):
    def __init__(self, depth: int, widen: int, num_classes: int, in_chans: int = 3, dropout: float = 0.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ModelInputError(f"model.depth={depth} is not a WRN depth: need depth = 6k+4 with k ≥ 1 (10, 16, 22, 28, 40)")
        if widen < 1:
            raise ModelInputError(f"model.widen={widen}: the WRN widening factor must be ≥ 1")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        groups, c_in = [], widths[0]
        for g, stride in enumerate((1, 2, 2)):
            blocks = []
            for i in range(n):
                blocks.append(WideBasic(c_in, widths[g + 1], stride if i == 0 else 1, dropout))
                c_in = widths[g + 1]
            groups.append(nn.Sequential(*blocks))
        self.groups = nn.ModuleList(groups)
        self.bn = nn.BatchNorm2d(widths[3])
        self.classifier = nn.Linear(widths[3], num_classes)
        self.tap_names = ["stem", "block1", "block2", "block3", "penultimate"]
        self.tap_dims = dict(zip(self.tap_names, widths + [widths[3]]))
        init_conv_bn_linear(self)

    def forward(self, x, taps=()):
        feats = {}
        h = self.stem(x)                                   # (B, 16, H, W)
        if "stem" in taps:
            feats["stem"] = h.mean((2, 3))
        for g, group in enumerate(self.groups):
            h = group(h)                                   # (B, widths[g+1], H/2^g', W/2^g')
            if f"block{g + 1}" in taps:
                feats[f"block{g + 1}"] = h.mean((2, 3))
        z = F.relu(self.bn(h)).mean((2, 3))                # (B, 64w): the classifier's input
        if "penultimate" in taps:
            feats["penultimate"] = z
        return self.classifier(z), feats


def _build(name, depth, widen, mcfg, in_shape, num_classes):
    c, _, _ = need_image(name, in_shape)
    return WideResNet(depth, widen, num_classes, in_chans=c, dropout=mcfg.dropout)


@register_model("wrn16_4")
def wrn16_4(mcfg, in_shape, num_classes):
    return _build("wrn16_4", 16, 4, mcfg, in_shape, num_classes)


@register_model("wrn28_10")
def wrn28_10(mcfg, in_shape, num_classes):
    return _build("wrn28_10", 28, 10, mcfg, in_shape, num_classes)


@register_model("wrn")
def wrn(mcfg, in_shape, num_classes):
    """General WRN-(model.depth)-(model.widen)."""
    return _build("wrn", mcfg.depth, mcfg.widen, mcfg, in_shape, num_classes)
