"""ResNet-18 for CIFAR-size images (He et al. 2016 BasicBlocks, with the common CIFAR stem).

    model = create_model(Model(name="resnet18_cifar"), in_shape=(3, 32, 32), num_classes=10)
    logits, feats = model(x, taps=("layer3", "penultimate"))   # feats["layer3"]: (B, 256)

3×3 stride-1 stem conv (64) + BN-ReLU, no max-pool → 4 stages of two post-activation BasicBlocks
(conv-BN-ReLU-conv-BN + shortcut, ReLU; widths 64, 128, 256, 512; strides 1, 2, 2, 2; a 1×1
conv-BN shortcut where the shape changes) → global average pool → dropout(p = model.dropout) →
Linear(512, C). Any input size ≥ 1 px works (the pool is global), e.g. 8×8 digits.

Taps (global-average pooled): "stem" (64), "layer1" … "layer4" (64, 128, 256, 512) and
"penultimate" (512): the classifier's input, i.e. after the dropout.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .base import TapModel, need_image, register_model
from .init import init_conv_bn_linear


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                         if (stride != 1 or c_in != c_out) else nn.Identity())

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(TapModel):
    def __init__(self, blocks_per_stage, num_classes: int, in_chans: int = 3, dropout: float = 0.0,
                 widths=(64, 128, 256, 512)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        stages, c_in = [], widths[0]
        for s, (n, width) in enumerate(zip(blocks_per_stage, widths)):
            stride = 1 if s == 0 else 2
            stages.append(nn.Sequential(*[BasicBlock(c_in if i == 0 else width, width, stride if i == 0 else 1)
                                          for i in range(n)]))
            c_in = width
        self.layers = nn.ModuleList(stages)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(c_in, num_classes)
        self.tap_names = ["stem"] + [f"layer{i + 1}" for i in range(len(stages))] + ["penultimate"]
        self.tap_dims = {"stem": widths[0]} | {f"layer{i + 1}": w for i, w in enumerate(widths)} | {"penultimate": c_in}
        init_conv_bn_linear(self)

    def forward(self, x, taps=()):
        feats = {}
        h = self.stem(x)                                    # (B, 64, H, W)
        if "stem" in taps:
            feats["stem"] = h.mean((2, 3))
        for i, layer in enumerate(self.layers):
            h = layer(h)                                    # (B, widths[i], H/2^i, W/2^i)
            if f"layer{i + 1}" in taps:
                feats[f"layer{i + 1}"] = h.mean((2, 3))
        z = self.drop(h.mean((2, 3)))                       # (B, 512): the classifier's input
        if "penultimate" in taps:
            feats["penultimate"] = z
        return self.classifier(z), feats


@register_model("resnet18_cifar")
def resnet18_cifar(mcfg, in_shape, num_classes):
    c, _, _ = need_image("resnet18_cifar", in_shape)
    return ResNetCifar((2, 2, 2, 2), num_classes, in_chans=c, dropout=mcfg.dropout)
