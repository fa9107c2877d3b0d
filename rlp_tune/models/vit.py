"""Vision Transformers (timm's `VisionTransformer`, built locally: no pretrained weights, no download).

    model = create_model(Model(name="vit_b32"), in_shape=(3, 224, 224), num_classes=1000)
    logits, feats = model(x, taps=("block8", "penultimate"))   # feats["block8"]: (B, 768) CLS token

Registered names (img_size and in_chans come from `in_shape`; H and W must be multiples of the patch):
    vit_b32    ViT-B/32: embed 768, depth 12, heads 12, patch 32 (the paper's ImageNet model, 224 px)
    vit_s4     ViT-S/4:  embed 384, depth 12, heads 6,  patch 4  (the paper's CIFAR-100 ViT, 32 px)
    vit_tiny4  embed 96, depth 4, heads 3, patch 4: for tests and CPU demos
`model.dropout` is placed where the ViT paper puts dropout: after the position embedding and after
every dense layer but the qkv projection (timm's pos_drop_rate and proj_drop_rate); no head dropout.
(Any other timm architecture, ViTs included, is available as "timm:<name>": see timm_any.py.)

Taps: "block1" … "block{depth}" — each transformer block's output token sequence pooled as the head
pools it (the CLS token, timm's global_pool="token"), *before* the final LayerNorm; they are the
`token_taps` (RLP heads put a LayerNorm first, as the paper does). "penultimate" — the final-normed
pooled token the head sees (`forward_head(..., pre_logits=True)`). `classifier` is timm's `head`;
`reset_classifier(C)` is timm's own.
The forward goes through timm's public `forward_intermediates` (the blocks' token sequences, CLS
split off as the prefix token) and `forward_head(pre_logits=True)`, one pass, so the logits equal a
plain timm model's `forward(x)` with the same weights, dropout draws included:
`VisionTransformer(**model.timm_kwargs)` builds that twin. Needs timm ≥ 1.0.31 (pyproject pins it).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import ModelInputError, TapModel, need_image, register_model


class ViT(TapModel):
    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, *, embed_dim: int, depth: int,
                 num_heads: int, patch_size: int, dropout: float = 0.0, name: str = "vit"):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer  # lazy: timm is heavy to import

        c, h, w = in_shape
        if h % patch_size or w % patch_size:
            raise ModelInputError(f"model {name!r} uses {patch_size}×{patch_size} patches; input {h}×{w} is not a "
                                  f"multiple (set data.image_size to a multiple of {patch_size})")
        self.timm_kwargs = dict(img_size=(h, w), patch_size=patch_size, in_chans=c, num_classes=num_classes,
                                embed_dim=embed_dim, depth=depth, num_heads=num_heads, global_pool="token",
                                pos_drop_rate=dropout, proj_drop_rate=dropout)
        self.vit = VisionTransformer(**self.timm_kwargs)
        self.block_taps = [f"block{i + 1}" for i in range(depth)]
        self.tap_names = self.block_taps + ["penultimate"]
        self.tap_dims = {t: embed_dim for t in self.tap_names}
        self.token_taps = frozenset(self.block_taps)

    # the class head is timm's own `head` (one parameter set, no duplicate state_dict keys)
    @property
    def classifier(self) -> nn.Linear:
        return self.vit.head

    def reset_classifier(self, num_classes: int) -> None:
        self.vit.reset_classifier(num_classes)

    def forward(self, x, taps=()):
        v, feats = self.vit, {}
        take = [i for i, t in enumerate(self.block_taps) if t in taps]
        if take:
            # h: final-normed tokens (B, 1 + N, D); each block's (patch tokens (B, N, D), CLS (B, 1, D))
            h, blocks = v.forward_intermediates(x, indices=take, return_prefix_tokens=True, output_fmt="NLC")
            for i, (patches, prefix) in zip(take, blocks):
                feats[self.block_taps[i]] = v.pool(torch.cat([prefix, patches], 1))   # (B, D): the CLS token
        else:
            h = v.forward_features(x)
        z = v.forward_head(h, pre_logits=True)                 # pool → fc_norm → head_drop: (B, D)
        if "penultimate" in taps:
            feats["penultimate"] = z
        return v.head(z), feats


def _build(name, mcfg, in_shape, num_classes, **arch):
    return ViT(need_image(name, in_shape), num_classes, dropout=mcfg.dropout, name=name, **arch)


@register_model("vit_b32")
def vit_b32(mcfg, in_shape, num_classes):
    return _build("vit_b32", mcfg, in_shape, num_classes, embed_dim=768, depth=12, num_heads=12, patch_size=32)


@register_model("vit_s4")
def vit_s4(mcfg, in_shape, num_classes):
    return _build("vit_s4", mcfg, in_shape, num_classes, embed_dim=384, depth=12, num_heads=6, patch_size=4)


@register_model("vit_tiny4")
def vit_tiny4(mcfg, in_shape, num_classes):
    return _build("vit_tiny4", mcfg, in_shape, num_classes, embed_dim=96, depth=4, num_heads=3, patch_size=4)
