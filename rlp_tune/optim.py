"""The run's optimizer (SGD or AdamW, an own param group for the RLP heads when rlp.lr /
rlp.weight_decay differ) and its per-step learning-rate schedule (linear warm-up, then cosine or constant).

    opt = make_optimizer(cfg, net.parameters(), heads=list(net.heads.parameters()))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, steps_per_epoch))
"""
from __future__ import annotations

import math

import torch

from .config import Config


def lr_lambda(cfg: Config, steps_per_epoch: int):
    """Per-step LR factor: linear warm-up over optim.warmup_epochs, then cosine to 0 (or constant)."""
    warm = int(round(cfg.optim.warmup_epochs * steps_per_epoch))
    total = cfg.run.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.optim.schedule == "constant":
            return 1.0
        t = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return factor


def rlp_head_settings(cfg: Config) -> tuple[float, float]:
    """(lr, weight decay) of the RLP heads: rlp.lr / rlp.weight_decay, defaulting to optim's."""
    lr = cfg.rlp.lr or cfg.optim.lr
    wd = cfg.optim.weight_decay if cfg.rlp.weight_decay < 0 else cfg.rlp.weight_decay
    return lr, wd


def make_optimizer(cfg: Config, params, heads: list | None = None) -> torch.optim.Optimizer:
    """The run's optimizer. `heads`: the RLP-head parameters among `params`; they get a param group of
    their own when rlp.lr / rlp.weight_decay differ from optim's. Otherwise one group, exactly as
    before these keys existed (same checkpoints, bit-identical results)."""
    o = cfg.optim
    groups = params
    lr, wd = rlp_head_settings(cfg)
    if heads and (lr, wd) != (o.lr, o.weight_decay):
        ids = {id(p) for p in heads}
        groups = [{"params": [p for p in params if id(p) not in ids]},
                  {"params": list(heads), "lr": lr, "weight_decay": wd}]
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
                           weight_decay=o.weight_decay)
