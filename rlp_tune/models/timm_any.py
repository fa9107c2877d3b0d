"""Any timm architecture as a tap model: model.name = "timm:<timm name>" (no pretrained weights, no download).

    model = create_model(Model(name="timm:resnet10t"), in_shape=(3, 32, 32), num_classes=10)
    logits, feats = model(x, taps=("layer3", "penultimate"))   # feats["layer3"]: (B, 256)
    rlp-tune train --set model.name=timm:convnext_atto --set data.name=cifar10 ...

Built by `timm.create_model(name, pretrained=False, num_classes=0, in_chans=C)`, plus img_size=(H, W)
for architectures whose timm config fixes the input size (ViT, DeiT, Swin, …): random init, and
timm's own classifier left out. `classifier` is ours: nn.Linear(penultimate width, num_classes).

Taps, all from timm's public API (every timm model has them since timm 1.0.31, which pyproject pins):
- one per entry of `feature_info`, named by its module with "." → "_" (resnet10t: act1, layer1 …
  layer4; ViTs: blocks_0 … blocks_11; convnext: stages_0 … stages_3): the maps `forward_intermediates`
  returns (NCHW; a transformer's patch tokens laid out as a grid, prefix tokens left out), global
  average pooled to (B, C). For token models (timm's `num_prefix_tokens` attribute: ViT, DeiT, EVA,
  BEiT, …) these are the `token_taps` (RLP heads put a LayerNorm first).
- "penultimate": `forward_head(pre_logits=True)` (timm's pooled pre-logits, `head_hidden_size`
  wide) → dropout(p = model.dropout): the classifier's input. timm's own dropout rates stay at
  their defaults (0), so model.dropout acts in one place, before the classifier, as in vgg/resnet.
Init is timm's own for the architecture; the classifier is PyTorch's default nn.Linear.
(`vit_b32`/`vit_s4`/`vit_tiny4` in vit.py are the paper's ViTs: CLS-token taps, dropout where the
ViT paper puts it, and state_dicts kept as they were.)
"""
from __future__ import annotations

import difflib

import torch
from torch import nn

from .base import ModelInputError, TapModel, need_image, register_model


class TimmTaps(TapModel):
    def __init__(self, timm_name: str, in_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.0):
        super().__init__()
        import timm  # lazy: timm is heavy to import

        if not timm.is_model(timm_name):
            close = difflib.get_close_matches(timm_name, timm.list_models(), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join('timm:' + c for c in close)}?" if close else ""
            raise ModelInputError(f"model.name='timm:{timm_name}': timm has no model {timm_name!r}{hint} "
                                  f"(timm.list_models('*pattern*') lists them)")
        c, h, w = in_shape
        kwargs = dict(pretrained=False, num_classes=0, in_chans=c)
        cfg = timm.models.get_pretrained_cfg(timm_name)
        if cfg is not None and cfg.fixed_input_size:   # its weights' shapes depend on the input size
            kwargs["img_size"] = (h, w)
        try:
            self.net = timm.create_model(timm_name, **kwargs)
        except (AssertionError, ValueError) as e:     # timm's checks, e.g. an image smaller than a patch
            raise ModelInputError(f"model 'timm:{timm_name}' cannot take input {c}×{h}×{w}: {e}") from e
        self._check_input(timm_name, in_shape)
        self.feature_taps = [f["module"].replace(".", "_") for f in self.net.feature_info]
        self.tap_names = self.feature_taps + ["penultimate"]
        d = self.net.head_hidden_size
        self.tap_dims = {t: f["num_chs"] for t, f in zip(self.feature_taps, self.net.feature_info)} | {"penultimate": d}
        self.token_taps = frozenset(self.feature_taps) if hasattr(self.net, "num_prefix_tokens") else frozenset()
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(d, num_classes)

    def _check_input(self, timm_name: str, in_shape) -> None:
        """One eval forward of a zero batch (no gradients; shapes only on the meta device), so an input
        too small for the architecture fails here, in one line, rather than in the first training step."""
        p = next(self.net.parameters())
        was_training = self.net.training
        try:
            with torch.no_grad():
                self.net.eval().forward_intermediates(torch.zeros(1, *in_shape, device=p.device, dtype=p.dtype))
        except (RuntimeError, ValueError, AssertionError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelInputError(f"model 'timm:{timm_name}' cannot take input {'×'.join(map(str, in_shape))} "
                                  f"(set data.image_size larger?): {first}") from e
        finally:
            self.net.train(was_training)

    def forward(self, x, taps=()):
        feats = {}
        take = [i for i, t in enumerate(self.feature_taps) if t in taps]
        if take:
            h, maps = self.net.forward_intermediates(x, indices=take)     # maps[k]: (B, C_k, H_k, W_k)
            for i, m in zip(take, maps):
                feats[self.feature_taps[i]] = m.flatten(2).mean(2)       # (B, C_k)
        else:
            h = self.net.forward_features(x)
        z = self.drop(self.net.forward_head(h, pre_logits=True))          # (B, head_hidden_size)
        if "penultimate" in taps:
            feats["penultimate"] = z
        return self.classifier(z), feats


@register_model("timm:")
def timm_any(mcfg, in_shape, num_classes):
    """Every "timm:<name>"; the timm name is the rest of model.name."""
    timm_name = mcfg.name.partition(":")[2]
    return TimmTaps(timm_name, need_image(mcfg.name, in_shape), num_classes, mcfg.dropout)
