"""VGG-16 with batch norm for CIFAR-size images (Simonyan & Zisserman config "D", 3×3 convs).

    model = create_model(Model(name="vgg16", dropout=0.5), in_shape=(3, 32, 32), num_classes=100)
    logits, feats = model(x, taps=("block3", "penultimate"))   # feats["block3"]: (B, 256)

Five stages of 3×3 conv-BN-ReLU (64×2, 128×2, 256×3, 512×3, 512×3), each ended by a 2×2 max-pool;
at 32×32 input the last feature map is 512×1×1. Head: global average pool → dropout(p =
model.dropout) → Linear(512, C) (the usual CIFAR VGG head, not ImageNet's three FC layers).

Small inputs: a max-pool whose input is already 1 px high or wide is left out (built as Identity
from `in_shape`), so 8×8 digits (pools at 8→4→2→1, the last two skipped) and 28×28 images work.
Build the model for the smallest size it will see: a smaller input than `in_shape` fails in a pool.

Taps (global-average pooled): "block1" … "block5" after each stage's pool (64, 128, 256, 512, 512)
and "penultimate" (512): the classifier's input, i.e. after the dropout.
"""
from __future__ import annotations

from torch import nn

from .base import TapModel, need_image, register_model
from .init import init_conv_bn_linear

VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG(TapModel):
    def __init__(self, stages, num_classes: int, in_shape: tuple[int, int, int], dropout: float = 0.0):
        super().__init__()
        c, h, w = in_shape
        blocks = []
        for widths in stages:
            layers = []
            for width in widths:
                layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                c = width
            # skip a pool that has nothing left to halve (small inputs); floor as MaxPool2d does
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(c, num_classes)
        self.tap_names = [f"block{i + 1}" for i in range(len(stages))] + ["penultimate"]
        self.tap_dims = {f"block{i + 1}": s[-1] for i, s in enumerate(stages)} | {"penultimate": c}
        init_conv_bn_linear(self, linear_std=0.01)

    def forward(self, x, taps=()):
        feats = {}
        for i, block in enumerate(self.blocks):
            x = block(x)                                    # (B, C_i, H_i, W_i)
            if f"block{i + 1}" in taps:
                feats[f"block{i + 1}"] = x.mean((2, 3))
        z = self.drop(x.mean((2, 3)))                       # (B, 512): the classifier's input
        if "penultimate" in taps:
            feats["penultimate"] = z
        return self.classifier(z), feats


@register_model("vgg16")
def vgg16(mcfg, in_shape, num_classes):
    return VGG(VGG16_STAGES, num_classes, need_image("vgg16", in_shape), mcfg.dropout)
