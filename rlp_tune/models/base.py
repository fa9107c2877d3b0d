"""The model contract: a classifier that returns its logits and named, pooled feature taps.

    model = create_model(cfg.model, in_shape=(3, 32, 32), num_classes=100)
    logits, feats = model(x, taps=("block2", "penultimate"))   # logits (B, C); feats[t] (B, d_t)

- `model.tap_names`: every tap in depth order; "penultimate" (the classifier's input) is last.
- `model.tap_dims[t]`: the feature width d_t of tap t after pooling.
- `model.token_taps`: taps that come from transformer tokens (RLP heads put a LayerNorm first).
- `model.classifier`: the class head, an nn.Linear(tap_dims["penultimate"], C). Replace it with
  `model.reset_classifier(C')` (timm's name): a fresh head, or nn.Identity() for C' = 0 so that the
  "logits" are the penultimate features; never by assigning the attribute.
Taps are collected in the same single forward (no second pass). Conv feature maps are global
average pooled to (B, C); token taps give the model's pooled token (CLS or mean, as its head uses).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..registry import Registry

MODELS = Registry("model")
register_model = MODELS.register
list_models = MODELS.list


class TapModel(nn.Module):
    tap_names: list[str]
    tap_dims: dict[str, int]
    token_taps: frozenset[str] = frozenset()
    classifier: nn.Linear

    def forward(self, x: torch.Tensor, taps=()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        """A new class head on the penultimate features; 0 classes → nn.Identity (no head)."""
        p = next(self.parameters())   # the new head lives where the model does
        self.classifier = (nn.Linear(self.tap_dims["penultimate"], num_classes, device=p.device, dtype=p.dtype)
                           if num_classes > 0 else nn.Identity())


class ModelInputError(UserError, ValueError):
    """The dataset's input shape does not suit the model (e.g. a conv net on 1-D vectors)."""


def create_model(mcfg, in_shape: tuple[int, ...], num_classes: int) -> TapModel:
    """`mcfg` is the `Model` config section; `in_shape` excludes the batch dimension."""
    model = MODELS.create(mcfg.name, mcfg, tuple(in_shape), num_classes)
    assert model.tap_names[-1] == "penultimate", f"{mcfg.name}: penultimate must be the last tap"
    return WithProjector(model, mcfg.projector_hidden, num_classes) if mcfg.projector_hidden else model


class WithProjector(TapModel):
    """003's encoder + MLP projector: encoder features (tap "encoder") → Linear → ReLU (tap
    "penultimate", width `model.projector_hidden`) → classifier. Works on every registered model."""

    def __init__(self, encoder: TapModel, hidden: int, num_classes: int):
        super().__init__()
        d = encoder.tap_dims["penultimate"]
        encoder.reset_classifier(0)   # its class head is replaced by projector + classifier
        self.encoder = encoder
        self.projector = nn.Linear(d, hidden)
        self.classifier = nn.Linear(hidden, num_classes)
        self.tap_names = [t for t in encoder.tap_names if t != "penultimate"] + ["encoder", "penultimate"]
        self.tap_dims = {**{t: encoder.tap_dims[t] for t in encoder.tap_names}, "encoder": d, "penultimate": hidden}
        self.token_taps = encoder.token_taps

    def forward(self, x, taps=()):
        inner = tuple(t for t in taps if t not in ("encoder", "penultimate")) + ("penultimate",)
        z, feats = self.encoder(x, taps=inner)   # encoder "logits" = its penultimate features
        feats.pop("penultimate")
        h = torch.relu(self.projector(z))
        if "encoder" in taps:
            feats["encoder"] = z
        if "penultimate" in taps:
            feats["penultimate"] = h
        return self.classifier(h), feats


def resolve_taps(model: TapModel, names) -> list[str]:
    """Config tap list ('all' or names) → validated tap names in depth order."""
    names = list(names)
    if names == ["all"]:
        return list(model.tap_names)
    bad = [n for n in names if n not in model.tap_names]
    if bad:
        raise ModelInputError(f"unknown tap(s) {', '.join(bad)} for this model (taps: {', '.join(model.tap_names)})")
    return [t for t in model.tap_names if t in names]


def need_image(name: str, in_shape) -> tuple[int, int, int]:
    if len(in_shape) != 3:
        raise ModelInputError(f"model {name!r} needs image inputs (C, H, W); the dataset gives shape {tuple(in_shape)}")
    return tuple(in_shape)
