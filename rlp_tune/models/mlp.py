"""MLP on flattened inputs: `model.depth` hidden layers of `model.width` (ReLU, dropout after each).

Taps: "layer1" … "layer{depth-1}", then "penultimate" (the last hidden layer's output).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .base import TapModel, register_model


class MLP(TapModel):
    def __init__(self, in_dim: int, width: int, depth: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        dims = [in_dim] + [width] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)
        self.tap_names = [f"layer{i + 1}" for i in range(depth - 1)] + ["penultimate"]
        self.tap_dims = {t: width for t in self.tap_names}

    def forward(self, x, taps=()):
        h = x.flatten(1)
        feats = {}
        for i, layer in enumerate(self.layers):
            h = self.drop(torch.relu(layer(h)))
            name = f"layer{i + 1}" if i < len(self.layers) - 1 else "penultimate"
            if name in taps:
                feats[name] = h
        return self.classifier(h), feats


@register_model("mlp")
def mlp(mcfg, in_shape, num_classes):
    return MLP(math.prod(in_shape), mcfg.width, mcfg.depth, num_classes, mcfg.dropout)
