"""The weight init the conv families share (wrn, resnet_cifar, vgg): call it at the end of `__init__`.

    init_conv_bn_linear(self)                    # WRN, ResNet-18
    init_conv_bn_linear(self, linear_std=0.01)   # VGG: also draws Linear weights from N(0, 0.01²)

Kaiming-normal convs (fan_out, ReLU gain; bias 0), BatchNorm/GroupNorm weight 1 and bias 0, Linear
bias 0 (weight left at PyTorch's default unless `linear_std` is given). Modules are visited in
`module.modules()` order, so the random draws, and hence a seeded model's weights, do not depend on
which family calls it.
"""
from __future__ import annotations

from torch import nn


def init_conv_bn_linear(module: nn.Module, linear_std: float | None = None) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)
