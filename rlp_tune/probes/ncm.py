"""Nearest-class-mean probe with cosine similarity, as 004 defines it (one of its baseline probes).

    pred = ncm_predict(train_feats, train_labels, test_feats, num_classes=10)   # (M,) int64
    acc = ncm_accuracy(train_feats, train_labels, test_feats, test_labels, num_classes=10)

Class means are the means of the raw training rows of each class (004's code: no per-row
normalization before averaging, so rows with a larger norm weigh more); a test row goes to the class
whose mean has the highest cosine similarity to it, ties to the lowest class index. A class with no
training rows is never predicted. Runs on the features' device; float64 in, float64 math, else
float32; the test set is scored `chunk` rows at a time.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import register_probe


def class_means(train_feats: torch.Tensor, train_labels: torch.Tensor,
                num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(means (C, d) of the raw rows of each class, counts (C,))."""
    dt = torch.float64 if train_feats.dtype == torch.float64 else torch.float32
    x = train_feats.to(dt)
    y = train_labels.to(x.device).long()
    if len(y) and int(y.max()) >= num_classes:
        raise ValueError(f"ncm: train label {int(y.max())} >= num_classes {num_classes}")
    sums = torch.zeros(num_classes, x.shape[1], dtype=dt, device=x.device).index_add_(0, y, x)
    counts = torch.bincount(y, minlength=num_classes)
    return sums / counts.clamp_min(1).unsqueeze(1).to(dt), counts


def ncm_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                num_classes: int | None = None, chunk: int = 8192) -> torch.Tensor:
    if train_feats.ndim != 2 or test_feats.ndim != 2 or train_labels.shape != (train_feats.shape[0],):
        raise ValueError(f"ncm: want train (N, d), labels (N,), test (M, d); got {tuple(train_feats.shape)}, "
                         f"{tuple(train_labels.shape)}, {tuple(test_feats.shape)}")
    if num_classes is None:
        num_classes = int(train_labels.max()) + 1
    means, counts = class_means(train_feats, train_labels, num_classes)
    mhat = F.normalize(means, dim=1)                                         # (C, d)
    absent = counts == 0
    out = []
    for lo in range(0, test_feats.shape[0], chunk):
        sims = F.normalize(test_feats[lo:lo + chunk].to(mhat), dim=1) @ mhat.T  # (m, C) cosine
        sims[:, absent] = -torch.inf
        out.append(sims.argmax(1))  # first maximal index: ties → lowest class
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=mhat.device)


def ncm_accuracy(train_feats, train_labels, test_feats, test_labels, num_classes: int | None = None) -> float:
    pred = ncm_predict(train_feats, train_labels, test_feats, num_classes)
    return float((pred == test_labels.to(pred.device).long()).double().mean()) if len(pred) else float("nan")


@register_probe("ncm")
def ncm_probe(train_feats, train_labels, test_feats, test_labels, num_classes, seed):
    """The registered nearest-class-mean probe (004)."""
    return ncm_accuracy(train_feats, train_labels, test_feats, test_labels, num_classes)
