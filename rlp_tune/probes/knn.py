"""k-nearest-neighbour probe on frozen features (003: "K-NN probing", K = 20 throughout).

    pred = knn_predict(train_feats, train_labels, test_feats, k=20)          # (M,) int64
    acc = knn_accuracy(train_feats, train_labels, test_feats, test_labels, k=20)
    sims, idx = knn_neighbors(train_feats, test_feats, k=20)                # (M, k) each, best first

Similarity is cosine (dot product of L2-normalized features); the k most similar training points
vote with equal weight and a tie in the vote goes to the lowest class index. Ties in *similarity*
at the k-th place (duplicate training points) are broken by torch.topk, i.e. not specified.

Memory stays bounded whatever N and M are: the test set is processed `chunk` rows at a time and,
within a test chunk, the training set `train_chunk` rows at a time with a running top-k merge, so
the largest temporary is one reused (chunk, train_chunk) similarity block (default ≤ 512 × 65,536
= 32 Mi elements, 128 MiB in fp32). Training rows are not copied: similarity columns are scaled by
1/‖x_j‖ (an (N,) vector). Runs on the tensors' device; float64 inputs are computed in float64,
everything else in float32 (non-fp32 inputs such as bf16 features are converted once).

One exact path. (A certified bf16 prefilter for CPUs with bf16 units was measured and removed: it
never ran at the default probe sizes, was slower when forced there, and paid only on a quiet CPU
at ≥ 50,000 training rows; docs/performance.md, "k-NN probe", has the figures.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import register_probe

_SIM_BLOCK_ELEMS = 1 << 25    # default cap on chunk × train_chunk similarities


def _check(train_feats, train_labels, test_feats, k):
    if train_feats.ndim != 2 or test_feats.ndim != 2:
        raise ValueError(f"knn: features must be 2-D (N, d); got train {tuple(train_feats.shape)}, "
                         f"test {tuple(test_feats.shape)}")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"knn: train width {train_feats.shape[1]} != test width {test_feats.shape[1]}")
    if train_labels.shape != (train_feats.shape[0],):
        raise ValueError(f"knn: train_labels shape {tuple(train_labels.shape)} != ({train_feats.shape[0]},)")
    if not 1 <= k <= train_feats.shape[0]:
        raise ValueError(f"knn: k={k} must be in [1, {train_feats.shape[0]}] (the number of training points)")


def _compute_dtype(*ts: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in ts) else torch.float32


def _blockwise_topk(q, x, inv_norm, k, train_chunk, sims_buf):
    """Running top-k of the cosine similarities q @ x[lo:hi]ᵀ · inv_norm[lo:hi] over train blocks:
    (values (m, k), index (m, k)). `sims_buf` (≥ m × train_chunk elements) takes every block's
    similarities, so each block does not map and page-fault fresh memory."""
    best_s = best_i = None
    for lo in range(0, x.shape[0], train_chunk):
        block = x[lo:lo + train_chunk]                                           # (t, d)
        sims = torch.mm(q, block.T, out=sims_buf[:q.shape[0] * block.shape[0]].view(q.shape[0], block.shape[0]))
        sims.mul_(inv_norm[lo:lo + block.shape[0]])                              # cosine: ÷ ‖x_j‖
        s, i = sims.topk(min(k, sims.shape[1]), dim=1)                           # (m, ≤k)
        i = i + lo
        if best_s is not None:                                                  # merge with the running top-k
            s, j = torch.cat([best_s, s], 1).topk(min(k, best_s.shape[1] + s.shape[1]), dim=1)
            i = torch.cat([best_i, i], 1).gather(1, j)
        best_s, best_i = s, i
    return best_s, best_i


def knn_neighbors(train_feats: torch.Tensor, test_feats: torch.Tensor, k: int = 20, chunk: int = 512,
                  train_chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sims (M, k), index (M, k) int64): the k most cosine-similar training rows of each test row,
    most similar first."""
    dt = _compute_dtype(train_feats, test_feats)
    n = train_feats.shape[0]
    if train_chunk is None:
        train_chunk = max(k, min(n, _SIM_BLOCK_ELEMS // max(chunk, 1)))
    train_chunk = max(int(train_chunk), k)  # every train block must be able to yield k candidates
    x = train_feats.to(dt)                                                    # no copy when already dt
    # cosine = (q̂ · x_j) / ‖x_j‖: scale similarity columns instead of keeping a normalized copy;
    # the clamp matches F.normalize, so an all-zero row gets similarity 0 to everything
    inv_norm = x.norm(dim=1).clamp_min(1e-12).reciprocal()                    # (N,)
    sims_buf = torch.empty(min(chunk, test_feats.shape[0]) * min(train_chunk, n), dtype=dt, device=x.device)
    out_s, out_i = [], []
    for lo in range(0, test_feats.shape[0], chunk):
        q = F.normalize(test_feats[lo:lo + chunk].to(dt), dim=1)               # (m, d)
        s, i = _blockwise_topk(q, x, inv_norm, k, train_chunk, sims_buf)
        out_s.append(s)
        out_i.append(i)
    if not out_s:
        empty = torch.empty(0, k, device=train_feats.device)
        return empty.to(dt), empty.long()
    return torch.cat(out_s), torch.cat(out_i)


def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor, k: int = 20,
                num_classes: int | None = None, chunk: int = 512, train_chunk: int | None = None) -> torch.Tensor:
    """(M,) int64 predicted class of every test row: unweighted majority of its k cosine-nearest
    training rows; a tied vote goes to the lowest class index."""
    _check(train_feats, train_labels, test_feats, k)
    train_labels = train_labels.long()
    if num_classes is None:
        num_classes = int(train_labels.max()) + 1
    elif int(train_labels.max()) >= num_classes:
        raise ValueError(f"knn: train label {int(train_labels.max())} >= num_classes {num_classes}")
    _, idx = knn_neighbors(train_feats, test_feats, k=k, chunk=chunk, train_chunk=train_chunk)
    votes = torch.zeros(idx.shape[0], num_classes, dtype=torch.int32, device=idx.device)
    votes.scatter_add_(1, train_labels.to(idx.device)[idx], torch.ones_like(idx, dtype=torch.int32))
    # torch.argmax returns the first maximal index: the lowest class wins a tied vote
    return votes.argmax(dim=1)


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k: int = 20, num_classes: int | None = None,
                 chunk: int = 512, train_chunk: int | None = None) -> float:
    """Fraction of test rows whose k-NN prediction equals `test_labels`."""
    pred = knn_predict(train_feats, train_labels, test_feats, k=k, num_classes=num_classes, chunk=chunk,
                       train_chunk=train_chunk)
    return float((pred == test_labels.to(pred.device).long()).double().mean()) if len(pred) else float("nan")


@register_probe("knn", options={"k": "k"})
def knn_probe(train_feats, train_labels, test_feats, test_labels, num_classes, seed, k):
    """The registered k-NN probe (003: k = 20; 004: 5)."""
    return knn_accuracy(train_feats, train_labels, test_feats, test_labels, k=k, num_classes=num_classes)
